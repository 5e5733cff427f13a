// Scaled dot-product attention (Vaswani et al. 2017), multi-head and grouped-query (Ainslie et al. 2023):
//   probs = softmax(q·kᵀ · scale + bias, hidden keys excluded),   out = probs·v
// q [B, H, Tq, Dh], k [B, Hkv, Tk, Dh], v [B, Hkv, Tk, Dv]; head h reads kv head floor(h / (H / Hkv)).
// A query with no visible key outputs zeros.

import { argError } from "../errors.ts";
import { type Mask } from "../masks.ts";
import { softmax } from "../ops.ts";
import { expectShape, shapeString, type Tensor } from "../tensor.ts";

export interface AttentionOptions {
  /** Visible keys, [Tq, Tk] or [B, Tq, Tk]. Absent: every key is visible. */
  mask?: Mask;
  /** Added to the scaled scores: [Tq, Tk], [H, Tq, Tk] or [B, H, Tq, Tk]; -Infinity hides a key. */
  bias?: Tensor;
  /** Default 1/sqrt(Dh). */
  scale?: number;
}

export interface AttentionResult {
  out: Tensor; // [B, H, Tq, Dv]
  probs: Tensor; // [B, H, Tq, Tk]
}

export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): AttentionResult {
  const { B, H, Tq, Dh } = expectShape("q", q, ["B", "H", "Tq", "Dh"]);
  const { Hkv, Tk } = expectShape("k", k, ["B", "Hkv", "Tk", "Dh"], { B, Dh });
  const { Dv } = expectShape("v", v, ["B", "Hkv", "Tk", "Dv"], { B, Hkv, Tk });
  if (Hkv === 0 || H % Hkv !== 0) throw argError("k", `a number of kv heads that divides H=${H}`, Hkv);
  const scale = options.scale ?? 1 / Math.sqrt(Dh);
  if (!Number.isFinite(scale)) throw argError("scale", "a finite number", scale);
  const maskAt = maskIndexer(options.mask, B, Tq, Tk);
  const biasAt = biasIndexer(options.bias, B, H, Tq, Tk);
  const group = H / Hkv;

  const scores = new Float32Array(B * H * Tq * Tk);
  const visible = new Uint8Array(scores.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvBase = (b * Hkv + Math.floor(h / group)) * Tk;
      for (let i = 0; i < Tq; i++) {
        const qBase = ((b * H + h) * Tq + i) * Dh;
        const row = ((b * H + h) * Tq + i) * Tk;
        for (let j = 0; j < Tk; j++) {
          let dot = 0;
          for (let d = 0; d < Dh; d++) dot += q.data[qBase + d]! * k.data[(kvBase + j) * Dh + d]!;
          const score = dot * scale + biasAt(b, h, i, j);
          scores[row + j] = score;
          visible[row + j] = maskAt(b, i, j) && score !== -Infinity ? 1 : 0;
        }
      }
    }
  }
  const probs = softmax({ shape: [B, H, Tq, Tk], data: scores }, visible);

  const out = new Float32Array(B * H * Tq * Dv);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvBase = (b * Hkv + Math.floor(h / group)) * Tk;
      for (let i = 0; i < Tq; i++) {
        const row = ((b * H + h) * Tq + i) * Tk;
        for (let d = 0; d < Dv; d++) {
          let sum = 0;
          for (let j = 0; j < Tk; j++) sum += probs.data[row + j]! * v.data[(kvBase + j) * Dv + d]!;
          out[((b * H + h) * Tq + i) * Dv + d] = sum;
        }
      }
    }
  }
  return { out: { shape: [B, H, Tq, Dv], data: out }, probs };
}

function maskIndexer(mask: Mask | undefined, B: number, Tq: number, Tk: number) {
  if (!mask) return () => true;
  const s = mask.shape;
  const perBatch = s.length === 3 && s[0] === B;
  if (!((s.length === 2 || perBatch) && s[s.length - 2] === Tq && s[s.length - 1] === Tk)) {
    throw argError("mask", `shape [${Tq}, ${Tk}] or [${B}, ${Tq}, ${Tk}]`, shapeString(s));
  }
  return (b: number, i: number, j: number) => mask.data[((perBatch ? b : 0) * Tq + i) * Tk + j] !== 0;
}

function biasIndexer(bias: Tensor | undefined, B: number, H: number, Tq: number, Tk: number) {
  if (!bias) return () => 0;
  const s = bias.shape;
  const lead = s.slice(0, -2);
  const fits = s[s.length - 2] === Tq && s[s.length - 1] === Tk && bias.data.length === s.reduce((a, d) => a * d, 1);
  const batched = lead.length === 2 && lead[0] === B && lead[1] === H;
  const perHead = lead.length === 1 && lead[0] === H;
  if (!fits || !(lead.length === 0 || perHead || batched)) {
    throw argError("bias", `shape [${Tq}, ${Tk}], [${H}, ${Tq}, ${Tk}] or [${B}, ${H}, ${Tq}, ${Tk}]`, shapeString(s));
  }
  return (b: number, h: number, i: number, j: number) => {
    const plane = batched ? b * H + h : perHead ? h : 0;
    return bias.data[(plane * Tq + i) * Tk + j]!;
  };
}
