// A backend is a named set of kernels. Reference and WASM are synchronous and run every component; WebGPU is
// asynchronous: in Node it runs component code that needs synchronous kernels in a worker thread over its own
// kernels (runSynchronously, gpu/sync-bridge.ts); elsewhere such code reports "not supported" rather than
// pretending. Backends load lazily: a user of one never loads the others.

import { TinyseekError } from "./errors.ts";
import { reference, type Kernels } from "./kernels.ts";
import type { Model } from "./model/weights.ts";
import type { MoeStats } from "./moe/stats.ts";
import type { Tensor } from "./tensor.ts";
import type { Trace } from "./trace.ts";

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
  /** Synchronous kernels, for component-level code; absent where the backend is asynchronous only. */
  readonly kernels?: Kernels;
  /** The same kernels, possibly asynchronous: every backend has these. */
  readonly asyncKernels: AsyncKernels;
  /** Frees what the backend holds (workers, devices) so that the process can exit. */
  dispose(): Promise<void>;
  /** Where `kernels` is absent: runs synchronous code over this backend's kernels in a worker thread (webgpu in
   *  Node, gpu/sync-bridge.ts). Args and result cross by structured clone; `onEvent` gets what the task emits. */
  runSynchronously?<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R>;
  /** A whole forward pass kept on the backend's device (WebGPU's buffers, WASM's memory: src/model/resident.ts):
   *  uploads once, reads back the logits and what the trace asks for. */
  forwardModel?(model: Model, tokens: ArrayLike<number>, options?: ModelRunOptions): Promise<ModelRunResult>;
}

/** Synchronous code a worker can run: `module` (a file URL) exports `export(kernels, args, emit)`
 *  (the BridgeTask type of gpu/sync-bridge-worker.ts). */
export interface SyncTask {
  readonly module: string;
  readonly export: string;
}

export interface ModelRunOptions {
  trace?: Trace;
  /** Early-exit confidence threshold (null: full depth). */
  exitThreshold?: number | null;
}

/** What the model's own forward returns, less what only synchronous kernels can give. */
export interface ModelRunResult {
  logits: Tensor; // [T, V]
  exitLayers: Int32Array;
  moe: (MoeStats | null)[];
}

/** A backend that cannot run a given operation says so with this error: a third outcome beside pass and fail. */
export class NotSupportedError extends TinyseekError {
  override name = "NotSupportedError";
}

export const BACKENDS = ["reference", "wasm", "webgpu"] as const;
export type BackendName = (typeof BACKENDS)[number];

export const referenceBackend: Backend = {
  name: "reference",
  description: "TypeScript reference, float64 accumulation",
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
