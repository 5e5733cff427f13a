// Multi-head (grouped-query) attention with rotary positions, the plain kinds beside MLA (Vaswani et al. 2017;
// Ainslie et al. 2023; Su et al. 2021): their weights and cache here, their forward in src/model/layers.ts
//   q, k, v = x·W_qᵀ, x·W_kᵀ, x·W_vᵀ split into heads of Dh = D / H;  q, k rotated at their absolute positions
//   o = W_o · concat_h softmax(q_h·k_hᵀ · scale + bias) v_h,   scale = mscale² / √Dh (YaRN's factor when extended)
// `decay` adds (i - j)·ln γ_h to the scores (spec/attention.md, "relative"), or scales keys by γ^j ("as-written",
// the material's form, run on the reference attention since no fused kernel has it). The cache holds the rotated
// keys and the values of every head: 2·Hkv·Dh numbers per token, the figure MLA's latent is compared with.

import { decayAttention, retnetGammas } from "../attention/decay.ts";
import { appendTime, mergeHeads, splitHeads } from "../attention/heads.ts";
import { TinyseekError } from "../errors.ts";
import { randn, type Random } from "../random.ts";
import { ropeFrequencies } from "../rope.ts";
import { reshape, tensor, type Tensor } from "../tensor.ts";
import { record, wants, type Trace } from "../trace.ts";
import { yarnOptions } from "../attention/mla.ts";
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

/** Multi-head attention with rotary positions, plain (decay false) or with time decay (spec/attention.md). */
export function multiHeadKind(decay: boolean): AttentionKindImpl {
  return {
    shapes: mhaShapes,
    init: (rng, config) => initFromShapes(mhaShapes(config), rng, config.init_std),
    createCache: (config) => {
      const [Hkv, Dh] = [config.num_key_value_heads, headDim(config)];
      return { kind: "kv", length: 0, keys: tensor([1, Hkv, 0, Dh]), values: tensor([1, Hkv, 0, Dh]) };
    },
    cacheNumbers: (config, T) => T * 2 * config.num_key_value_heads * headDim(config),
    // On the host only the material's form runs (decay_mode "as-written": no fused kernel has it); plain attention
    // and relative decay run on the device (src/model/layers.ts).
    forward(x, w, config, cache, { kernels, trace, prefix }) {
      if (!("kind" in cache) || cache.kind !== "kv") throw new TinyseekError(`${prefix}: expected a key-value cache`);
      if (!decay || config.decay_mode !== "as-written") throw new TinyseekError(`${prefix}: only decay_mode "as-written" runs on the host`);
      const [H, Hkv, Dh] = [config.num_attention_heads, config.num_key_value_heads, headDim(config)];
      const T = x.shape[1]!;
      const start = cache.length;
      const positions = Array.from({ length: T }, (_, i) => start + i);
      const freqs = ropeFrequencies({ dim: Dh, theta: config.rope_theta, yarn: yarnOptions(config) });
      const [q] = splitHeads(kernels.linear(x, w.q_proj!), H, [Dh]);
      const [k] = splitHeads(kernels.linear(x, w.k_proj!), Hkv, [Dh]);
      const [v] = splitHeads(kernels.linear(x, w.v_proj!), Hkv, [Dh]);
      cache.keys = appendTime(cache.keys, kernels.rope(k!, positions, freqs));
      cache.values = appendTime(cache.values, v!);
      cache.length = start + T;
      const result = decayAttention(kernels.rope(q!, positions, freqs), cache.keys, cache.values, { gamma: decayGammas(config), mode: "as-written", offset: start });
      if (wants(trace, `${prefix}.probs`)) recordProbs(trace!, `${prefix}.probs`, result.probs);
      return kernels.linear(mergeHeads(result.out), w.o_proj!);
    },
  };
}


/** Records attention probabilities [1, H, Tq, Tk] as [H, Tq, Tk]. */
export function recordProbs(trace: Trace, name: string, probs: Tensor): void {
  const [, H, Tq, Tk] = probs.shape as [number, number, number, number];
  record(trace, name, reshape(probs, [H, Tq, Tk]));
}
