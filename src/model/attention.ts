// One interface over every attention kind a layer may use (config.attention_kind): its weights (named as the
// checkpoint names them under self_attn.), its cache, and its forward over one sequence's new tokens
// x [1, T, D] → [1, T, D]. The kinds themselves live in src/attention/; this file only adapts them to the model.
//   mla        DeepSeek-V2/V3 multi-head latent attention (src/attention/mla.ts); absorbed (default) caches the latent
//   mha        multi-head (grouped-query) attention with rotary positions (./mha.ts)
//   decay      mha with time decay (design section 2; ./mha.ts over src/attention/decay.ts)
//   segmented  segments + overlap window + compressed memory (section 3, src/attention/segmented.ts)
//   sparse     NSA: compressed, selected and window branches (section 4, src/attention/sparse.ts)
// A kind that can show its attention probabilities records them as `<prefix>.probs` [H, T, Tk] when traced.

import { attention as sdpa } from "../attention/attention.ts";
import { checkMlaConfig, createMlaCache, denseCausal, initMla, mla, mlaCacheNumbersPerToken, type MlaAttend, type MlaCache, type MlaConfig, type MlaWeights } from "../attention/mla.ts";
import { createSegmentedState, initSegmented, segmentedAttention, segmentedStateSize, type SegmentedState, type SegmentedWeights } from "../attention/segmented.ts";
import { createSparseState, initSparse, sparseAttentionTraced, sparseStateSize, type SparseState, type SparseWeights } from "../attention/sparse.ts";
import { TinyseekError } from "../errors.ts";
import { type Kernels } from "../kernels.ts";
import { causal } from "../masks.ts";
import { type Random } from "../random.ts";
import { type Tensor } from "../tensor.ts";
import { record, wants, type Trace } from "../trace.ts";
import { type AttentionKind, headDim, type ModelConfig } from "./config.ts";
import { plainKind, recordProbs } from "./mha.ts";

/** Plain multi-head attention's cache: rotated keys [1, Hkv, L, Dh] and values [1, Hkv, L, Dh]. */
export interface KvCache {
  readonly kind: "kv";
  length: number;
  keys: Tensor;
  values: Tensor;
}

/** Segmented attention's state: the window's keys and values and the memory, O(S + W + M) (section 3). */
export interface SegmentedCache {
  readonly kind: "segmented";
  state: SegmentedState;
}

/** NSA's state: every token's selectable keys, the compressed blocks, the window (section 4). */
export interface SparseCache {
  readonly kind: "sparse";
  state: SparseState;
}

export type LayerCache = MlaCache | KvCache | SegmentedCache | SparseCache;

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
  createCache(config: ModelConfig): LayerCache;
  /** Numbers the cache holds after T tokens (T·per-token for the full caches; bounded for segmented). */
  cacheNumbers(config: ModelConfig, T: number): number;
  /** x [1, T, D]: the new tokens, at positions cache.length … cache.length + T - 1; appends them to the cache. */
  forward(x: Tensor, weights: Record<string, Tensor>, config: ModelConfig, cache: LayerCache, ctx: AttentionContext): Tensor;
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

/**
 * checkMlaConfig(config), made once per model config (checking spreads the whole config, at every layer of every
 * step otherwise) and made again if one of the fields MLA reads has changed since: configs are plain objects.
 */
export function checkedMlaConfig(config: ModelConfig): MlaConfig {
  const s = config.rope_scaling;
  const fields = [
    config.hidden_size, config.num_attention_heads, config.q_lora_rank, config.kv_lora_rank, config.qk_nope_head_dim,
    config.qk_rope_head_dim, config.v_head_dim, config.max_position_embeddings, config.rope_theta, config.rms_norm_eps,
    s, s?.type, s?.factor, s?.original_max_position_embeddings, s?.beta_fast, s?.beta_slow, s?.mscale, s?.mscale_all_dim,
  ];
  const kept = checkedMlaConfigs.get(config);
  if (kept && kept.fields.every((v, i) => v === fields[i])) return kept.checked;
  const checked = checkMlaConfig(config);
  checkedMlaConfigs.set(config, { fields, checked });
  return checked;
}

const checkedMlaConfigs = new WeakMap<ModelConfig, { fields: unknown[]; checked: MlaConfig }>();

const mlaKind: AttentionKindImpl = {
  shapes: mlaShapes,
  init: (rng, config) => initMla(rng, config) as unknown as Record<string, Tensor>,
  createCache: (config) => createMlaCache(config, config.mla_mode),
  cacheNumbers: (config, T) => T * mlaCacheNumbersPerToken(config, config.mla_mode),
  forward(x, weights, config, cache, { kernels, trace, prefix }) {
    if ("kind" in cache) throw new TinyseekError(`${prefix}: expected an MLA cache, got a ${cache.kind} cache`);
    // The probabilities MLA attends with, recorded on the way through when the trace asks for them.
    const attend: MlaAttend = (q, k, v, scale, offset, kernels) => {
      if (wants(trace, `${prefix}.probs`)) recordProbs(trace!, `${prefix}.probs`, sdpa(q, k, v, { mask: causal(q.shape[2]!, k.shape[2]!, offset), scale }).probs);
      return denseCausal(q, k, v, scale, offset, kernels);
    };
    return mla(x, weights as unknown as MlaWeights, checkedMlaConfig(config), cache, kernels, config.mla_mode, attend);
  },
};


// ── segmented (section 3): its own module does the work; memory slots carry no rotary phase ──

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

// ── sparse (section 4, NSA): compressed, selected and window branches, gated ──

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

const KINDS: Partial<Record<AttentionKind, AttentionKindImpl>> = {
  mla: mlaKind,
  mha: plainKind(false),
  decay: plainKind(true),
  segmented: segmentedKind,
  sparse: sparseKind,
};

/** The implementation of an attention kind, or a clear error when this build has none. */
export function attentionKind(kind: AttentionKind): AttentionKindImpl {
  const impl = KINDS[kind];
  if (!impl) throw new TinyseekError(`attention_kind: "${kind}" is not available in this build (have: ${Object.keys(KINDS).join(", ")})`);
  return impl;
}
