// Attention under a visibility pattern that the fused kernel's MaskSpec cannot describe: NSA's per-group block
// selection and its compressed blocks. Scores, softmax and the weighted sum go through the Kernels value, so a
// backend's linear, softmax and matmul run them:
//   probs = softmax(scale · q·kᵀ, hidden keys excluded),   out = probs·v
// q [B, H, Tq, Dh], k [B, Hkv, Tk, Dh], v [B, Hkv, Tk, Dv], visible [B, H, Tq, Tk] (1 = visible). Heads of one
// kv group are consecutive, so the q rows of group g form one [group·Tq, Dh] block read against one kv head.
// A query with no visible key outputs zeros (the kernels' softmax gives a zero row).

import { argError } from "../errors.ts";
import { attentionSizes } from "./attention.ts";
import type { Kernels } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";

export interface MaskedAttention {
  out: Tensor; // [B, H, Tq, Dv]
  probs: Tensor; // [B, H, Tq, Tk]
}

export function maskedAttention(
  q: Tensor, k: Tensor, v: Tensor, visible: Uint8Array, scale: number, kernels: Kernels,
): MaskedAttention {
  const { B, H, Hkv, Tq, Tk, Dh, Dv } = attentionSizes(q, k, v, scale);
  if (visible.length !== B * H * Tq * Tk) throw argError("visible", `${B * H * Tq * Tk} flags [B, H, Tq, Tk]`, visible.length);
  const out = new Float32Array(B * H * Tq * Dv);
  const probs = new Float32Array(B * H * Tq * Tk);
  const rows = (H / Hkv) * Tq;
  if (Tk > 0 && rows > 0) {
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < Hkv; g++) {
        const qRows = { shape: [rows, Dh], data: q.data.subarray((b * Hkv + g) * rows * Dh, (b * Hkv + g + 1) * rows * Dh) };
        const kRows = { shape: [Tk, Dh], data: k.data.subarray((b * Hkv + g) * Tk * Dh, (b * Hkv + g + 1) * Tk * Dh) };
        const vRows = { shape: [Tk, Dv], data: v.data.subarray((b * Hkv + g) * Tk * Dv, (b * Hkv + g + 1) * Tk * Dv) };
        const dots = kernels.matmul(qRows, transposed(kRows)); // q·kᵀ, [group·Tq, Tk]
        const scores = { shape: dots.shape, data: dots.data.map((s) => s * scale) };
        const p = kernels.softmax(scores, visible.subarray((b * Hkv + g) * rows * Tk, (b * Hkv + g + 1) * rows * Tk));
        probs.set(p.data, (b * Hkv + g) * rows * Tk);
        out.set(kernels.matmul(p, vRows).data, (b * Hkv + g) * rows * Dv);
      }
    }
  }
  return { out: { shape: [B, H, Tq, Dv], data: out }, probs: { shape: [B, H, Tq, Tk], data: probs } };
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
