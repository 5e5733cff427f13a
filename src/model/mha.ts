// Multi-head (grouped-query) attention with rotary positions, the plain kinds beside MLA (Vaswani et al. 2017;
// Ainslie et al. 2023; Su et al. 2021):
//   q, k, v = x·W_qᵀ, x·W_kᵀ, x·W_vᵀ split into heads of Dh = D / H;  q, k rotated at their absolute positions
//   o = W_o · concat_h softmax(q_h·k_hᵀ · scale + bias) v_h,   scale = mscale² / √Dh (YaRN's factor when extended)
// `decay` adds (i - j)·ln γ_h to the scores (design section 2, "relative"), or scales keys by γ^j ("as-written",
// the material's form, run on the reference attention since no fused kernel has it). The cache holds the rotated
// keys and the values of every head: 2·Hkv·Dh numbers per token, the figure MLA's latent is compared with.

import { attention as sdpa } from "../attention/attention.ts";
import { decayAttention, retnetGammas } from "../attention/decay.ts";
import { appendTime, mergeHeads, splitHeads } from "../attention/heads.ts";
import { TinyseekError } from "../errors.ts";
import { causal } from "../masks.ts";
import { randn, type Random } from "../random.ts";
import { ropeFrequencies, yarnSoftmaxFactor } from "../rope.ts";
import { reshape, tensor, type Tensor } from "../tensor.ts";
import { record, wants, type Trace } from "../trace.ts";
import { mlaYarn } from "../attention/mla.ts";
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

/** Multi-head attention with rotary positions, plain (decay false) or with time decay (section 2). */
export function plainKind(decay: boolean): AttentionKindImpl {
  return {
    shapes: mhaShapes,
    init: (rng, config) => initFromShapes(mhaShapes(config), rng, config.init_std),
    createCache: (config) => {
      const [Hkv, Dh] = [config.num_key_value_heads, headDim(config)];
      return { kind: "kv", length: 0, keys: tensor([1, Hkv, 0, Dh]), values: tensor([1, Hkv, 0, Dh]) };
    },
    cacheNumbers: (config, T) => T * 2 * config.num_key_value_heads * headDim(config),
    forward(x, w, config, cache, { kernels, trace, prefix }) {
      if (!("kind" in cache) || cache.kind !== "kv") throw new TinyseekError(`${prefix}: expected a key-value cache`);
      const [H, Hkv, Dh] = [config.num_attention_heads, config.num_key_value_heads, headDim(config)];
      const T = x.shape[1]!;
      const start = cache.length;
      const positions = Array.from({ length: T }, (_, i) => start + i);
      const yarn = mlaYarn(config);
      const freqs = ropeFrequencies({ dim: Dh, theta: config.rope_theta, yarn });
      const scale = yarnSoftmaxFactor(yarn) / Math.sqrt(Dh);
      const [q] = splitHeads(kernels.linear(x, w.q_proj!), H, [Dh]);
      const [k] = splitHeads(kernels.linear(x, w.k_proj!), Hkv, [Dh]);
      const [v] = splitHeads(kernels.linear(x, w.v_proj!), Hkv, [Dh]);
      cache.keys = appendTime(cache.keys, kernels.rope(k!, positions, freqs)); // in place with one kv head
      cache.values = appendTime(cache.values, v!);
      cache.length = start + T;
      const qr = kernels.rope(q!, positions, freqs);
      const mask = causal(T, cache.length, start);
      let heads: Tensor;
      if (decay && config.decay_mode === "as-written") {
        // The material's form has no fused kernel: it runs on the reference attention (design section 2).
        const result = decayAttention(qr, cache.keys, cache.values, { gamma: decayGammas(config), mode: "as-written", offset: start });
        if (wants(trace, `${prefix}.probs`)) recordProbs(trace!, `${prefix}.probs`, result.probs);
        heads = result.out;
      } else {
        const logGammas = decay ? decayGammas(config).map(Math.log) : undefined;
        if (wants(trace, `${prefix}.probs`)) {
          recordProbs(trace!, `${prefix}.probs`, sdpa(qr, cache.keys, cache.values, { mask, logGammas, offset: start, scale }).probs);
        }
        heads = kernels.attention(qr, cache.keys, cache.values, { mask: { causal: true, offset: start }, logGammas, scale });
      }
      return kernels.linear(mergeHeads(heads), w.o_proj!);
    },
  };
}


/** Records attention probabilities [1, H, Tq, Tk] as [H, Tq, Tk]. */
export function recordProbs(trace: Trace, name: string, probs: Tensor): void {
  const [, H, Tq, Tk] = probs.shape as [number, number, number, number];
  record(trace, name, reshape(probs, [H, Tq, Tk]));
}
