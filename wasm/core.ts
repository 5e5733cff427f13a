// The core every WASM kernel works over: the AssemblyScript module's exports (wasm/assembly/, compiled with SIMD128
// into wasm/build/tinyseek.wasm), its shared memory and heap, the weight cache (wasm/weights.ts), the worker pool
// (wasm/pool.ts) and the per-call arena, with the copy-in and copy-out helpers of the host-tensor kernels. The
// kernels themselves are functions over this core, one file per family as in gpu/kernels/: wasm/kernels/matmul.ts,
// rows.ts, elementwise.ts, attention.ts, indexer.ts and moe.ts. Each family gives pointer-level functions over
// operands already in memory, which the device kernels (wasm/device-kernels.ts) call on values that live there,
// and host kernels (over Tensors) that copy inputs in, call those same functions and copy the result out;
// wasm/backend.ts assembles the host ones into the Kernels interface.

import { numel, type Tensor } from "../src/tensor.ts";
import { Arena } from "./arena.ts";
import type { Heap } from "./heap.ts";
import type { Pool } from "./pool.ts";
import type { WeightCache } from "./weights.ts";

export interface Exports {
  heapBase(): number;
  gemm(M: number, N: number, K: number, a: number, lda: number, bp: number, c: number, ldc: number, scratch: number, part: number, parts: number): void;
  gemmScratch(): number;
  gemmPackB(M: number, N: number, K: number, a: number, lda: number, b: number, ldb: number, bp: number, c: number, ldc: number, scratch: number, part: number, parts: number): void;
  packB(b: number, K: number, N: number, ldb: number, out: number): void;
  packPanels(b: number, K: number, N: number, ldb: number, out: number, part: number, parts: number): void;
  packBt(w: number, N: number, K: number, ldw: number, out: number): void;
  gemmBf16(M: number, N: number, K: number, a: number, lda: number, bp: number, c: number, ldc: number, scratch: number, part: number, parts: number): void;
  packBtBf16(w: number, N: number, K: number, ldw: number, out: number): void;
  attention(
    q: number, k: number, v: number, out: number, B: number, H: number, Hkv: number, Tq: number, Tk: number, kvRows: number, Dh: number, Dv: number,
    scale: number, lo: number, hi: number, logGammas: number, offset: number, firstRow: number, scratch: number, scratchStride: number, part: number, parts: number,
  ): void;
  attentionScratch(Tk: number, Dh: number, Dv: number): number;
  attentionProbs(q: number, k: number, out: number, H: number, Hkv: number, Tq: number, Tk: number, kvRows: number, Dh: number, scale: number, offset: number): void;
  attendWith(p: number, v: number, out: number, H: number, Hkv: number, Tq: number, Tk: number, kvRows: number, Dv: number): void;
  softmax(x: number, flags: number, rows: number, N: number, out: number): void;
  rmsnorm(x: number, w: number, rows: number, D: number, eps: number, out: number): void;
  layernorm(x: number, w: number, b: number, rows: number, D: number, eps: number, out: number): void;
  gatherRows(x: number, rows: number, A: number, N: number, n: number, D: number, step: number, out: number): void;
  rope(x: number, cosines: number, sines: number, planes: number, T: number, dim: number, out: number): void;
  ropeHalves(x: number, cosines: number, sines: number, planes: number, T: number, dim: number, out: number): void;
  indexScores(q: number, keys: number, w: number, out: number, H: number, Tq: number, Tk: number, D: number, offset: number, scale: number, part: number, parts: number): void;
  silu(x: number, n: number, out: number): void;
  swiglu(gate: number, up: number, n: number, out: number): void;
  moeExperts(items: number, rows: number, x: number, D: number, F: number, xs: number, gs: number, us: number, ys: number, scratch: number, part: number, parts: number): void;
  moeCombine(kept: number, rows: number, weights: number, ys: number, N: number, D: number, sum: number, out: number): void;
}

/** Exports that split across threads (they take part, parts last). */
export const THREADED = ["gemm", "gemmPackB", "attention", "packPanels", "gemmBf16", "moeExperts", "indexScores"];
/** Below this many flops a job stays on the calling thread: waking a worker costs tens of microseconds. */
export const PARALLEL_FLOPS = 2 ** 21;
/**
 * From this many flops an MoE call's experts are split over the pool, whole experts per chunk (wasm/kernels/moe.ts).
 * bench/experts.ts on the idle 2-core machine (bench/README.md, "Splitting the experts"): BF16 weights 0.87× at
 * 0.2 M flops (tiny's decode), 1.32× at 0.8 M (small's), 1.55× at 3 M; float32 1.07× at 0.8 M. So from 2¹⁹.
 */
export const EXPERT_FLOPS = 2 ** 19;
/** Chunks per thread: enough that a thread the OS runs late leaves little for the others to wait on. */
export const CHUNKS_PER_THREAD = 4;
/** Outputs of up to SLAB_MAX bytes are carved from shared SLAB_BYTES buffers (see output() below). */
const SLAB_BYTES = 32768, SLAB_MAX = 4096;

/**
 * The module, its memory and weights, the pool and the per-call arena, shared by the host kernels and the device
 * kernels (so that both split work over the pool the same way).
 *
 * A decode step makes ~80 small calls, so the fixed cost of a call matters as much as its arithmetic: no closure
 * per call (each kernel frees its temporaries in its own finally, temp.reset()), inputs written through the heap's
 * whole-memory views, one resident scratch block for every matmul that stays on the calling thread, resident
 * weights found through a per-array memo (WeightCache.find), shape checks done inline (fits below) with
 * expectShape called only to word an error, outputs carved from slabs (output() below).
 */
export class WasmCore {
  readonly threads: number;
  /** Bytes of scratch one part of a gemm uses. */
  readonly gemmScratch: number;
  /** The scratch block of every gemm that stays on the calling thread. */
  readonly localScratch: number;
  /** Per-call temporaries; a kernel resets it in its finally. */
  readonly temp: Arena;
  private slab = new ArrayBuffer(SLAB_BYTES);
  private slabTop = 0;

  /**
   * @param bf16Weights linear weights whose every value is exactly a BF16 are kept as BF16 (wasm/kernels/bf16.ts)
   * @param expertFlops an MoE call of at least this many flops runs its experts over the pool (wasm/kernels/moe.ts)
   */
  constructor(readonly ex: Exports, readonly heap: Heap, readonly weights: WeightCache, readonly pool: Pool | undefined, readonly parallelFlops: number,
    readonly bf16Weights = false, readonly expertFlops = EXPERT_FLOPS) {
    this.threads = pool?.threads ?? 1;
    this.gemmScratch = ex.gemmScratch();
    this.localScratch = heap.alloc(this.gemmScratch);
    this.temp = new Arena(heap);
  }

  /** A kernel's last step on success: checks every guard (check mode). The caller's finally resets the arena. */
  verify(kernel: string): void {
    if (this.heap.check) this.heap.verify(kernel);
  }

  /** `data` copied into the arena: its address. */
  put(data: Float32Array | Int32Array | Uint8Array): number {
    return this.temp.put(data);
  }

  /** Bytes from the arena: their address. */
  alloc(bytes: number): number {
    return this.temp.alloc(bytes);
  }

  // Outputs. A fresh Float32Array of more than 64 bytes costs V8 ~0.7 µs (a backing store off the JS heap, zeroed
  // and tracked): more than the rest of a small call. So outputs up to SLAB_MAX bytes are views carved one after
  // another out of a SLAB_BYTES ArrayBuffer, and a new slab is made when one is used up: a slab lives as long as
  // any output in it is referenced, then goes to the garbage collector like any array. An output's buffer may thus
  // hold other tensors' data beside its own, as appendTime's cache views and the expert views already do.
  output(n: number): Float32Array {
    const bytes = n * 4;
    if (bytes <= 64 || bytes > SLAB_MAX) return new Float32Array(n);
    if (this.slabTop + bytes > SLAB_BYTES) {
      this.slab = new ArrayBuffer(SLAB_BYTES);
      this.slabTop = 0;
    }
    const data = new Float32Array(this.slab, this.slabTop, n);
    this.slabTop += (bytes + 15) & ~15;
    return data;
  }

  /**
   * A fresh output of n floats with its pages written once, made while a pool job runs (Pool.run's meanwhile):
   * its allocation and page faults (~0.6 ms for 1 MiB here, eight times the copy into it) overlap the job.
   */
  touchedOutput(n: number): Float32Array {
    const data = this.output(n);
    for (let i = 0; i < n; i += 1024) data[i] = 0;
    return data;
  }

  /** The n floats at ptr as a new tensor (new + set: slice() of a view of shared memory is far slower in V8). */
  read(ptr: number, shape: readonly number[], n: number): Tensor {
    const data = this.output(n);
    const at = ptr >>> 2;
    data.set(this.heap.F32.subarray(at, at + n));
    return { shape: [...shape], data };
  }

  /** The result at ptr copied into `data` (from gemm's outLength), as read() does. */
  readInto(data: Float32Array, ptr: number, shape: number[]): Tensor {
    const at = ptr >>> 2;
    data.set(this.heap.F32.subarray(at, at + data.length));
    return { shape, data };
  }
}

/**
 * Whether t is a tensor of this rank whose data fits its shape: the quick check the hot kernels make before their
 * own size comparisons, calling expectShape (for the reference's message) only when one fails.
 */
export function fits(t: Tensor | undefined, rank: number): t is Tensor {
  if (t == null || !Array.isArray(t.shape) || t.shape.length !== rank || !(t.data instanceof Float32Array)) return false;
  return t.data.length === numel(t.shape);
}
