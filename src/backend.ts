// A backend is a name, the operations the one forward runs on (src/device/), and kernels over host tensors for
// component-level code. Reference and WASM are synchronous and run every component; WebGPU is asynchronous: the
// model runs on it through the same forward under an asynchronous driver (src/device/drive.ts), and in Node the
// golden component cases that need synchronous kernels run in a worker thread over its kernels (runSynchronously,
// gpu/sync-bridge.ts). Backends load lazily: a user of one never loads the others.

import { TinyseekError } from "./errors.ts";
import { reference, type Kernels } from "./kernels.ts";
import { referenceOps, type Ops } from "./device/ops.ts";

/** The Kernels operations, each allowed to answer with a promise. */
export type AsyncKernels = {
  // NonNullable: optional kernels (quantLinear) may answer with a promise too.
  readonly [K in keyof Kernels]: NonNullable<Kernels[K]> extends (...args: infer A) => infer R
    ? (...args: A) => R | Promise<R>
    : Kernels[K];
};

export interface Backend {
  readonly name: BackendName;
  /** What it runs on, e.g. "WebAssembly SIMD128, 2 threads" or the GPU adapter's name. */
  readonly description: string;
  /** The operations the one forward runs on (src/device/ops.ts over the backend's src/device/kernels.ts): the
   *  model runs on every backend through these, and only these. */
  readonly ops: Ops;
  /** Synchronous kernels over host tensors, for component-level code; absent where the backend is asynchronous. */
  readonly kernels?: Kernels;
  /** The same kernels, possibly asynchronous: every backend has these. */
  readonly asyncKernels: AsyncKernels;
  /** Frees what the backend holds (workers, devices) so that the process can exit. */
  dispose(): Promise<void>;
  /** Where `kernels` is absent: runs synchronous component code over this backend's kernels in a worker thread
   *  (webgpu in Node, gpu/sync-bridge.ts), for the golden component cases. Never used by the model. */
  runSynchronously?<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R>;
}

/** Synchronous code a worker can run: `module` (a file URL) exports `export(kernels, args, emit)`
 *  (the BridgeTask type of gpu/sync-bridge-worker.ts). */
export interface SyncTask {
  readonly module: string;
  readonly export: string;
}

export { NotSupportedError } from "./errors.ts";

export const BACKENDS = ["reference", "wasm", "webgpu"] as const;
export type BackendName = (typeof BACKENDS)[number];

export const referenceBackend: Backend = {
  name: "reference",
  description: "TypeScript reference, float64 accumulation",
  ops: referenceOps,
  kernels: reference,
  asyncKernels: reference,
  dispose: async () => {},
};

/** Where each backend lives; loaded only when asked for. */
const loaders: Record<BackendName, (options: BackendOptions) => Promise<Backend>> = {
  reference: async () => referenceBackend,
  wasm: (options) => importBackend("wasm", "../wasm/backend.ts", options),
  webgpu: (options) => importBackend("webgpu", "../gpu/backend.ts", options),
};

export interface BackendOptions {
  /** WASM worker threads (default: available cores). */
  threads?: number;
  /**
   * WASM and WebGPU: keep a linear or expert weight as BF16 in the backend's memory when every one of its values is
   * exactly a BF16 (src/bf16.ts), as every weight of a BF16 checkpoint is: half the bytes, the same results bit for
   * bit. Default true; false keeps every weight float32 (WASM in Node also: env TINYSEEK_WASM_BF16=0).
   */
  bf16Weights?: boolean;
}

export async function loadBackend(name: string, options: BackendOptions = {}): Promise<Backend> {
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new TinyseekError(`backend: expected one of ${BACKENDS.join(", ")}, got "${name}"`);
  }
  return loaders[name as BackendName](options);
}

/** Each backend module exports `createBackend(options)`. */
async function importBackend(name: string, path: string, options: BackendOptions): Promise<Backend> {
  let module: { createBackend?: (options?: BackendOptions) => Promise<Backend> };
  try {
    module = await import(/* @vite-ignore */ new URL(path, import.meta.url).href);
  } catch (error) {
    throw new TinyseekError(`backend "${name}" is not available: ${(error as Error).message.split("\n")[0]}`);
  }
  if (!module.createBackend) throw new TinyseekError(`backend "${name}" does not exist yet in this version`);
  return module.createBackend(options);
}
