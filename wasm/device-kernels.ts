// The WASM backend's device kernels (src/device/kernels.ts): the one forward (src/model/forward.ts) runs on these,
// its values kept in the module's memory. Activations are blocks of that memory handed from kernel to kernel by
// pointer, with no copy in or out; weights are the kernels' own resident copies (wasm/weights.ts: linear weights
// packed once, RMSNorm vectors, the absorbed MLA slices of kv_b_proj packed per head); the attention caches are
// blocks of capacity rows that new keys and values are written into in place. What crosses to the host: token ids
// and the embedding rows (copied straight in), router logits, traced tensors and the logits. The arithmetic is the
// pointer-level functions of wasm/kernels/ (the same the host-tensor kernels call between their copies in and out),
// over the backend's core (wasm/core.ts).
//
// Activation blocks come from a pool of size classes (quarter powers of two), so a generation loop reuses the
// same blocks step after step; when a forward ends (settle), size classes that none of the last KEPT_FORWARDS
// forwards used go back to the heap (a long prompt's large blocks do not outlive it by more). Every kernel is
// synchronous, and so is `read`: the forward runs under runSync.

import type { BlockCopy, DeviceKernels, Value } from "../src/device/kernels.ts";
import { copyLayout } from "../src/device/layout.ts";
import { numel, type Tensor } from "../src/tensor.ts";
import type { WasmCore } from "./core.ts";
import { attentionAt } from "./kernels/attention.ts";
import { ropeAt, writeRotary } from "./kernels/elementwise.ts";
import { indexScoresAt } from "./kernels/indexer.ts";
import { gemmBatches, linearAt, packedSlices, quantLinearAt } from "./kernels/matmul.ts";
import { moeAt } from "./kernels/moe.ts";
import { layernormAt, rmsnormAt } from "./kernels/rows.ts";

/**
 * A value in WASM memory at byte address `ptr`; a weight instead carries its host array (made resident on use).
 * Every handle has every field, in one order (made by `handle`), so that the kernels see one object shape.
 */
export interface WasmTensor extends Value {
  readonly ptr: number;
  /** Elements (the shape's product, kept: a decode step asks for it ~150 times). */
  readonly n: number;
  readonly host: Float32Array | null;
  /** The pool's size class of the block, on values the pool made; 0 on weights. */
  readonly size: number;
  /** Set once the block has gone back to the pool (a second release is ignored). */
  released: boolean;
}

const handle = (shape: readonly number[], ptr: number, n: number, host: Float32Array | null, size: number): WasmTensor =>
  ({ shape, ptr, n, host, size, released: false });

/** Byte sizes grow in steps of a quarter power of two, so that values of nearby sizes share blocks. */
function sizeClass(bytes: number): number {
  const b = Math.max(64, (bytes + 63) & ~63);
  if (b <= 1024) return b;
  const step = 2 ** (29 - Math.clz32(b)); // a quarter of b's highest power of two
  return Math.ceil(b / step) * step;
}

function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Forwards a size class outlives its last use: a decode step that ends an NSA block (every d tokens) or starts a
 *  segment (every S) uses sizes the steps between do not, and finds them pooled; a long prompt's large blocks go back
 *  to the heap this many forwards after it. */
export const KEPT_FORWARDS = 16;

/** The causal mask of every attention call: the forward gives the offset of query 0 beside it. */
const CAUSAL = { causal: true };

const made = new WeakMap<WasmCore, DeviceKernels<WasmTensor>>();

/** The device kernels over a wasm backend's core (wasm/core.ts), made once per core. */
export function wasmDeviceKernels(core: WasmCore): DeviceKernels<WasmTensor> {
  let kernels = made.get(core);
  if (!kernels) made.set(core, (kernels = makeKernels(core)));
  return kernels;
}

function makeKernels(core: WasmCore): DeviceKernels<WasmTensor> {
  const { ex, heap, temp } = core;
  const classes = new Map<number, { blocks: number[]; idle: number }>(); // size class → pooled blocks, forwards unused
  const weights = new WeakMap<Tensor, WasmTensor>();

  /** A pooled block for a value of this shape, with room for at least `room` elements (a value that grows step by
   *  step asks for its bound, so that every step takes the same size class). */
  function empty(shape: readonly number[], room = 0): WasmTensor {
    const n = numel(shape), size = sizeClass(Math.max(n, room) * 4);
    let pool = classes.get(size);
    if (!pool) classes.set(size, (pool = { blocks: [], idle: 0 }));
    pool.idle = 0;
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
    if (!w.host) throw new TypeError("wasm device kernels: expected a weight handle (kernels.weight)");
    return w.host;
  };

  /** The block copy of src/device/kernels.ts within the module's memory. */
  function copyBlocks(src: WasmTensor, dst: WasmTensor, b: BlockCopy): void {
    const f32 = heap.F32, s0 = (src.ptr >>> 2) + (b.srcOff ?? 0), d0 = (dst.ptr >>> 2) + (b.dstOff ?? 0);
    const { rows, width, srcRow, dstRow, srcBatch = 0, dstBatch = 0 } = b;
    for (let n = 0; n < (b.batches ?? 1); n++) {
      for (let r = 0; r < rows; r++) {
        const from = s0 + n * srcBatch + r * srcRow, to = d0 + n * dstBatch + r * dstRow;
        if (width > 64) f32.copyWithin(to, from, from + width);
        else for (let c = 0; c < width; c++) f32[to + c] = f32[from + c]!; // a short row: cheaper than a call
      }
    }
    done("copy");
  }

  // The rotary table (src/rope.ts rotaryTable) of the last rope call, kept in a pooled block until the forward
  // settles: a forward rotates queries and keys of every layer at the same positions with the same frequencies,
  // so it computes the table once (the positions and frequencies are compared by value: each layer makes its own).
  let table: { positions: Int32Array; freqs: Float64Array; value: WasmTensor } | null = null;
  function rotary(positions: Int32Array, freqs: Float64Array): WasmTensor {
    if (table && sameValues(table.positions, positions) && sameValues(table.freqs, freqs)) return table.value;
    if (table) release(table.value);
    const value = empty([2, positions.length, freqs.length]);
    writeRotary(core, value.ptr, positions, freqs);
    table = { positions: positions.slice(), freqs: freqs.slice(), value };
    return value;
  }

  function release(...xs: WasmTensor[]): void {
    for (const x of xs) {
      if (x.size === 0 || x.released) continue; // a weight, or already back
      x.released = true;
      classes.get(x.size)!.blocks.push(x.ptr);
    }
  }

  /** A pooled value holding `data` (a result computed on the host). */
  function upload(shape: readonly number[], data: ArrayLike<number>): WasmTensor {
    const out = empty(shape);
    heap.F32.set(data, out.ptr >>> 2);
    return out;
  }

  return {
    name: "wasm",
    weight(t) {
      // One handle per weight tensor, kept: the forward asks for each weight's handle at every product.
      let w = weights.get(t);
      if (w?.host !== t.data) weights.set(t, (w = handle(t.shape, 0, t.data.length, t.data, 0)));
      return w;
    },
    upload: (t) => upload(t.shape, t.data),
    empty,
    release,
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
    gatherRows(x, rows, perPlane = false) {
      // x [N, D] is one plane; plane a's row r is rows[a·step + r], step 0 when every plane takes the same rows.
      const [A, N, D] = x.shape.length === 3 ? (x.shape as [number, number, number]) : [1, x.shape[0]!, x.shape[1]!];
      const n = perPlane ? rows.length / A : rows.length, step = perPlane ? n : 0;
      const out = empty(x.shape.length === 3 ? [A, n, D] : [n, D]);
      // The module copies (one call, where a copy per run from here cost a call each): the row list goes in first.
      try {
        ex.gatherRows(x.ptr, temp.put(rows), A, N, n, D, step, out.ptr);
        done("gatherRows");
      } finally {
        temp.reset();
      }
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
    ...copyLayout(empty, copyBlocks),
    add(a, b) {
      const out = empty(a.shape);
      const f32 = heap.F32, x = a.ptr >>> 2, z = b.ptr >>> 2, y = out.ptr >>> 2, n = a.n;
      for (let i = 0; i < n; i++) f32[y + i] = f32[x + i]! + f32[z + i]!;
      return out;
    },
    linear(x, w) {
      const K = lastDim(x), N = w.shape[0]!;
      const M = K === 0 ? x.n : x.n / K;
      const shape = x.shape.slice();
      shape[shape.length - 1] = N;
      const out = empty(shape);
      try {
        linearAt(core, x.ptr, M, N, K, host(w), out.ptr);
        done("linear");
      } finally {
        temp.reset();
      }
      return out;
    },
    gemm(a, b, c, { M, N, K, transB, batches = 1, strideA = M * K, strideB = K * N, strideC = M * N, offA = 0, offB = 0, offC = 0 }) {
      try {
        const bp = packedSlices(core, host(b), transB, K, N, offB, strideB, batches);
        gemmBatches(core, batches, M, N, K, a.ptr + offA * 4, strideA, bp, c.ptr + offC * 4, strideC);
        done("gemm");
      } finally {
        temp.reset();
      }
    },
    rmsnorm(x, w, eps) {
      const D = lastDim(x);
      const out = empty(x.shape);
      if (x.n > 0) rmsnormAt(core, x.ptr, host(w), x.n / D, D, eps, out.ptr);
      done("rmsnorm");
      return out;
    },
    layernorm(x, w, b, eps) {
      const D = lastDim(x);
      const out = empty(x.shape);
      if (x.n > 0) layernormAt(core, x.ptr, host(w), host(b), x.n / D, D, eps, out.ptr);
      done("layernorm");
      return out;
    },
    rope(x, positions, freqs, interleaved) {
      const T = positions.length, dim = lastDim(x);
      const out = empty(x.shape);
      if (x.n === 0) return out;
      const table = rotary(positions, freqs); // cosines, then sines: [T, dim/2] each, for either layout
      ropeAt(core, x.ptr, table.ptr, x.n / (T * dim), T, dim, out.ptr, interleaved);
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
      if (x.n > 0) ex.softmax(x.ptr, 0, x.n / N, N, out.ptr);
      done("softmax");
      return out;
    },
    attention(q, k, v, { H, Hkv, Tq, Tk, Dh, Dv, scale, offset, logGammas, kvRows, firstRow = 0 }) {
      const out = empty([H, Tq, Dv]);
      try {
        // Kv head g sits at g·kvRows rows of the cache: one call reads every head where it lies (a ring's too).
        attentionAt(core, q.ptr, k.ptr, v.ptr, out.ptr, 1, H, Hkv, Tq, Tk, Dh, Dv, scale, CAUSAL, offset, logGammas, kvRows, firstRow);
        done("attention");
      } finally {
        temp.reset();
      }
      return out;
    },
    attentionProbs(q, k, { H, Hkv, Tq, Tk, Dh, scale, offset, kvRows }) {
      // Every element is written (zeros after each query's last key). Room for the cache's every row: Tk grows with
      // the cache, and the block stays in one size class until the cache grows.
      const out = empty([H, Tq, Tk], H * Tq * kvRows);
      ex.attentionProbs(q.ptr, k.ptr, out.ptr, H, Hkv, Tq, Tk, kvRows, Dh, scale, offset);
      done("attentionProbs");
      return out;
    },
    attendWith(p, v, { H, Hkv, Tq, Tk, Dv, kvRows }) {
      const out = empty([H, Tq, Dv]);
      ex.attendWith(p.ptr, v.ptr, out.ptr, H, Hkv, Tq, Tk, kvRows, Dv);
      done("attendWith");
      return out;
    },
    indexScores(q, keys, w, { H, Tq, Tk, D, offset, scale, kvRows }) {
      // Every element is written (the -Infinity after each query's position included): no fill first. Room for the
      // cache's every row: Tk grows by one a decode step, and the block stays in one size class until the cache grows.
      const out = empty([Tq, Tk], Tq * kvRows);
      indexScoresAt(core, q.ptr, keys.ptr, w.ptr, out.ptr, H, Tq, Tk, D, offset, scale);
      done("indexScores");
      return out;
    },
    moe(x, routing, e) {
      // The kernels' own mixture (dispatch, packed experts, float64 combine), reading x where it lies.
      const out = empty(x.shape);
      try {
        moeAt(core, x.ptr, x.shape[0]!, e.D, routing, host(e.gate), host(e.up), host(e.down), e.E, e.F, out.ptr);
        done("moe");
      } finally {
        temp.reset();
      }
      return out;
    },
    quantLinear(x, w, activations) {
      // Activations quantised on the host as the reference does (read from memory, written back into the arena),
      // the dequantised weight packed once and resident.
      const K = lastDim(x), N = w.shape[0];
      const rows = K === 0 ? numel(x.shape.slice(0, -1)) : x.n / K;
      const shape = x.shape.slice();
      shape[shape.length - 1] = N;
      const out = empty(shape);
      try {
        quantLinearAt(core, x.ptr, rows, w, activations, out.ptr);
        done("quantLinear");
      } finally {
        temp.reset();
      }
      return out;
    },
    settle() {
      if (table) release(table.value);
      table = null;
      for (const [size, pool] of classes) {
        if (++pool.idle <= KEPT_FORWARDS) continue;
        for (const ptr of pool.blocks) heap.release(ptr);
        classes.delete(size);
      }
    },
  };
}
