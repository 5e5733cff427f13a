// The whole model's forward kept in WASM memory: src/model/resident.ts (the one resident forward, shared with
// WebGPU) over the resident operations below. Activations are blocks of the module's memory handed from kernel to
// kernel by pointer, with no copy in or out; weights are the kernels' own resident copies (wasm/weights.ts:
// linear weights packed once, RMSNorm vectors, the absorbed MLA slices of kv_b_proj packed per head); the
// attention caches are blocks of capacity rows that new keys and values are written into in place. What crosses
// to the host: token ids and the embedding rows (copied straight in), router logits, traced tensors and the logits.
//
// Activation blocks come from a pool of size classes (quarter powers of two), so a generation loop reuses the
// same blocks step after step; when a forward ends, size classes it did not use go back to the heap (a long
// prompt's large blocks do not outlive it). Each operation is synchronous; the forward is async only because
// WebGPU's read-back is.

import { createResidentCache, forwardResident, releaseResidentCache, type ResidentCache, type ResidentForwardOptions, type ResidentForwardResult } from "../src/model/resident.ts";
import { type ResidentOps, type ResidentTensor } from "../src/model/resident-ops.ts";
import { type Model } from "../src/model/weights.ts";
import { type Backend } from "../src/backend.ts";
import { type Kernels } from "../src/kernels.ts";
import { numel } from "../src/tensor.ts";
import { wasmCore, writeRopeTables, type WasmCore } from "./backend.ts";

/**
 * A tensor in WASM memory at byte address `ptr`; a weight instead carries its host array (made resident on use).
 * Every handle has every field, in one order (made by `handle`), so that the operations see one object shape.
 */
export interface WasmTensor extends ResidentTensor {
  readonly ptr: number;
  /** Elements (the shape's product, kept: a decode step asks for it ~150 times). */
  readonly n: number;
  readonly host: Float32Array | null;
  /** The pool's size class of the block, on tensors the pool made; 0 on weights and views. */
  readonly size: number;
  /** Set once the block has gone back to the pool (a second release is ignored). */
  released: boolean;
}

const handle = (shape: readonly number[], ptr: number, n: number, host: Float32Array | null, size: number): WasmTensor =>
  ({ shape, ptr, n, host, size, released: false });

export type WasmCache = ResidentCache<WasmTensor>;

/** The resident forward on a wasm backend's kernels (what its forwardModel runs). */
export function forwardInWasm(kernels: Kernels | undefined, model: Model, tokens: ArrayLike<number>, options?: ResidentForwardOptions<WasmTensor>): Promise<ResidentForwardResult> {
  return forwardResident(wasmOps(kernels), model, tokens, options);
}

/** A cache in the backend's WASM memory for up to `capacity` positions (default max_position_embeddings). */
export function createWasmCache(backend: Backend, model: Model, capacity?: number): WasmCache {
  return createResidentCache(wasmOps(backend.kernels), model, capacity);
}

/** Frees the cache's memory. */
export function releaseWasmCache(backend: Backend, cache: WasmCache): void {
  releaseResidentCache(wasmOps(backend.kernels), cache);
}

/** Byte sizes grow in steps of a quarter power of two, so that tensors of nearby sizes share blocks. */
function sizeClass(bytes: number): number {
  const b = Math.max(64, (bytes + 63) & ~63);
  if (b <= 1024) return b;
  const step = 2 ** (29 - Math.clz32(b)); // a quarter of b's highest power of two
  return Math.ceil(b / step) * step;
}

/** 2²⁶: packs two sizes into one weight-cache key number (each below 2²⁶). */
const KEY = 2 ** 26;

const opsOf = new WeakMap<Kernels, ResidentOps<WasmTensor>>();

/** The WASM resident operations over a wasm backend's memory, made once per backend. */
export function wasmOps(kernels: Kernels | undefined): ResidentOps<WasmTensor> {
  const core = wasmCore(kernels);
  let ops = opsOf.get(core.kernels);
  if (!ops) opsOf.set(core.kernels, (ops = makeOps(core)));
  return ops;
}

function makeOps(core: WasmCore): ResidentOps<WasmTensor> {
  const { ex, heap, weights, temp } = core;
  const classes = new Map<number, { blocks: number[]; used: boolean }>(); // size class → pooled blocks

  function empty(shape: readonly number[]): WasmTensor {
    const n = numel(shape), size = sizeClass(n * 4);
    let pool = classes.get(size);
    if (!pool) classes.set(size, (pool = { blocks: [], used: true }));
    pool.used = true;
    const ptr = pool.blocks.pop() ?? heap.alloc(size);
    if (heap.check) heap.F32.fill(NaN, ptr >>> 2, (ptr + size) >>> 2); // an element a kernel forgets reads as NaN
    return handle(shape, ptr, n, null, size);
  }
  /** A kernel's last step: checks every guard (check mode). Scratch from the arena is freed in its finally. */
  function done(kernel: string): void {
    if (heap.check) heap.verify(kernel);
  }
  const lastDim = (x: WasmTensor) => x.shape[x.shape.length - 1]!;
  const host = (w: WasmTensor): Float32Array => {
    if (!w.host) throw new TypeError("wasm resident forward: expected a weight handle (ops.weight)");
    return w.host;
  };

  /** A weight's slices B_i = data[offB + i·strideB …] ([N, K] when transB, else [K, N]) packed, one panel set each. */
  function packedSlices(data: Float32Array, transB: boolean, K: number, N: number, offB: number, strideB: number, batches: number): number {
    const kind = transB ? "sliceT" : "slice";
    const panel = Math.ceil(N / 8) * 8 * K * 4;
    // The key holds K, N, offB and strideB; the number of slices follows from them for a given weight.
    return weights.find(data, kind, K * KEY + N, offB * KEY + strideB) || weights.get(data, kind, K * KEY + N, offB * KEY + strideB, batches * panel, (ptr) => {
      const raw = heap.put(data);
      for (let i = 0; i < batches; i++) {
        const at = raw + (offB + i * strideB) * 4;
        if (transB) ex.packBt(at, N, K, K, ptr + i * panel);
        else ex.packB(at, K, N, N, ptr + i * panel);
      }
      heap.release(raw);
    });
  }

  return {
    name: "wasm",
    weight: (t) => handle(t.shape, 0, t.data.length, t.data, 0),
    empty,
    view: (x, shape) => handle(shape, x.ptr, numel(shape), null, 0),
    release(...xs) {
      for (const x of xs) {
        if (x.size === 0 || x.released) continue; // a weight or a view, or already back
        x.released = true;
        classes.get(x.size)!.blocks.push(x.ptr);
      }
    },
    free(x) {
      if (x.size === 0 || x.released) return;
      x.released = true;
      heap.release(x.ptr);
    },
    read(x) {
      const n = x.n, data = new Float32Array(n), at = x.ptr >>> 2;
      data.set(heap.F32.subarray(at, at + n));
      return data;
    },
    embed(table, ids) {
      const D = table.shape[1]!;
      const out = empty([ids.length, D]);
      const f32 = heap.F32, at = out.ptr >>> 2;
      for (let t = 0; t < ids.length; t++) f32.set(table.data.subarray(ids[t]! * D, (ids[t]! + 1) * D), at + t * D);
      return out;
    },
    gatherRows(x, rows) {
      const D = x.shape[1]!;
      const out = empty([rows.length, D]);
      const f32 = heap.F32, src = x.ptr >>> 2, dst = out.ptr >>> 2;
      rows.forEach((r, i) => f32.copyWithin(dst + i * D, src + r * D, src + (r + 1) * D));
      return out;
    },
    addRows(x, update, slots) {
      const D = lastDim(x);
      const out = empty(x.shape);
      const f32 = heap.F32, a = x.ptr >>> 2, u = update.ptr >>> 2, y = out.ptr >>> 2;
      for (let r = 0; r < slots.length; r++) {
        const s = slots[r]!;
        for (let d = 0; d < D; d++) f32[y + r * D + d] = s >= 0 ? f32[a + r * D + d]! + f32[u + s * D + d]! : f32[a + r * D + d]!;
      }
      return out;
    },
    add(a, b) {
      const out = empty(a.shape);
      const f32 = heap.F32, x = a.ptr >>> 2, z = b.ptr >>> 2, y = out.ptr >>> 2, n = a.n;
      for (let i = 0; i < n; i++) f32[y + i] = f32[x + i]! + f32[z + i]!;
      return out;
    },
    linear(x, w) {
      const K = lastDim(x), N = w.shape[0]!;
      const M = x.n / K;
      const shape = x.shape.slice();
      shape[shape.length - 1] = N;
      const out = empty(shape);
      try {
        core.gemm(M, N, K, x.ptr, core.packedWeight(host(w), N, K), out.ptr);
        done("linear");
      } finally {
        temp.reset();
      }
      return out;
    },
    gemm(a, b, c, { M, N, K, transB, batches = 1, strideA = M * K, strideB = K * N, strideC = M * N, offA = 0, offB = 0, offC = 0 }) {
      const panel = Math.ceil(N / 8) * 8 * K * 4;
      try {
        const bp = packedSlices(host(b), transB, K, N, offB, strideB, batches);
        for (let i = 0; i < batches; i++) core.gemm(M, N, K, a.ptr + (offA + i * strideA) * 4, bp + i * panel, c.ptr + (offC + i * strideC) * 4);
        done("gemm");
      } finally {
        temp.reset();
      }
    },
    rmsnorm(x, w, eps) {
      const D = lastDim(x);
      const out = empty(x.shape);
      ex.rmsnorm(x.ptr, core.residentVector(host(w)), x.n / D, D, eps, out.ptr);
      done("rmsnorm");
      return out;
    },
    ropeTable(positions, freqs) {
      const T = positions.length, dim = 2 * freqs.length;
      const table = empty([2, T, dim]); // cosines, then sines
      writeRopeTables(heap.F32, table.ptr >>> 2, (table.ptr >>> 2) + T * dim, positions, freqs, T);
      return table;
    },
    rope(x, table, T) {
      const dim = lastDim(x);
      const out = empty(x.shape);
      ex.rope(x.ptr, table.ptr, table.ptr + T * dim * 4, x.n / (T * dim), T, dim, out.ptr);
      done("rope");
      return out;
    },
    swiglu(gate, up) {
      const out = empty(gate.shape);
      ex.swiglu(gate.ptr, up.ptr, gate.n, out.ptr);
      done("swiglu");
      return out;
    },
    softmax(x) {
      const N = lastDim(x);
      const out = empty(x.shape);
      ex.softmax(x.ptr, 0, x.n / N, N, out.ptr);
      done("softmax");
      return out;
    },
    copyBlocks(src, dst, b) {
      const f32 = heap.F32, s0 = (src.ptr >>> 2) + (b.srcOff ?? 0), d0 = (dst.ptr >>> 2) + (b.dstOff ?? 0);
      const { rows, width, srcRow, dstRow, srcBatch = 0, dstBatch = 0 } = b;
      for (let n = 0; n < (b.batches ?? 1); n++) {
        for (let r = 0; r < rows; r++) {
          const from = s0 + n * srcBatch + r * srcRow, to = d0 + n * dstBatch + r * dstRow;
          if (width > 64) f32.copyWithin(to, from, from + width);
          else for (let c = 0; c < width; c++) f32[to + c] = f32[from + c]!; // a short row: cheaper than a call
        }
      }
    },
    attention(q, k, v, { H, Hkv, Tq, Tk, Dh, Dv, scale, offset, logGammas, kvRows }) {
      const out = empty([1, H, Tq, Dv]);
      try {
        const plo = temp.alloc(Tq * 4), phi = temp.alloc(Tq * 4), pg = logGammas ? temp.alloc(H * 4) : 0;
        const i32 = heap.I32;
        for (let i = 0; i < Tq; i++) {
          i32[(plo >>> 2) + i] = 0;
          i32[(phi >>> 2) + i] = Math.min(Tk, offset + i + 1); // causal
        }
        if (logGammas) heap.F32.set(logGammas, pg >>> 2);
        if (Hkv === 1 || kvRows === Tk) {
          core.attentionAt(q.ptr, k.ptr, v.ptr, out.ptr, 1, H, Hkv, Tq, Tk, Dh, Dv, scale, plo, phi, pg, offset);
        } else {
          // The kernel reads kv head g at g·Tk rows; in a cache it sits at g·kvRows: one call per kv head's group.
          const group = H / Hkv;
          for (let g = 0; g < Hkv; g++) {
            core.attentionAt(q.ptr + g * group * Tq * Dh * 4, k.ptr + g * kvRows * Dh * 4, v.ptr + g * kvRows * Dv * 4, out.ptr + g * group * Tq * Dv * 4,
              1, group, 1, Tq, Tk, Dh, Dv, scale, plo, phi, pg ? pg + g * group * 4 : 0, offset);
          }
        }
        done("attention");
      } finally {
        temp.reset();
      }
      return out;
    },
    moe(x, routing, e) {
      // The kernels' own mixture (dispatch, packed experts, float64 combine), reading x where it lies.
      const out = empty(x.shape);
      try {
        const sum = core.moeAt(x.ptr, x.shape[0]!, e.D, routing, host(e.gate), host(e.up), host(e.down), e.E, e.F);
        const f32 = heap.F32, at = out.ptr >>> 2;
        for (let i = 0; i < out.n; i++) f32[at + i] = sum[i]!;
      } finally {
        temp.reset();
      }
      return out;
    },
    settle() {
      for (const [size, pool] of classes) {
        if (!pool.used) {
          for (const ptr of pool.blocks) heap.release(ptr);
          classes.delete(size);
        }
        pool.used = false;
      }
    },
  };
}
