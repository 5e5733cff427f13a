// One interface over every attention kind a layer may use (config.attention_kind): its weights (named as the
// checkpoint names them under self_attn.) and the size of its cache. Every kind runs on the device:
// src/model/layers.ts (dsa's indexer and top-k: src/model/dsa-layer.ts; as-written decay's key scaling:
// src/model/decay-layer.ts; sparse's compressed branch and gates: src/model/sparse-layer.ts; segmented's window and
// memory: src/model/segmented-layer.ts). The kinds themselves live in src/attention/; this file only adapts them to
// the model.
//   mla        DeepSeek-V2/V3 multi-head latent attention (src/attention/mla.ts); absorbed (default) caches the latent
//   mha        multi-head (grouped-query) attention with rotary positions (./mha.ts)
//   decay      mha with time decay (spec/attention.md, src/attention/decay.ts; ./mha.ts, as written ./decay-layer.ts)
//   segmented  segments + overlap window + compressed memory (spec/segmented-attention.md, src/attention/segmented.ts)
//   sparse     NSA: compressed, selected and window branches (spec/sparse-attention.md, src/attention/sparse.ts)
//   dsa        DeepSeek-V3.2's sparse attention: a light indexer picks each query's top index_topk keys, MLA attends
//              only those (src/attention/dsa.ts)

import { initDsa, type DsaWeights, type IndexerWeights } from "../attention/dsa.ts";
import { initMla, mlaCacheNumbersPerToken } from "../attention/mla.ts";
import { initSegmented, segmentedStateSize } from "../attention/segmented.ts";
import { initSparse, resolveSparseConfig, type SparseConfig } from "../attention/sparse.ts";
import { compressedBlockCount } from "../attention/sparse-select.ts";
import { TinyseekError } from "../errors.ts";
import type { Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { type AttentionKind, headDim, type ModelConfig } from "./config.ts";
import { multiHeadKind } from "./mha.ts";

export interface AttentionKindImpl {
  /** Weight shapes by checkpoint name (relative to self_attn.), without allocating them: for counting. */
  shapes(config: ModelConfig): Record<string, number[]>;
  init(rng: Random, config: ModelConfig): Record<string, Tensor>;
  /** Numbers the cache holds after T tokens (T·per-token for the full caches; bounded for segmented). */
  cacheNumbers(config: ModelConfig, T: number): number;
}

// ── MLA ──

const mlaShapes = (c: ModelConfig): Record<string, number[]> => {
  const [D, H, dq] = [c.hidden_size, c.num_attention_heads, c.qk_nope_head_dim + c.qk_rope_head_dim];
  const query: Record<string, number[]> = c.q_lora_rank === 0
    ? { q_proj: [H * dq, D] }
    : { q_a_proj: [c.q_lora_rank, D], q_a_layernorm: [c.q_lora_rank], q_b_proj: [H * dq, c.q_lora_rank] };
  return {
    ...query,
    kv_a_proj_with_mqa: [c.kv_lora_rank + c.qk_rope_head_dim, D],
    kv_a_layernorm: [c.kv_lora_rank],
    kv_b_proj: [H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank],
    o_proj: [D, H * c.v_head_dim],
  };
};

const mlaKind: AttentionKindImpl = {
  shapes: mlaShapes,
  init: (rng, config) => initMla(rng, config) as unknown as Record<string, Tensor>,
  cacheNumbers: (config, T) => T * mlaCacheNumbersPerToken(config, config.mla_mode),
};


// ── segmented (spec/segmented-attention.md): run on the device by src/model/segmented-layer.ts ──

/** The model config's segmented fields as src/attention/segmented.ts reads them; the model embeds positions with sines. */
export const segmentedConfig = (c: ModelConfig) => ({
  hidden_size: c.hidden_size, num_attention_heads: c.num_attention_heads, num_key_value_heads: c.num_key_value_heads, segment_size: c.segment_size,
  segment_overlap: c.segment_overlap, memory_slots: c.memory_slots, rope_theta: c.rope_theta, absolute_position: "sinusoidal" as const,
});

const segmentedKind: AttentionKindImpl = {
  shapes: (c) => {
    const [D, kv] = [c.hidden_size, c.num_key_value_heads * headDim(c)];
    const memory: Record<string, number[]> = c.memory_slots > 0 ? { memory: [c.memory_slots, D], memory_queries: [c.memory_slots, D] } : {};
    return { q_proj: [D, D], k_proj: [kv, D], v_proj: [kv, D], o_proj: [D, D], ...memory };
  },
  init: (rng, config) => initSegmented(rng, segmentedConfig(config), config.init_std) as unknown as Record<string, Tensor>,
  cacheNumbers: (config, T) => segmentedStateSize(segmentedConfig(config), T).total,
};

// ── sparse (spec/sparse-attention.md, NSA): compressed, selected and window branches, gated ──

/** The model config's NSA fields as src/attention/sparse.ts reads them (separate projections per branch). */
export const sparseConfig = (c: ModelConfig): SparseConfig => ({
  hidden_size: c.hidden_size, num_attention_heads: c.num_attention_heads, num_key_value_heads: c.num_key_value_heads,
  sparse_block: c.sparse_block, sparse_stride: c.sparse_stride, sparse_select_block: c.sparse_select_block,
  sparse_select_count: c.sparse_select_count, sparse_window: c.sparse_window, rope_theta: c.rope_theta,
});

const sparseKind: AttentionKindImpl = {
  shapes: (c) => {
    const [D, H, Hkv, Dh, l] = [c.hidden_size, c.num_attention_heads, c.num_key_value_heads, headDim(c), c.sparse_block];
    const kv = [Hkv * Dh, D];
    return {
      q_proj: [H * Dh, D], k_cmp_proj: kv, v_cmp_proj: kv, k_slc_proj: kv, v_slc_proj: kv, k_win_proj: kv, v_win_proj: kv,
      compress_k: [Dh, l * Dh], compress_k_pos: [l, Dh], compress_v: [Dh, l * Dh], compress_v_pos: [l, Dh],
      gate_proj: [3 * H, D], o_proj: [D, H * Dh],
    };
  },
  init: (rng, config) => initSparse(rng, sparseConfig(config), config.init_std) as unknown as Record<string, Tensor>,
  // What the one forward's cache holds (sparse-layer.ts): the selected branch's keys and values and the compressed
  // branch's raw ones of every position, a compressed pair per finished block, and the window's ring of w. NSA
  // itself needs less (sparseStateSize: the raw pairs of the pending positions only, w - 1 window pairs).
  cacheNumbers: (config, T) => {
    const { Hkv, Dh, blocks } = resolveSparseConfig(sparseConfig(config));
    return T === 0 ? 0 : 2 * Hkv * Dh * (2 * T + compressedBlockCount(T - 1, blocks) + blocks.window);
  },
};

// ── dsa (DeepSeek-V3.2): MLA's weights plus the indexer's, under self_attn.indexer. (checkpoint names) ──

/** The indexer's weights by the name the model keeps them under (relative to self_attn.), in checkpoint order.
 *  k_norm_bias is the LayerNorm's bias: indexer.k_norm.bias in the checkpoint (params.ts attentionWeightName). */
const INDEXER_NAMES = ["wq_b", "wk", "k_norm", "k_norm_bias", "weights_proj"] as const satisfies readonly (keyof IndexerWeights)[];

const dsaKind: AttentionKindImpl = {
  shapes: (c) => {
    const [D, HI, dI] = [c.hidden_size, c.index_n_heads, c.index_head_dim];
    const indexer: Record<(typeof INDEXER_NAMES)[number], number[]> = {
      wq_b: [HI * dI, c.q_lora_rank === 0 ? D : c.q_lora_rank], wk: [dI, D], k_norm: [dI], k_norm_bias: [dI], weights_proj: [HI, D],
    };
    return { ...mlaShapes(c), ...Object.fromEntries(INDEXER_NAMES.map((name) => [`indexer.${name}`, indexer[name]])) };
  },
  init: (rng, config) => {
    const { indexer, ...attention } = initDsa(rng, config);
    return { ...(attention as unknown as Record<string, Tensor>), ...Object.fromEntries(INDEXER_NAMES.map((name) => [`indexer.${name}`, indexer[name]])) };
  },
  cacheNumbers: (config, T) => T * (mlaCacheNumbersPerToken(config, config.mla_mode) + config.index_head_dim),
};

/** The model's flat self_attn record (indexer.wq_b, …) as src/attention/dsa.ts's weights ({ …, indexer: { wq_b, … } }). */
export function dsaWeights(weights: Record<string, Tensor>): DsaWeights {
  const attention: Record<string, unknown> = {};
  const indexer: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(weights)) {
    if (name.startsWith("indexer.")) indexer[name.slice("indexer.".length)] = t;
    else attention[name] = t;
  }
  return { ...attention, indexer } as unknown as DsaWeights;
}

const KINDS: Partial<Record<AttentionKind, AttentionKindImpl>> = {
  mla: mlaKind,
  mha: multiHeadKind,
  decay: multiHeadKind,
  segmented: segmentedKind,
  sparse: sparseKind,
  dsa: dsaKind,
};

/** The implementation of an attention kind, or a clear error when this build has none. */
export function attentionKind(kind: AttentionKind): AttentionKindImpl {
  const impl = KINDS[kind];
  if (!impl) throw new TinyseekError(`attention_kind: "${kind}" is not available in this build (have: ${Object.keys(KINDS).join(", ")})`);
  return impl;
}
