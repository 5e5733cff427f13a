// Scaled dot-product attention (Vaswani et al. 2017), multi-head and grouped-query (Ainslie et al. 2023):
//   probs = softmax(q·kᵀ · scale + bias + (offset + i - j)·ln γ_h, hidden keys excluded),   out = probs·v
// q [B, H, Tq, Dh], k [B, Hkv, Tk, Dh], v [B, Hkv, Tk, Dv]; head h reads kv head floor(h / (H / Hkv)).
// A query with no visible key outputs zeros.

import { argError, checkInteger, checkNumber } from "../errors.ts";
import type { Mask } from "../masks.ts";
import { expectShape, shapeString, type Tensor } from "../tensor.ts";

export interface AttentionOptions {
  /** Visible keys, [Tq, Tk] or [B, Tq, Tk]. Absent: every key is visible. */
  mask?: Mask;
  /** Added to the scaled scores: [Tq, Tk], [H, Tq, Tk] or [B, H, Tq, Tk]; -Infinity hides a key. */
  bias?: Tensor;
  /** Relative time decay (spec/attention.md): (offset + i - j)·logGammas[h] is added to the scores of query head h. */
  logGammas?: readonly number[];
  /** Absolute position of the first query, for `logGammas` (default Tk - Tq). */
  offset?: number;
  /** Default 1/sqrt(Dh). */
  scale?: number;
  /** Also return the scores before the softmax (a hook point reads them). */
  withScores?: boolean;
}

export interface AttentionResult {
  out: Tensor; // [B, H, Tq, Dv]
  probs: Tensor; // [B, H, Tq, Tk]
  /** With `withScores`: q·kᵀ·scale + bias + decay, -Infinity for hidden keys, [B, H, Tq, Tk]. */
  scores?: Tensor;
}

/** The sizes of an attention call, checked: q [B, H, Tq, Dh], k [B, Hkv, Tk, Dh], v [B, Hkv, Tk, Dv], Hkv | H; and
 *  the scale (default 1/√Dh). Every backend's attention validates through this one function. */
export function attentionSizes(q: Tensor, k: Tensor, v: Tensor, scaleOption?: number) {
  // Plain comparisons first (a decode step makes several calls); expectShape only to word a failing call's message.
  if (!(whole4(q) && whole4(k) && whole4(v) && k.shape[0] === q.shape[0] && k.shape[3] === q.shape[3] &&
    v.shape[0] === q.shape[0] && v.shape[1] === k.shape[1] && v.shape[2] === k.shape[2])) {
    const { B, Dh } = expectShape("q", q, ["B", "H", "Tq", "Dh"]);
    const { Hkv, Tk } = expectShape("k", k, ["B", "Hkv", "Tk", "Dh"], { B, Dh });
    expectShape("v", v, ["B", "Hkv", "Tk", "Dv"], { B, Hkv, Tk });
  }
  const [B, H, Tq, Dh] = q.shape as [number, number, number, number];
  const [, Hkv, Tk] = k.shape as [number, number, number];
  const Dv = v.shape[3]!;
  if (Hkv === 0 || H % Hkv !== 0) throw argError("k", `a number of kv heads that divides H=${H}`, Hkv);
  const scale = scaleOption ?? 1 / Math.sqrt(Dh);
  if (!Number.isFinite(scale)) throw argError("scale", "a finite number", scale);
  return { B, H, Hkv, Tq, Tk, Dh, Dv, scale };
}

/** A rank-4 tensor whose Float32Array fills its shape. */
function whole4(t: Tensor): boolean {
  return t?.shape?.length === 4 && t.data instanceof Float32Array && t.data.length === t.shape[0]! * t.shape[1]! * t.shape[2]! * t.shape[3]!;
}

export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): AttentionResult {
  const { B, H, Hkv, Tq, Tk, Dh, Dv, scale } = attentionSizes(q, k, v, options.scale);
  const maskAt = maskIndexer(options.mask, B, Tq, Tk);
  const biasAt = biasIndexer(options.bias, B, H, Tq, Tk);
  const group = H / Hkv;
  const decayAt = decayIndexer(options.logGammas, options.offset ?? Tk - Tq, H);

  // One row at a time in float64: scores, then weights; each is rounded once, when stored into probs or out.
  const probs = new Float32Array(B * H * Tq * Tk);
  const scores = options.withScores ? new Float32Array(B * H * Tq * Tk) : undefined;
  const out = new Float32Array(B * H * Tq * Dv);
  const weight = new Float64Array(Tk);
  const seen = new Uint8Array(Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvBase = (b * Hkv + Math.floor(h / group)) * Tk;
      for (let i = 0; i < Tq; i++) {
        const qBase = ((b * H + h) * Tq + i) * Dh;
        let max = -Infinity;
        for (let j = 0; j < Tk; j++) {
          let dot = 0;
          for (let d = 0; d < Dh; d++) dot += q.data[qBase + d]! * k.data[(kvBase + j) * Dh + d]!;
          const bias = biasAt(b, h, i, j);
          const score = dot * scale + bias + decayAt(h, i, j);
          // A -∞ bias hides its key even where the rest of the score overflowed to +∞ (∞ - ∞ is NaN).
          seen[j] = maskAt(b, i, j) && bias !== -Infinity && score !== -Infinity ? 1 : 0;
          weight[j] = score;
          if (seen[j]) max = Math.max(max, score); // Math.max lets a NaN through, as it should
          if (scores) scores[((b * H + h) * Tq + i) * Tk + j] = seen[j] ? score : -Infinity;
        }
        if (max === -Infinity) continue; // no visible key: probabilities and output stay zero
        // A score can reach +∞ only by overflowing float64 (a finite bias or scale near 1e308): exp(∞ - ∞) would be
        // NaN, so such keys take the softmax's limit instead, sharing all the weight equally.
        const top = max === Infinity;
        let sum = 0;
        for (let j = 0; j < Tk; j++) {
          weight[j] = !seen[j] ? 0 : top ? Number(weight[j] === Infinity) : Math.exp(weight[j]! - max);
          sum += weight[j]!;
        }
        const row = ((b * H + h) * Tq + i) * Tk;
        for (let j = 0; j < Tk; j++) probs[row + j] = weight[j]! /= sum;
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          for (let j = 0; j < Tk; j++) acc += weight[j]! * v.data[(kvBase + j) * Dv + d]!;
          out[((b * H + h) * Tq + i) * Dv + d] = acc;
        }
      }
    }
  }
  const result: AttentionResult = { out: { shape: [B, H, Tq, Dv], data: out }, probs: { shape: [B, H, Tq, Tk], data: probs } };
  if (scores) result.scores = { shape: [B, H, Tq, Tk], data: scores };
  return result;
}

/** out = probs·v for given probabilities [B, H, Tq, Tk] over v [B, Hkv, Tk, Dv] (a hook replaced the pattern). */
export function attendWith(probs: Tensor, v: Tensor): Tensor {
  const { B, H, Tq, Tk } = expectShape("probs", probs, ["B", "H", "Tq", "Tk"]);
  const { Hkv, Dv } = expectShape("v", v, ["B", "Hkv", "Tk", "Dv"], { B, Tk });
  if (Hkv === 0 || H! % Hkv! !== 0) throw argError("v", `a number of kv heads that divides H=${H}`, Hkv);
  const group = H! / Hkv!;
  const out = new Float32Array(B! * H! * Tq! * Dv!);
  for (let b = 0; b < B!; b++) {
    for (let h = 0; h < H!; h++) {
      const kvBase = (b * Hkv! + Math.floor(h / group)) * Tk!;
      for (let i = 0; i < Tq!; i++) {
        const row = ((b * H! + h) * Tq! + i) * Tk!;
        for (let d = 0; d < Dv!; d++) {
          let acc = 0;
          for (let j = 0; j < Tk!; j++) acc += probs.data[row + j]! * v.data[(kvBase + j) * Dv! + d]!;
          out[((b * H! + h) * Tq! + i) * Dv! + d] = acc;
        }
      }
    }
  }
  return { shape: [B!, H!, Tq!, Dv!], data: out };
}

function decayIndexer(logGammas: readonly number[] | undefined, offset: number, H: number) {
  if (!logGammas) return () => 0;
  if (logGammas.length !== H) throw argError("logGammas", `${H} values (one per query head)`, logGammas.length);
  logGammas.forEach((g, h) => checkNumber(`logGammas[${h}]`, g, -Number.MAX_VALUE, 0, " (ln γ with γ in (0, 1])"));
  checkInteger("offset", offset, 0);
  return (h: number, i: number, j: number) => (offset + i - j) * logGammas[h]!;
}

function maskIndexer(mask: Mask | undefined, B: number, Tq: number, Tk: number) {
  if (!mask) return () => true;
  const s = mask.shape;
  const perBatch = s.length === 3 && s[0] === B;
  const fits = (s.length === 2 || perBatch) && s[s.length - 2] === Tq && s[s.length - 1] === Tk;
  if (!fits || mask.data.length !== (perBatch ? B : 1) * Tq * Tk) {
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
  // -∞ hides a key; +∞ or NaN has no meaning as a bias (the softmax would give NaN), so it is refused.
  const bad = bias.data.findIndex((x) => !(x < Infinity));
  if (bad >= 0) throw argError(`bias[${bad}]`, "a finite number, or -Infinity to hide a key", bias.data[bad]);
  return (b: number, h: number, i: number, j: number) => {
    const plane = batched ? b * H + h : perHead ? h : 0;
    return bias.data[(plane * Tq + i) * Tk + j]!;
  };
}
