// Cross-modal attention between text tokens T [Nt, dt] and vision tokens V [Nv, dv] (spec/crossmodal.md). The source
// material gives two projections and two score products; we complete them into gated bidirectional attention:
//   S_tv = text_proj(T)·Vᵀ / sqrt(dv)    [Nt, Nv]      A_tv = softmax over vision tokens (image mask)
//   S_vt = vision_proj(V)·Tᵀ / sqrt(dt)  [Nv, Nt]      A_vt = softmax over text tokens (padding mask)
//   T'   = T + tanh(g_t)·A_tv·vision_proj(V)           V'   = V + tanh(g_v)·A_vt·text_proj(T)
// The gates start at 0 (Flamingo, Alayrac et al. 2022), so a fresh block is the identity. With H heads, every
// projected and raw feature axis is cut into H equal parts and each head divides by sqrt(its part) instead.
// A token with no visible partner (padding, a sample without an image) attends to nothing and keeps its input.
//
// `fusion: "early"` is the other design, DeepSeek-VL's: no cross-attention; vision tokens pass through an MLP
// projector (Linear, GELU, Linear) into the text embedding space and replace each image marker in the sequence.

import { argError, checkInteger, checkOneOf } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { gelu } from "../ops.ts";
import { type Random, randn } from "../random.ts";
import { concatRows, expectShape, reshape, sliceRows, tensor, type Tensor } from "../tensor.ts";
import { mergeHeads, splitHeads } from "./heads.ts";

export const FUSIONS = ["cross", "early"] as const;

export interface CrossModalConfig {
  text_dim: number; // dt
  vision_dim: number; // dv
  num_heads?: number; // default 1: the material's single-head products
  fusion?: (typeof FUSIONS)[number]; // default "cross"
}

/** The material's names: text_proj = Linear(text_dim, vision_dim), vision_proj = Linear(vision_dim, text_dim). */
export interface CrossAttentionWeights {
  text_proj: Tensor; // [dv, dt]
  text_proj_bias: Tensor; // [dv]
  vision_proj: Tensor; // [dt, dv]
  vision_proj_bias: Tensor; // [dt]
  gate_text: Tensor; // [1], g_t
  gate_vision: Tensor; // [1], g_v
}

/** DeepSeek-VL's MLP projector, vision_dim → text_dim → text_dim. */
export interface EarlyFusionWeights {
  projector_fc1: Tensor; // [dt, dv]
  projector_fc1_bias: Tensor; // [dt]
  projector_fc2: Tensor; // [dt, dt]
  projector_fc2_bias: Tensor; // [dt]
}

export function checkCrossModalConfig(config: CrossModalConfig): Required<CrossModalConfig> {
  if (typeof config !== "object" || config === null) throw argError("config", "a cross-modal config object", config);
  checkInteger("config.text_dim", config.text_dim, 1);
  checkInteger("config.vision_dim", config.vision_dim, 1);
  const H = config.num_heads ?? 1;
  checkInteger("config.num_heads", H, 1);
  if (config.text_dim % H !== 0) throw argError("config.num_heads", `a divisor of text_dim ${config.text_dim}`, H);
  if (config.vision_dim % H !== 0) throw argError("config.num_heads", `a divisor of vision_dim ${config.vision_dim}`, H);
  const fusion = config.fusion ?? "cross";
  checkOneOf("config.fusion", fusion, FUSIONS);
  return { text_dim: config.text_dim, vision_dim: config.vision_dim, num_heads: H, fusion };
}

/** Seeded weights for the config's fusion: projections N(0, 0.02²), biases 0, gates 0. */
export function initCrossModal(rng: Random, config: CrossModalConfig): CrossAttentionWeights | EarlyFusionWeights {
  const { text_dim: dt, vision_dim: dv, fusion } = checkCrossModalConfig(config);
  if (fusion === "early") {
    return {
      projector_fc1: randn(rng, [dt, dv], 0.02), projector_fc1_bias: tensor([dt]),
      projector_fc2: randn(rng, [dt, dt], 0.02), projector_fc2_bias: tensor([dt]),
    };
  }
  return {
    text_proj: randn(rng, [dv, dt], 0.02), text_proj_bias: tensor([dv]),
    vision_proj: randn(rng, [dt, dv], 0.02), vision_proj_bias: tensor([dt]),
    gate_text: tensor([1]), gate_vision: tensor([1]),
  };
}

export interface CrossModalMasks {
  /** [B·Nt], 1 = a real text token, 0 = padding. Absent: all real. */
  text?: Uint8Array;
  /** [B·Nv], 1 = a real vision token, 0 = none (a sample without an image, fewer patches). Absent: all real. */
  vision?: Uint8Array;
}

export interface CrossModalResult {
  text: Tensor; // T', shape of the text input
  vision: Tensor; // V', shape of the vision input
  textProj: Tensor; // text_proj(T) [B, Nt, dv]
  visionProj: Tensor; // vision_proj(V) [B, Nv, dt]
  scoresTv: Tensor; // S_tv [B, H, Nt, Nv], before masking
  scoresVt: Tensor; // S_vt [B, H, Nv, Nt]
  probsTv: Tensor; // A_tv [B, H, Nt, Nv]
  probsVt: Tensor; // A_vt [B, H, Nv, Nt]
}

/** Gated bidirectional cross-attention: text [B, Nt, dt] (or [Nt, dt]) and vision [B, Nv, dv] (or [Nv, dv]). */
export function crossModalAttention(
  text: Tensor, vision: Tensor, weights: CrossAttentionWeights, config: CrossModalConfig, masks: CrossModalMasks = {},
  kernels: Kernels = reference,
): CrossModalResult {
  const c = checkCrossModalConfig(config);
  if (c.fusion !== "cross") throw argError("config.fusion", '"cross" for crossModalAttention', c.fusion);
  const [dt, dv, H] = [c.text_dim, c.vision_dim, c.num_heads];
  const flat = text?.shape?.length === 2;
  const T3 = flat ? reshape(text, [1, ...text.shape]) : text;
  const V3 = vision?.shape?.length === 2 ? reshape(vision, [1, ...vision.shape]) : vision;
  const { B, Nt } = expectShape("text", T3, ["B", "Nt", dt]);
  const { Nv } = expectShape("vision", V3, [B, "Nv", dv]);
  checkCrossWeights(weights, c);
  const textMask = checkMask("masks.text", masks.text, B * Nt);
  const visionMask = checkMask("masks.vision", masks.vision, B * Nv);

  const Pt = addBias(kernels.linear(T3, weights.text_proj), weights.text_proj_bias); // text_proj(T) [B, Nt, dv]
  const Pv = addBias(kernels.linear(V3, weights.vision_proj), weights.vision_proj_bias); // vision_proj(V) [B, Nv, dt]
  const heads = (x: Tensor) => splitHeads(x, H, [x.shape[2]! / H])[0]!;
  const [PtH, PvH, TH, VH] = [heads(Pt), heads(Pv), heads(T3), heads(V3)];

  const scoresTv = scores(PtH, VH, Math.sqrt(dv / H), kernels);
  const scoresVt = scores(PvH, TH, Math.sqrt(dt / H), kernels);
  const probsTv = kernels.softmax(scoresTv, visibility(textMask, visionMask, B, H, Nt, Nv));
  const probsVt = kernels.softmax(scoresVt, visibility(visionMask, textMask, B, H, Nv, Nt));
  const textOut = gatedResidual(T3, mergeHeads(kernels.bmm(probsTv, PvH)), weights.gate_text);
  const visionOut = gatedResidual(V3, mergeHeads(kernels.bmm(probsVt, PtH)), weights.gate_vision);
  return {
    text: reshape(textOut, text.shape),
    vision: reshape(visionOut, vision.shape),
    textProj: Pt, visionProj: Pv, scoresTv, scoresVt, probsTv, probsVt,
  };
}

/**
 * Early fusion: text embeddings [T, dt] with image markers at `markers` (ascending positions); marker m is replaced
 * by the projected tokens of images[m] [N_m, dv]. Returns the fused sequence and where each image landed.
 */
export function earlyFusion(
  textEmbeds: Tensor, markers: readonly number[], images: readonly Tensor[], weights: EarlyFusionWeights,
  config: CrossModalConfig, kernels: Kernels = reference,
): { sequence: Tensor; spans: [number, number][] } {
  const c = checkCrossModalConfig(config);
  if (c.fusion !== "early") throw argError("config.fusion", '"early" for earlyFusion', c.fusion);
  const { T } = expectShape("textEmbeds", textEmbeds, ["T", c.text_dim]);
  if (images.length !== markers.length) throw argError("images", `one per marker (${markers.length})`, images.length);
  markers.forEach((m, i) => checkInteger(`markers[${i}]`, m, i === 0 ? 0 : markers[i - 1]! + 1, T - 1));
  checkEarlyWeights(weights, c);

  const parts: Tensor[] = [];
  const spans: [number, number][] = [];
  let [from, length] = [0, 0];
  markers.forEach((m, i) => {
    expectShape(`images[${i}]`, images[i], ["N", c.vision_dim]);
    const hidden = gelu(addBias(kernels.linear(images[i]!, weights.projector_fc1), weights.projector_fc1_bias));
    const tokens = addBias(kernels.linear(hidden, weights.projector_fc2), weights.projector_fc2_bias);
    parts.push(sliceRows(textEmbeds, from, m), tokens);
    length += m - from;
    spans.push([length, length + tokens.shape[0]!]);
    length += tokens.shape[0]!;
    from = m + 1;
  });
  parts.push(sliceRows(textEmbeds, from, T));
  return { sequence: concatRows(parts), spans };
}

/** q [B, H, Tq, d] · k [B, H, Tk, d]ᵀ / divisor → [B, H, Tq, Tk]: the products the material writes. */
function scores(q: Tensor, k: Tensor, divisor: number, kernels: Kernels): Tensor {
  const [B, H, Tq, d] = q.shape as [number, number, number, number];
  const Tk = k.shape[2]!;
  const out = new Float32Array(B * H * Tq * Tk);
  for (let plane = 0; plane < B * H; plane++) {
    const qRows = { shape: [Tq, d], data: q.data.subarray(plane * Tq * d, (plane + 1) * Tq * d) };
    const kRows = { shape: [Tk, d], data: k.data.subarray(plane * Tk * d, (plane + 1) * Tk * d) };
    out.set(kernels.linear(qRows, kRows).data, plane * Tq * Tk);
  }
  for (let i = 0; i < out.length; i++) out[i]! /= divisor;
  return { shape: [B, H, Tq, Tk], data: out };
}

/** visible[b, h, i, j] = query i is real and key j is real. */
function visibility(queries: Uint8Array, keys: Uint8Array, B: number, H: number, Tq: number, Tk: number): Uint8Array {
  const out = new Uint8Array(B * H * Tq * Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Tq; i++) {
        for (let j = 0; j < Tk; j++) out[((b * H + h) * Tq + i) * Tk + j] = queries[b * Tq + i]! & keys[b * Tk + j]!;
      }
    }
  }
  return out;
}

/** x + tanh(gate)·update. */
function gatedResidual(x: Tensor, update: Tensor, gate: Tensor): Tensor {
  const g = Math.tanh(gate.data[0]!);
  return { shape: [...x.shape], data: x.data.map((v, i) => v + g * update.data[i]!) };
}

/** x [..., n] + bias [n]: the bias of a kernels.linear output (its sum is rounded to float32 before the add). */
function addBias(x: Tensor, bias: Tensor): Tensor {
  const n = bias.shape[0]!;
  return { shape: [...x.shape], data: x.data.map((v, i) => v + bias.data[i % n]!) };
}

function checkMask(argument: string, mask: Uint8Array | undefined, n: number): Uint8Array {
  if (mask === undefined) return new Uint8Array(n).fill(1);
  if (!(mask instanceof Uint8Array) || mask.length !== n) throw argError(argument, `${n} flags (0 or 1)`, mask?.length);
  if (mask.some((v) => v > 1)) throw argError(argument, "flags of 0 or 1", [...new Set(mask)].join(", "));
  return mask;
}

function checkCrossWeights(weights: CrossAttentionWeights, c: Required<CrossModalConfig>): void {
  const w = weights as unknown as Record<string, Tensor>;
  if (typeof w !== "object" || w === null) throw argError("weights", "the cross-attention weights", w);
  const [dt, dv] = [c.text_dim, c.vision_dim];
  expectShape("weights.text_proj", w.text_proj, [dv, dt]);
  expectShape("weights.text_proj_bias", w.text_proj_bias, [dv]);
  expectShape("weights.vision_proj", w.vision_proj, [dt, dv]);
  expectShape("weights.vision_proj_bias", w.vision_proj_bias, [dt]);
  expectShape("weights.gate_text", w.gate_text, [1]);
  expectShape("weights.gate_vision", w.gate_vision, [1]);
}

function checkEarlyWeights(weights: EarlyFusionWeights, c: Required<CrossModalConfig>): void {
  const w = weights as unknown as Record<string, Tensor>;
  if (typeof w !== "object" || w === null) throw argError("weights", "the projector weights", w);
  const [dt, dv] = [c.text_dim, c.vision_dim];
  expectShape("weights.projector_fc1", w.projector_fc1, [dt, dv]);
  expectShape("weights.projector_fc1_bias", w.projector_fc1_bias, [dt]);
  expectShape("weights.projector_fc2", w.projector_fc2, [dt, dt]);
  expectShape("weights.projector_fc2_bias", w.projector_fc2_bias, [dt]);
}
