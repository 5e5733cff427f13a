// Attention under a visibility pattern that the fused kernel's MaskSpec cannot describe: NSA's per-group block
// selection and its compressed blocks. Scores, softmax and the weighted sum go through the Kernels value, so a
// backend's linear, softmax and matmul run them:
//   probs = softmax(scale · q·kᵀ, hidden keys excluded),   out = probs·v
// q [B, H, Tq, Dh], k [B, Hkv, Tk, Dh], v [B, Hkv, Tk, Dv], visible [B, H, Tq, Tk] (1 = visible). Heads of one
// kv group are consecutive, so the q rows of group g form one [group·Tq, Dh] block read against one kv head.
// The kernels' bmm runs each batch as their matmul runs one product, and their softmax is row by row, so this is,
// bit for bit, the same products and softmax as one kv head at a time (test/sparse-decode.test.ts).
// A query with no visible key outputs zeros (the kernels' softmax gives a zero row).

import { argError } from "../errors.ts";
import { attentionSizes } from "./attention.ts";
import type { Kernels } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";

export interface MaskedAttention {
  out: Tensor; // [B, H, Tq, Dv]
  probs: Tensor; // [B, H, Tq, Tk]
}

/**
 * Every kv group at once, in three kernel calls (one per kv head would be three per head, each a copy into and out
 * of a backend's memory on a decode step): the q rows of group g form batch g of one bmm against every kv head's keys,
 * and the softmax takes all rows in one call. `keysT`: k's planes transposed, as transposedPlanes makes them, when
 * the caller keeps them (NSA's compressed keys change only when a block ends).
 */
export function maskedAttention(
  q: Tensor, k: Tensor, v: Tensor, visible: Uint8Array, scale: number, kernels: Kernels, keysT?: Float32Array,
): MaskedAttention {
  const sizes = attentionSizes(q, k, v, scale);
  const { B, H, Hkv, Tq, Tk, Dv } = sizes;
  const probs = probabilities(q, k, visible, sizes, kernels, keysT);
  if (Tk === 0 || H * Tq === 0) return { out: { shape: [B, H, Tq, Dv], data: new Float32Array(B * H * Tq * Dv) }, probs };
  const out = kernels.bmm({ shape: [B * Hkv, (H / Hkv) * Tq, Tk], data: probs.data }, { shape: [B * Hkv, Tk, Dv], data: v.data });
  return { out: { shape: [B, H, Tq, Dv], data: out.data }, probs };
}

/** maskedAttention's probabilities alone, [B, H, Tq, Tk]: for a caller that reads them and has no values to weigh
 *  (NSA's block choice, the reference's `attentionProbs`). */
export function maskedProbs(q: Tensor, k: Tensor, visible: Uint8Array, scale: number, kernels: Kernels, keysT?: Float32Array): Tensor {
  return probabilities(q, k, visible, attentionSizes(q, k, k, scale), kernels, keysT); // k stands in for v: no values read
}

/** softmax(scale · q·kᵀ) over the visible keys, [B, H, Tq, Tk], every kv group in one bmm and one softmax. */
function probabilities(
  q: Tensor, k: Tensor, visible: Uint8Array, { B, H, Hkv, Tq, Tk, Dh, scale }: ReturnType<typeof attentionSizes>, kernels: Kernels, keysT?: Float32Array,
): Tensor {
  if (visible.length !== B * H * Tq * Tk) throw argError("visible", `${B * H * Tq * Tk} flags [B, H, Tq, Tk]`, visible.length);
  if (keysT && keysT.length !== k.data.length) throw argError("keysT", `k's ${k.data.length} values transposed`, keysT.length);
  const [planes, rows] = [B * Hkv, (H / Hkv) * Tq];
  if (Tk === 0 || rows === 0) return { shape: [B, H, Tq, Tk], data: new Float32Array(B * H * Tq * Tk) };
  const dots = kernels.bmm({ shape: [planes, rows, Dh], data: q.data }, { shape: [planes, Dh, Tk], data: keysT ?? transposedPlanes(k) }).data;
  for (let i = 0; i < dots.length; i++) dots[i] = dots[i]! * scale;
  return { shape: [B, H, Tq, Tk], data: kernels.softmax({ shape: [planes, rows, Tk], data: dots }, visible).data };
}

/** Each plane's kᵀ, k [..., Tk, Dh] → [planes, Dh, Tk]: keys enter a product as matmul(q, kᵀ) (see transposed). */
export function transposedPlanes(k: Tensor): Float32Array {
  const Dh = k.shape[k.shape.length - 1] ?? 0, Tk = k.shape[k.shape.length - 2] ?? 0;
  const keysT = new Float32Array(k.data.length);
  for (let p = 0; p < k.data.length / (Dh * Tk || 1); p++) {
    for (let r = 0; r < Tk; r++) for (let d = 0; d < Dh; d++) keysT[(p * Dh + d) * Tk + r] = k.data[(p * Tk + r) * Dh + d]!;
  }
  return keysT;
}

/**
 * x [R, C] → xᵀ [C, R]. Keys enter a product as matmul(q, kᵀ), not linear(q, k): a backend keeps linear's second
 * operand as a resident weight (WASM packs it once, keyed by its array), which keys that change every step are not.
 * The reference sums both in the same order, so the result is the same, bit for bit.
 */
export function transposed(x: Tensor): Tensor {
  const [R, C] = x.shape as [number, number];
  const data = new Float32Array(R * C);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) data[c * R + r] = x.data[r * C + c]!;
  return { shape: [C, R], data };
}

/** Positions [start, end) of the time axis of x [..., L, d], as a copy: what a cache keeps when it drops old keys. */
export function sliceTime(x: Tensor, start: number, end: number): Tensor {
  const rank = x.shape.length;
  const L = x.shape[rank - 2] ?? 0;
  if (rank < 2) throw argError("x", "shape [..., L, d]", `[${x.shape.join(", ")}]`);
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= L)) {
    throw argError("positions", `0 <= start <= end <= ${L}`, `[${start}, ${end})`);
  }
  const d = x.shape[rank - 1]!;
  const planes = L === 0 || d === 0 ? x.shape.slice(0, -2).reduce((a, n) => a * n, 1) : x.data.length / (L * d);
  const data = new Float32Array(planes * (end - start) * d);
  for (let p = 0; p < planes; p++) data.set(x.data.subarray((p * L + start) * d, (p * L + end) * d), p * (end - start) * d);
  return { shape: [...x.shape.slice(0, -2), end - start, d], data };
}
