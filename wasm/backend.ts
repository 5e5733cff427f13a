// The WASM SIMD backend: an AssemblyScript module (wasm/assembly/) compiled with SIMD128 into
// wasm/build/tinyseek.wasm, instantiated over one shared memory with a worker pool (wasm/pool.ts). It gives the
// host-tensor Kernels (wasmKernels below, from wasm/kernels/: component-level code, and the layers the forward
// computes on the host) and the device kernels the one forward runs on (wasm/device-kernels.ts, values kept in the
// module's memory), over one core (wasm/core.ts: the same module, memory, weight cache and pool).

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { type Backend, type BackendOptions } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { checkInteger, TinyseekError } from "../src/errors.ts";
import { type Kernels } from "../src/kernels.ts";
import { PARALLEL_FLOPS, THREADED, WasmCore, type Exports } from "./core.ts";
import { wasmDeviceKernels } from "./device-kernels.ts";
import { Heap } from "./heap.ts";
import { attention } from "./kernels/attention.ts";
import { rope, silu, swiglu } from "./kernels/elementwise.ts";
import { bmm, linear, matmul, quantLinear } from "./kernels/matmul.ts";
import { moe } from "./kernels/moe.ts";
import { rmsnorm, softmax } from "./kernels/rows.ts";
import { Pool } from "./pool.ts";
import { WebAssemblyApi, type WasmModule } from "./webassembly.ts";
import { WeightCache } from "./weights.ts";

export interface WasmOptions extends BackendOptions {
  /** Guard bytes around every buffer, checked after each kernel, and NaN-filled outputs (tests). Env: TINYSEEK_WASM_CHECK=1. */
  check?: boolean;
  /** Bytes of packed weights kept resident before the least recently used are evicted (default 1 GiB). */
  weightBudget?: number;
  /** Jobs of fewer flops stay on the calling thread (default 2²¹; 0 sends every matmul and attention to the pool). */
  parallelFlops?: number;
  /**
   * Use the relaxed-SIMD build (fused multiply-add in matmul) where the engine supports it: Node 22+, or Node 20
   * with --experimental-wasm-relaxed-simd. Default true; env TINYSEEK_WASM_RELAXED=0 turns it off. Its results
   * round once per multiply-add instead of twice, so they differ from the SIMD128 build's in the last bits.
   */
  relaxed?: boolean;
}


const buildPath = (name: string) => fileURLToPath(new URL(`./build/${name}`, import.meta.url));
const compiled = new Map<string, Promise<WasmModule>>();

/**
 * The compiled module (built first if this checkout has not built it yet): the relaxed-SIMD build when asked for
 * and the engine validates it, else the SIMD128 one. Says which it gave.
 */
export async function wasmModule(relaxed: boolean): Promise<{ module: WasmModule; relaxed: boolean }> {
  const path = buildPath("tinyseek.wasm"), relaxedPath = buildPath("tinyseek.relaxed.wasm");
  if (!existsSync(path) || !existsSync(relaxedPath)) {
    execFileSync(process.execPath, [fileURLToPath(new URL("./build.mjs", import.meta.url))], { stdio: "inherit" });
  }
  if (!existsSync(path)) throw new TinyseekError(`wasm: ${path} is missing: run npm run build:wasm`);
  const use = relaxed && existsSync(relaxedPath) && WebAssemblyApi.validate(readFileSync(relaxedPath)) ? relaxedPath : path;
  if (!compiled.has(use)) compiled.set(use, WebAssemblyApi.compile(readFileSync(use)));
  return { module: await compiled.get(use)!, relaxed: use === relaxedPath };
}

export interface WasmStats {
  liveBytes: number;
  liveBlocks: number;
  memoryBytes: number;
  weightBytes: number;
}

export interface WasmBackend extends Backend {
  /** Memory in use and resident weights (tests and benchmarks watch these over long runs). */
  stats(): WasmStats;
}

export async function createBackend(options: WasmOptions = {}): Promise<WasmBackend> {
  const threads = options.threads ?? availableParallelism();
  checkInteger("threads", threads, 1, 256);
  const check = options.check ?? process.env.TINYSEEK_WASM_CHECK === "1";
  const { module, relaxed } = await wasmModule(options.relaxed ?? process.env.TINYSEEK_WASM_RELAXED !== "0");
  const memory = new WebAssemblyApi.Memory({ initial: 256, maximum: 65536, shared: true });
  const abort = () => {
    throw new TinyseekError("wasm: the module aborted");
  };
  const instance = await WebAssemblyApi.instantiate(module, { env: { memory, abort } });
  const exports = instance.exports as unknown as Exports;
  const heap = new Heap(memory, exports.heapBase(), check);
  const pool = threads > 1 ? await Pool.create(module, memory, threads, THREADED) : undefined;
  const weights = new WeightCache(heap, options.weightBudget ?? 2 ** 30);
  const core = new WasmCore(exports, heap, weights, pool, options.parallelFlops ?? PARALLEL_FLOPS);
  const kernels = wasmKernels(core);
  return {
    name: "wasm",
    description: `WebAssembly ${relaxed ? "relaxed SIMD" : "SIMD128"}, ${threads} thread${threads > 1 ? "s" : ""}${check ? ", checked buffers" : ""}`,
    // The one forward's operations: values in WASM memory; layers computed on the host use these same kernels.
    ops: opsOver(wasmDeviceKernels(core), kernels),
    kernels,
    asyncKernels: kernels,
    dispose: async () => {
      weights.clear();
      await pool?.dispose();
    },
    stats: () => ({ ...heap.stats(), weightBytes: weights.residentBytes }),
  };
}

/** The host-tensor kernels over a core: inputs copied into its memory per call, results copied out. */
export function wasmKernels(core: WasmCore): Kernels {
  return {
    name: "wasm",
    matmul: (a, b) => matmul(core, a, b),
    bmm: (a, b) => bmm(core, a, b),
    linear: (x, weight) => linear(core, x, weight),
    softmax: (x, visible) => softmax(core, x, visible),
    rmsnorm: (x, weight, eps) => rmsnorm(core, x, weight, eps),
    rope: (x, positions, freqs) => rope(core, x, positions, freqs),
    silu: (x) => silu(core, x),
    swiglu: (gate, up) => swiglu(core, gate, up),
    attention: (q, k, v, options) => attention(core, q, k, v, options),
    moe: (x, routing, experts) => moe(core, x, routing, experts),
    quantLinear: (x, w, options) => quantLinear(core, x, w, options),
  };
}

/** Memory statistics of a wasm backend (undefined for others). */
export function wasmStats(backend: Backend): WasmStats | undefined {
  return "stats" in backend ? (backend as WasmBackend).stats() : undefined;
}
