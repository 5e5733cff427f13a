// Multi-head (grouped-query) attention with rotary positions, the plain kinds beside MLA (Vaswani et al. 2017;
// Ainslie et al. 2023; Su et al. 2021): their weights and cache here, their forward in src/model/layers.ts
//   q, k, v = x·W_qᵀ, x·W_kᵀ, x·W_vᵀ split into heads of Dh = D / H;  q, k rotated at their absolute positions
//   o = W_o · concat_h softmax(q_h·k_hᵀ · scale + bias) v_h,   scale = mscale² / √Dh (YaRN's factor when extended)
// `decay` adds (i - j)·ln γ_h to the scores (spec/attention.md, "relative"), or scales keys by γ^j ("as-written",
// the material's form: the cache holds the scaled keys, src/model/decay-layer.ts, and the scale is 1/√Dh as there).
// The cache holds the rotated keys and the values of every head: 2·Hkv·Dh numbers per token, the figure MLA's latent
// is compared with.

import { retnetGammas } from "../attention/decay.ts";
import { randn, type Random } from "../random.ts";
import type { AttentionKindImpl } from "./attention.ts";
import { headDim, type ModelConfig } from "./config.ts";

const mhaShapes = (c: ModelConfig): Record<string, number[]> => {
  const [D, H, Hkv, Dh] = [c.hidden_size, c.num_attention_heads, c.num_key_value_heads, headDim(c)];
  return { q_proj: [H * Dh, D], k_proj: [Hkv * Dh, D], v_proj: [Hkv * Dh, D], o_proj: [D, H * Dh] };
};

const initFromShapes = (shapes: Record<string, number[]>, rng: Random, std: number) =>
  Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, randn(rng, shape, std)]));

/** The decay of each query head: one gamma, or RetNet's γ_h = 1 - 2^(-5-h). */
export function decayGammas(config: ModelConfig): number[] {
  const H = config.num_attention_heads;
  return config.decay_gamma === "retnet" ? retnetGammas(H) : Array<number>(H).fill(config.decay_gamma);
}

/** Multi-head attention with rotary positions, plain or with time decay (spec/attention.md): the same weights and cache. */
export const multiHeadKind: AttentionKindImpl = {
  shapes: mhaShapes,
  init: (rng, config) => initFromShapes(mhaShapes(config), rng, config.init_std),
  cacheNumbers: (config, T) => T * 2 * config.num_key_value_heads * headDim(config),
};
