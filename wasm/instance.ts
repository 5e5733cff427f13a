// The WASM backend assembled from a compiled module, in any JavaScript engine: wasm/backend.ts gives it Node's
// module file and worker threads, web/platform/wasm.ts a fetched module and Web Workers. One shared memory, the
// heap, the weight cache and the pool (wasm/pool.ts) make the core (wasm/core.ts) that both the host-tensor
// kernels (wasmKernels below) and the device kernels (wasm/device-kernels.ts) work over.

import type { Backend, BackendOptions } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { argError, TinyseekError } from "../src/errors.ts";
import type { Kernels } from "../src/kernels.ts";
import { EXPERT_FLOPS, PARALLEL_FLOPS, THREADED, WasmCore, type Exports } from "./core.ts";
import { wasmDeviceKernels } from "./device-kernels.ts";
import { Heap } from "./heap.ts";
import { attention } from "./kernels/attention.ts";
import { rope, silu, swiglu } from "./kernels/elementwise.ts";
import { bmm, linear, matmul, quantLinear } from "./kernels/matmul.ts";
import { moe } from "./kernels/moe.ts";
import { rmsnorm, softmax } from "./kernels/rows.ts";
import { Pool, type SpawnWorker } from "./pool.ts";
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
   * An MoE call of at least this many flops (6 · kept assignments · D · F) runs its experts over the pool, whole
   * experts per chunk (default 2¹⁹; 0 splits every call with work to share, Infinity none).
   */
  expertFlops?: number;
  /**
   * Use the relaxed-SIMD build (fused multiply-add in matmul) where the engine supports it: Node 22+, or Node 20
   * with --experimental-wasm-relaxed-simd. Default true; env TINYSEEK_WASM_RELAXED=0 turns it off. Its results
   * round once per multiply-add instead of twice, so they differ from the SIMD128 build's in the last bits.
   */
  relaxed?: boolean;
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

/** What the engine gives: the compiled module (and whether it is the relaxed build) and how to start a worker. */
export interface WasmSetup {
  module: WasmModule;
  relaxed: boolean;
  /** The build as the description names it, with why (chooseSimdBuild, wasm/simd-build.ts). */
  simd: string;
  /** Threads in all, the calling one included (already checked). */
  threads: number;
  check: boolean;
  spawn: SpawnWorker;
}

/** The backend over an instance of `setup.module`, with threads - 1 workers. */
export async function instantiateBackend(setup: WasmSetup, options: WasmOptions = {}): Promise<WasmBackend> {
  const { module, relaxed, threads, check } = setup;
  const bf16 = options.bf16Weights ?? true;
  if (typeof bf16 !== "boolean") throw argError("bf16Weights", "true or false", bf16);
  const expertFlops = options.expertFlops ?? EXPERT_FLOPS;
  if (typeof expertFlops !== "number" || !(expertFlops >= 0)) throw argError("expertFlops", "a number ≥ 0 (Infinity: never split experts)", expertFlops);
  let memory;
  try {
    memory = new WebAssemblyApi.Memory({ initial: 256, maximum: 65536, shared: true });
  } catch (error) {
    // Browsers give shared memory only to cross-origin isolated pages (COOP/COEP headers: spec/web.md).
    throw new TinyseekError(`wasm: this engine refused a shared WebAssembly memory (${(error as Error).message}); in a browser the page must be cross-origin isolated`);
  }
  const abort = () => {
    throw new TinyseekError("wasm: the module aborted");
  };
  const instance = await WebAssemblyApi.instantiate(module, { env: { memory, abort } });
  const exports = instance.exports as unknown as Exports;
  const heap = new Heap(memory, exports.heapBase(), check);
  const pool = threads > 1 ? await Pool.create(module, memory, threads, THREADED, setup.spawn) : undefined;
  const weights = new WeightCache(heap, options.weightBudget ?? 2 ** 30);
  const core = new WasmCore(exports, heap, weights, pool, options.parallelFlops ?? PARALLEL_FLOPS, bf16, expertFlops);
  const kernels = wasmKernels(core);
  return {
    name: "wasm",
    description: `WebAssembly ${setup.simd}, ${threads} thread${threads > 1 ? "s" : ""}${bf16 ? ", BF16 weights where exact" : ", float32 weights"}${check ? ", checked buffers" : ""}`,
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
