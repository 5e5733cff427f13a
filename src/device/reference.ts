// The reference backend's kernels: values are host tensors, reading one is free, and every kernel is the plain
// float64-accumulating code of src/ops.ts, src/rope.ts and src/attention/attention.ts, so that the one forward on
// the reference computes exactly what those functions compute.

import { attention as sdpa } from "../attention/attention.ts";
import { maskedProbs } from "../attention/masked.ts";
import { reference as referenceKernels } from "../kernels.ts";
import { causal } from "../masks.ts";
import { dispatchCombine } from "../moe/experts.ts";
import * as ops from "../ops.ts";
import { quantLinear } from "../quant/linear.ts";
import { applyRope } from "../rope.ts";
import { numel, type Tensor } from "../tensor.ts";
import type { BlockCopy, DeviceKernels } from "./kernels.ts";
import { copyLayout } from "./layout.ts";

const empty = (shape: readonly number[]): Tensor => ({ shape: [...shape], data: new Float32Array(numel(shape)) });

function copyBlocks(src: Tensor, dst: Tensor, b: BlockCopy): void {
  const { rows, width, srcRow, dstRow, srcOff = 0, dstOff = 0, srcBatch = 0, dstBatch = 0, batches = 1 } = b;
  for (let n = 0; n < batches; n++) {
    for (let r = 0; r < rows; r++) {
      const from = srcOff + n * srcBatch + r * srcRow;
      dst.data.set(src.data.subarray(from, from + width), dstOff + n * dstBatch + r * dstRow);
    }
  }
}

/** The first Tk rows of each of a cache's planes [A, rows, d], compact (a view when nothing follows them), as
 *  [1, A, Tk, d]: what the reference's attention reads. */
export function filled(x: Tensor, planes: number, rows: number, Tk: number): Tensor {
  const d = x.shape[x.shape.length - 1]!;
  if (rows === Tk) return { shape: [1, planes, Tk, d], data: x.data.subarray(0, planes * Tk * d) };
  if (planes === 1) return { shape: [1, 1, Tk, d], data: x.data.subarray(0, Tk * d) };
  const out = new Float32Array(planes * Tk * d);
  for (let p = 0; p < planes; p++) out.set(x.data.subarray(p * rows * d, (p * rows + Tk) * d), p * Tk * d);
  return { shape: [1, planes, Tk, d], data: out };
}

/** Keys 0 … Tk - 1 of a ring's planes [A, rows, d], key j at row (first + j) mod rows, in key order: [1, A, Tk, d]. */
function unrolled(x: Tensor, planes: number, rows: number, Tk: number, first: number): Tensor {
  const d = x.shape[x.shape.length - 1]!;
  const out = new Float32Array(planes * Tk * d);
  for (let p = 0; p < planes; p++) {
    for (let j = 0; j < Tk; j++) {
      const row = p * rows + ((first + j) % rows);
      out.set(x.data.subarray(row * d, (row + 1) * d), (p * Tk + j) * d);
    }
  }
  return { shape: [1, planes, Tk, d], data: out };
}

export const referenceDevice: DeviceKernels<Tensor> = {
  name: "reference",
  weight: (t) => t,
  upload: (t) => t,
  empty,
  release: () => {},
  free: () => {},
  read: (x) => x.data,
  embed: (table, ids) => ops.embedding(table, ids),
  gatherRows(x, rows, perPlane = false) {
    // x [N, D] is one plane; plane a's row r is rows[a·step + r], step 0 when every plane takes the same rows.
    const [A, N, D] = x.shape.length === 3 ? (x.shape as [number, number, number]) : [1, x.shape[0]!, x.shape[1]!];
    const n = perPlane ? rows.length / A : rows.length, step = perPlane ? n : 0;
    const out = empty(x.shape.length === 3 ? [A, n, D] : [n, D]);
    for (let a = 0; a < A; a++) {
      for (let r = 0; r < n; r++) {
        const from = (a * N + rows[a * step + r]!) * D;
        out.data.set(x.data.subarray(from, from + D), (a * n + r) * D);
      }
    }
    return out;
  },
  addRows(x, update, slots) {
    const D = x.shape[x.shape.length - 1]!;
    const out = empty(x.shape);
    for (let r = 0; r < slots.length; r++) {
      const s = slots[r]!;
      for (let d = 0; d < D; d++) out.data[r * D + d] = s >= 0 ? x.data[r * D + d]! + update.data[s * D + d]! : x.data[r * D + d]!;
    }
    return out;
  },
  ...copyLayout(empty, copyBlocks),
  add: (a, b) => ({ shape: [...a.shape], data: a.data.map((v, i) => v + b.data[i]!) }),
  linear: (x, w) => ops.linear(x, w),
  gemm(a, b, c, { M, N, K, transB, batches = 1, strideA = M * K, strideB = K * N, strideC = M * N, offA = 0, offB = 0, offC = 0 }) {
    for (let i = 0; i < batches; i++) ops.gemm(M, N, K, a.data, offA + i * strideA, b.data, offB + i * strideB, transB, c.data, offC + i * strideC);
  },
  rmsnorm: (x, w, eps) => ops.rmsnorm(x, w, eps),
  layernorm: (x, w, b, eps) => ops.layernorm(x, w, b, eps),
  rope: (x, positions, freqs, interleaved) => applyRope(x, positions, freqs, interleaved),
  swiglu: ops.swiglu,
  softmax: (x) => ops.softmax(x),
  attention(q, k, v, { H, Hkv, Tq, Tk, Dh, Dv, scale, offset, logGammas, kvRows, firstRow = 0 }) {
    const keys = (x: Tensor) => (firstRow === 0 ? filled(x, Hkv, kvRows, Tk) : unrolled(x, Hkv, kvRows, Tk, firstRow));
    const out = sdpa({ shape: [1, H, Tq, Dh], data: q.data }, keys(k), keys(v), {
      mask: causal(Tq, Tk, offset), logGammas, offset, scale,
    }).out;
    return { shape: [H, Tq, Dv], data: out.data };
  },
  attentionProbs(q, k, { H, Hkv, Tq, Tk, Dh, scale, offset, kvRows }) {
    // src/attention/masked.ts's own probabilities, so that NSA's layer equals sparse.ts bit for bit.
    const visible = new Uint8Array(H * Tq * Tk);
    for (let row = 0; row < H * Tq; row++) visible.fill(1, row * Tk, row * Tk + Math.max(0, Math.min(Tk, offset + (row % Tq) + 1)));
    const p = maskedProbs({ shape: [1, H, Tq, Dh], data: q.data }, filled(k, Hkv, kvRows, Tk), visible, scale, referenceKernels);
    return { shape: [H, Tq, Tk], data: p.data };
  },
  attendWith(probs, v, { H, Hkv, Tq, Tk, Dv, kvRows }) {
    const out = new Float32Array(H * Tq * Dv);
    for (let h = 0; h < H; h++) ops.gemm(Tq, Dv, Tk, probs.data, h * Tq * Tk, v.data, Math.floor(h / (H / Hkv)) * kvRows * Dv, false, out, h * Tq * Dv);
    return { shape: [H, Tq, Dv], data: out };
  },
  indexScores(q, keys, w, { H, Tq, Tk, D, offset, scale }) {
    // As src/attention/dsa.ts scores: each q·k a float32 product (the reference's matmul), weighted and summed in float64.
    const dots = new Float32Array(H * Tq * Tk);
    ops.gemm(H * Tq, Tk, D, q.data, 0, keys.data, 0, true, dots, 0);
    const out = new Float32Array(Tq * Tk).fill(-Infinity);
    for (let t = 0; t < Tq; t++) {
      for (let s = 0; s <= offset + t; s++) {
        let sum = 0;
        for (let h = 0; h < H; h++) sum += w.data[t * H + h]! * scale * Math.max(dots[(h * Tq + t) * Tk + s]!, 0);
        out[t * Tk + s] = sum;
      }
    }
    return { shape: [Tq, Tk], data: out };
  },
  moe: (x, routing, e) => dispatchCombine(x, routing, { gate: e.gate, up: e.up, down: e.down }),
  quantLinear: (x, w, activations) => quantLinear(x, w, { activations }),
};

/** The synchronous host kernels the reference runs host steps with (adapters, hook replacements). */
export const referenceHostKernels = referenceKernels;
