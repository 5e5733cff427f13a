// One interface over every attention kind a layer may use (config.attention_kind): its weights (named as the
// checkpoint names them under self_attn.), the size of its cache, and, for the kinds the one forward runs on the
// host (segmented, sparse, decay "as-written"), their state and their forward over one sequence's new tokens
// x [1, T, D] → [1, T, D]. mla, dsa, mha and decay "relative" run on the device: src/model/layers.ts (dsa's indexer
// on the host: src/model/dsa-layer.ts); segmented, sparse and decay "as-written" on the host. The kinds themselves
// live in src/attention/; this file only adapts them to the model.
//   mla        DeepSeek-V2/V3 multi-head latent attention (src/attention/mla.ts); absorbed (default) caches the latent
//   mha        multi-head (grouped-query) attention with rotary positions (./mha.ts)
//   decay      mha with time decay (spec/attention.md; ./mha.ts over src/attention/decay.ts)
//   segmented  segments + overlap window + compressed memory (spec/segmented-attention.md, src/attention/segmented.ts)
//   sparse     NSA: compressed, selected and window branches (spec/sparse-attention.md, src/attention/sparse.ts)
//   dsa        DeepSeek-V3.2's sparse attention: a light indexer picks each query's top index_topk keys, MLA attends
//              only those (src/attention/dsa.ts)
// A kind that can show its attention probabilities records them as `<prefix>.probs` [H, T, Tk] when traced.

import { initDsa, type DsaWeights, type IndexerWeights } from "../attention/dsa.ts";
import { initMla, mlaCacheNumbersPerToken } from "../attention/mla.ts";
import { createSegmentedState, initSegmented, segmentedAttention, segmentedStateSize, type SegmentedState, type SegmentedWeights } from "../attention/segmented.ts";
import { createSparseState, initSparse, sparseAttentionTraced, sparseStateSize, type SparseState, type SparseWeights } from "../attention/sparse.ts";
import { TinyseekError } from "../errors.ts";
import type { Kernels } from "../kernels.ts";
import type { Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { record, type Trace } from "../trace.ts";
import { type AttentionKind, headDim, type ModelConfig } from "./config.ts";
import { multiHeadKind } from "./mha.ts";

/** Plain multi-head attention's cache: rotated keys [1, Hkv, L, Dh] and values [1, Hkv, L, Dh]. */
export interface KvCache {
  readonly kind: "kv";
  length: number;
  keys: Tensor;
  values: Tensor;
}

/** Segmented attention's state: the window's keys and values and the memory, O(S + W + M) (spec/segmented-attention.md). */
export interface SegmentedCache {
  readonly kind: "segmented";
  state: SegmentedState;
}

/** NSA's state: every token's selectable keys, the compressed blocks, the window (spec/sparse-attention.md). */
export interface SparseCache {
  readonly kind: "sparse";
  state: SparseState;
}

/** The state of a layer computed on the host. */
export type HostLayerCache = KvCache | SegmentedCache | SparseCache;

export interface AttentionContext {
  kernels: Kernels;
  trace?: Trace;
  /** Trace name prefix, e.g. "layers.2.attn". */
  prefix: string;
}

export interface AttentionKindImpl {
  /** Weight shapes by checkpoint name (relative to self_attn.), without allocating them: for counting. */
  shapes(config: ModelConfig): Record<string, number[]>;
  init(rng: Random, config: ModelConfig): Record<string, Tensor>;
  /** Host kinds: an empty state. Absent for the kinds whose cache lives on the device (src/model/cache.ts). */
  createCache?(config: ModelConfig): HostLayerCache;
  /** Numbers the cache holds after T tokens (T·per-token for the full caches; bounded for segmented). */
  cacheNumbers(config: ModelConfig, T: number): number;
  /** Host kinds: x [1, T, D], the new tokens at positions cache.length … cache.length + T - 1; appends them to the
   *  state. Absent for the kinds that run on the device. */
  forward?(x: Tensor, weights: Record<string, Tensor>, config: ModelConfig, cache: HostLayerCache, ctx: AttentionContext): Tensor;
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


// ── segmented (spec/segmented-attention.md): its own module does the work; memory slots carry no rotary phase ──

const segmentedConfig = (c: ModelConfig) => ({
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
  createCache: (config) => ({ kind: "segmented", state: createSegmentedState(segmentedConfig(config)) }),
  cacheNumbers: (config, T) => segmentedStateSize(segmentedConfig(config), T).total,
  forward(x, weights, config, cache, { kernels, prefix }) {
    if (!("kind" in cache) || cache.kind !== "segmented") throw new TinyseekError(`${prefix}: expected a segmented-attention state`);
    return segmentedAttention(x, weights as unknown as SegmentedWeights, segmentedConfig(config), cache.state, kernels);
  },
};

// ── sparse (spec/sparse-attention.md, NSA): compressed, selected and window branches, gated ──

const sparseConfig = (c: ModelConfig) => ({
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
  createCache: (config) => ({ kind: "sparse", state: createSparseState(sparseConfig(config)) }),
  cacheNumbers: (config, T) => sparseStateSize(sparseConfig(config), T).total,
  forward(x, weights, config, cache, { kernels, trace, prefix }) {
    if (!("kind" in cache) || cache.kind !== "sparse") throw new TinyseekError(`${prefix}: expected a sparse-attention state`);
    const { out, trace: inside } = sparseAttentionTraced(x, weights as unknown as SparseWeights, sparseConfig(config), cache.state, kernels);
    // Which selection blocks each kv group read per query (-1: fewer exist yet), and the three branches' gates.
    const [T, Hkv, H, n] = [x.shape[1]!, config.num_key_value_heads, config.num_attention_heads, config.sparse_select_count];
    record(trace, `${prefix}.selected`, { shape: [Hkv, T, n], data: inside.selected });
    record(trace, `${prefix}.gates`, { shape: [T, 3 * H], data: inside.gates.data });
    return out;
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
  mha: multiHeadKind(false),
  decay: multiHeadKind(true),
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
