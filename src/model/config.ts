// The model's configuration: a JSON object with DeepSeek-V3's config.json field names wherever DeepSeek has one
// (HF `DeepseekV3Config`), so a reader can map tinyseek onto the real model line by line. Keys DeepSeek does not
// have are tinyseek's extensions, grouped at the end of the interface and documented in spec/model.md.
// `validateConfig` reports every bad field with its reason at once, not just the first.

import { excerpt, TinyseekError } from "../errors.ts";
import { moeConfig, type MoeConfig } from "../moe/layer.ts";

export const ATTENTION_KINDS = ["mla", "mha", "decay", "segmented", "sparse", "dsa"] as const;
export type AttentionKind = (typeof ATTENTION_KINDS)[number];
export const TOPK_METHODS = ["greedy", "group_limited_greedy", "noaux_tc"] as const;
export const SCORING_FUNCS = ["softmax", "sigmoid"] as const;
export const DROP_POLICIES = ["rank-position", "rank-bpr", "probs"] as const;

export interface RopeScaling {
  type: "yarn";
  factor: number;
  original_max_position_embeddings: number;
  beta_fast?: number; // V3: 32
  beta_slow?: number; // V3: 1
  mscale?: number; // V3: 1.0
  mscale_all_dim?: number; // V3: 1.0
}

export interface ModelConfig {
  // ── DeepSeek-V3 config.json fields ──
  vocab_size: number;
  hidden_size: number;
  /** The dense layers' SwiGLU width. */
  intermediate_size: number;
  /** One routed (and shared) expert's SwiGLU width. */
  moe_intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  /** Used by the plain attention kinds (mha, decay, segmented, sparse); MLA (and DSA, MLA over selected keys) has
   *  one latent for all heads. */
  num_key_value_heads: number;
  n_routed_experts: number;
  n_shared_experts: number;
  num_experts_per_tok: number;
  routed_scaling_factor: number;
  /** 0 (V2-Lite's null): queries projected directly, no low-rank path. */
  q_lora_rank: number;
  kv_lora_rank: number;
  qk_nope_head_dim: number;
  qk_rope_head_dim: number;
  v_head_dim: number;
  /** "noaux_tc" (V3) adds a per-expert bias to the selection scores: gate.e_score_correction_bias. */
  topk_method: (typeof TOPK_METHODS)[number];
  n_group: number;
  topk_group: number;
  scoring_func: (typeof SCORING_FUNCS)[number];
  norm_topk_prob: boolean;
  /** The first k layers are dense, the rest MoE (V3: 3). */
  first_k_dense_replace: number;
  max_position_embeddings: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  bos_token_id: number;
  eos_token_id: number;
  /** Multi-token-prediction layers: read for fidelity, neither run nor counted. */
  num_nextn_predict_layers: number;

  // ── DeepSeek-V3.2 config.json fields: the DSA indexer (attention_kind "dsa", src/attention/dsa.ts) ──
  /** The indexer's heads H_I (V3.2: 64). */
  index_n_heads: number;
  /** The indexer's head size d_I, its first qk_rope_head_dim features rotated (V3.2: 128). */
  index_head_dim: number;
  /** Keys each query attends: the indexer's top k (V3.2: 2048). */
  index_topk: number;

  // ── tinyseek extensions (not DeepSeek fields) ──
  /** One kind for every layer, or one per layer. */
  attention_kind: AttentionKind | AttentionKind[];
  /** MLA's cache (and DSA's, which is MLA's): "absorb" keeps the latent and rotary key (the point of MLA), "naive"
   *  full per-head keys and values. */
  mla_mode: "absorb" | "naive";
  /** MoE capacity factor (spec/moe.md); null = dropless, as DeepSeek-V3 itself. */
  capacity_factor: number | null;
  drop_policy: (typeof DROP_POLICIES)[number];
  /** CALM early exit (spec/model.md): exit when top-1 minus top-2 probability reaches it; null = full depth. */
  exit_threshold: number | null;
  /** Never exit before this many layers. */
  exit_min_layers: number;
  /** decay attention (spec/attention.md): one gamma, or "retnet" for γ_h = 1 - 2^(-5-h). */
  decay_gamma: number | "retnet";
  decay_mode: "relative" | "as-written";
  /** segmented attention (spec/segmented-attention.md). */
  segment_size: number;
  segment_overlap: number;
  memory_slots: number;
  /** NSA sparse attention (spec/sparse-attention.md): compression block l, stride d, selection block l', blocks n, window w. */
  sparse_block: number;
  sparse_stride: number;
  sparse_select_block: number;
  sparse_select_count: number;
  sparse_window: number;
  /** Seed of the weights' initialisation. */
  init_seed: number;
  init_std: number;
}

/** The attention kind of layer `layer`. */
export function layerKind(config: ModelConfig, layer: number): AttentionKind {
  const kind = config.attention_kind;
  return Array.isArray(kind) ? kind[layer]! : kind;
}

/** Whether layer `layer` is a MoE layer (dense for the first first_k_dense_replace layers). */
export const isMoeLayer = (config: ModelConfig, layer: number): boolean =>
  config.n_routed_experts > 0 && layer >= config.first_k_dense_replace;

/** The plain kinds' head size: hidden_size / num_attention_heads. */
export const headDim = (config: ModelConfig): number => config.hidden_size / config.num_attention_heads;

/** The fields a config may omit, with their values. A config file then only needs to say what differs. */
export const CONFIG_DEFAULTS: Omit<ModelConfig, "hidden_size" | "num_hidden_layers" | "num_attention_heads"> = {
  vocab_size: 260,
  intermediate_size: 384,
  moe_intermediate_size: 64,
  num_key_value_heads: 0, // 0: the same as num_attention_heads (filled in by resolveConfig)
  n_routed_experts: 0,
  n_shared_experts: 0,
  num_experts_per_tok: 1,
  routed_scaling_factor: 1,
  q_lora_rank: 0,
  kv_lora_rank: 32,
  qk_nope_head_dim: 32,
  qk_rope_head_dim: 16,
  v_head_dim: 32,
  topk_method: "greedy",
  n_group: 1,
  topk_group: 1,
  scoring_func: "softmax",
  norm_topk_prob: false,
  first_k_dense_replace: 0,
  max_position_embeddings: 1024,
  rope_theta: 10000,
  rope_scaling: null,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  bos_token_id: 256,
  eos_token_id: 257,
  num_nextn_predict_layers: 0,
  index_n_heads: 4,
  index_head_dim: 32,
  index_topk: 16,
  attention_kind: "mla",
  mla_mode: "absorb",
  capacity_factor: null,
  drop_policy: "rank-position",
  exit_threshold: null,
  exit_min_layers: 1,
  decay_gamma: 0.95,
  decay_mode: "relative",
  segment_size: 16,
  segment_overlap: 8,
  memory_slots: 0,
  sparse_block: 8,
  sparse_stride: 4,
  sparse_select_block: 8,
  sparse_select_count: 4,
  sparse_window: 16,
  init_seed: 0,
  init_std: 0.02,
};

const KNOWN_FIELDS = new Set([
  ...Object.keys(CONFIG_DEFAULTS), "hidden_size", "num_hidden_layers", "num_attention_heads",
  // Accepted and ignored: DeepSeek config.json fields that change nothing tinyseek computes.
  "architectures", "model_type", "auto_map", "torch_dtype", "transformers_version", "use_cache", "hidden_act",
  "initializer_range", "attention_bias", "attention_dropout", "moe_layer_freq", "pretraining_tp", "aux_loss_alpha",
  "seq_aux", "ep_size", "quantization_config", "_name_or_path",
]);

/** DeepSeek's `quantization_config` as tinyseek reads it: FP8 e4m3 weights with one scale per block × block. */
export interface Fp8Quantization {
  readonly fmt: "e4m3";
  readonly block: number;
}

/** A checkpoint's Hugging Face config.json, read as DeepSeek publishes it. */
export interface HfConfig {
  readonly config: ModelConfig;
  /** The fields tinyseek does not know, set aside (the caller notes them once) rather than refused. */
  readonly ignored: string[];
  /** From `quantization_config`; null when the checkpoint is not quantised. */
  readonly quantization: Fp8Quantization | null;
}

/**
 * A config.json as published (DeepSeek-V3's, V2-Lite's): unknown fields are set aside and listed, not refused (a
 * newer release adds fields such as `rope_parameters`); `rope_scaling.rope_type` reads as `type`; a
 * `quantization_config` must be FP8 e4m3 with square weight blocks, the one scheme DeepSeek ships.
 */
export function configFromHf(json: unknown): HfConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TinyseekError(`config.json: expected a JSON object, got ${Array.isArray(json) ? "an array" : excerpt(json)}`);
  }
  const known: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [key, value] of Object.entries(json)) {
    if (KNOWN_FIELDS.has(key)) known[key] = value;
    else ignored.push(key);
  }
  const scaling = known.rope_scaling as Record<string, unknown> | null | undefined;
  if (scaling && typeof scaling === "object" && scaling.type === undefined && scaling.rope_type !== undefined) {
    const { rope_type, ...rest } = scaling;
    known.rope_scaling = { ...rest, type: rope_type };
  }
  return { config: resolveConfig(known), ignored, quantization: quantizationOf(known.quantization_config) };
}

function quantizationOf(q: unknown): Fp8Quantization | null {
  if (q === undefined || q === null) return null;
  const expected = 'quantization_config: expected { "quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [B, B] } (DeepSeek\'s FP8)';
  if (typeof q !== "object" || Array.isArray(q)) throw new TinyseekError(`${expected}, got ${excerpt(q)}`);
  const { quant_method, fmt, weight_block_size: size } = q as Record<string, unknown>;
  if (quant_method !== "fp8") throw new TinyseekError(`${expected}, got quant_method ${excerpt(quant_method)}`);
  if (fmt !== "e4m3") throw new TinyseekError(`${expected}, got fmt ${excerpt(fmt)}`);
  if (!Array.isArray(size) || size.length !== 2 || !size.every((b) => Number.isInteger(b) && b >= 1) || size[0] !== size[1]) {
    throw new TinyseekError(`${expected}, got weight_block_size ${excerpt(size)}`);
  }
  return { fmt, block: size[0] as number };
}

/** A complete config from a partial one (a JSON file, a preset plus overrides): defaults filled, then validated. */
export function resolveConfig(partial: Partial<ModelConfig> | Record<string, unknown>): ModelConfig {
  if (typeof partial !== "object" || partial === null || Array.isArray(partial)) {
    throw new TinyseekError(`config: expected a JSON object, got ${Array.isArray(partial) ? "an array" : String(partial)}`);
  }
  const config = { ...CONFIG_DEFAULTS, ...partial } as ModelConfig & Record<string, unknown>;
  // V2-Lite writes q_lora_rank: null for "no low-rank query path".
  if ((config.q_lora_rank as unknown) === null) config.q_lora_rank = 0;
  if (config.num_key_value_heads === 0) config.num_key_value_heads = config.num_attention_heads;
  validateConfig(config);
  // Frozen once checked: what is derived from it (moeConfigOf) is then made once, and can never go stale.
  return Object.freeze(config);
}

/** A config value as JSON, except NaN and ±Infinity, which JSON would show as null. */
const shown = (v: unknown): string => (typeof v === "number" && !Number.isFinite(v) ? String(v) : excerpt(v, 120));

/** Every problem with `config`, one line each ("field: reason"); empty when it is valid. */
export function configProblems(config: Record<string, unknown>): string[] {
  if (typeof config !== "object" || config === null || Array.isArray(config)) return [`config: expected an object, got ${Array.isArray(config) ? "an array" : String(config)}`];
  const problems: string[] = [];
  const bad = (field: string, reason: string) => problems.push(`${field}: ${reason}, got ${shown(config[field])}`);
  const int = (field: string, min: number) => {
    const v = config[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      bad(field, `expected an integer >= ${min}`);
      return false;
    }
    return true;
  };
  const num = (field: string, min: number, max = Infinity, minOpen = false) => {
    const v = config[field];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max || (minOpen && v === min)) {
      bad(field, `expected a number in ${minOpen ? "(" : "["}${min}, ${max === Infinity ? "∞)" : `${max}]`}`);
      return false;
    }
    return true;
  };
  const oneOf = (field: string, allowed: readonly unknown[]) => {
    if (!allowed.includes(config[field])) bad(field, `expected one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
  };
  const bool = (field: string) => {
    if (typeof config[field] !== "boolean") bad(field, "expected true or false");
  };

  for (const key of Object.keys(config)) if (!KNOWN_FIELDS.has(key)) problems.push(`${key}: not a config field`);

  const vocabOk = int("vocab_size", 1);
  const hiddenOk = int("hidden_size", 1);
  int("intermediate_size", 1);
  int("moe_intermediate_size", 1);
  const layersOk = int("num_hidden_layers", 1);
  const headsOk = int("num_attention_heads", 1);
  if (int("num_key_value_heads", 1) && headsOk && (config.num_attention_heads as number) % (config.num_key_value_heads as number) !== 0) {
    bad("num_key_value_heads", `expected a divisor of num_attention_heads=${config.num_attention_heads}`);
  }
  const routedOk = int("n_routed_experts", 0);
  int("n_shared_experts", 0);
  if (int("num_experts_per_tok", 1) && routedOk && (config.n_routed_experts as number) > 0 &&
    (config.num_experts_per_tok as number) > (config.n_routed_experts as number)) {
    bad("num_experts_per_tok", `expected at most n_routed_experts=${config.n_routed_experts}`);
  }
  num("routed_scaling_factor", 0, Infinity, true);
  int("q_lora_rank", 0);
  int("kv_lora_rank", 1);
  int("qk_nope_head_dim", 0);
  if (int("qk_rope_head_dim", 2) && (config.qk_rope_head_dim as number) % 2 !== 0) bad("qk_rope_head_dim", "expected an even number");
  int("v_head_dim", 1);
  oneOf("topk_method", TOPK_METHODS);
  const groupsOk = int("n_group", 1);
  if (groupsOk && routedOk && (config.n_routed_experts as number) % (config.n_group as number) !== 0) {
    bad("n_group", `expected a divisor of n_routed_experts=${config.n_routed_experts}`);
  }
  if (int("topk_group", 1) && groupsOk && (config.topk_group as number) > (config.n_group as number)) {
    bad("topk_group", `expected at most n_group=${config.n_group}`);
  }
  oneOf("scoring_func", SCORING_FUNCS);
  bool("norm_topk_prob");
  if (int("first_k_dense_replace", 0) && layersOk && (config.first_k_dense_replace as number) > (config.num_hidden_layers as number)) {
    bad("first_k_dense_replace", `expected at most num_hidden_layers=${config.num_hidden_layers}`);
  }
  int("max_position_embeddings", 1);
  num("rope_theta", 1);
  const scaling = config.rope_scaling as RopeScaling | null;
  if (scaling !== null) {
    if (typeof scaling !== "object" || scaling.type !== "yarn") bad("rope_scaling", 'expected null or { "type": "yarn", ... }');
    else {
      if (!(typeof scaling.factor === "number" && scaling.factor >= 1)) problems.push(`rope_scaling.factor: expected a number >= 1, got ${shown(scaling.factor)}`);
      const original = scaling.original_max_position_embeddings;
      if (!(Number.isInteger(original) && original >= 1)) {
        problems.push(`rope_scaling.original_max_position_embeddings: expected an integer >= 1, got ${shown(original)}`);
      }
    }
  }
  num("rms_norm_eps", 0, 1);
  bool("tie_word_embeddings");
  for (const field of ["bos_token_id", "eos_token_id"]) {
    if (int(field, 0) && vocabOk && (config[field] as number) >= (config.vocab_size as number)) bad(field, `expected a token id below vocab_size=${config.vocab_size}`);
  }
  // One MTP depth runs (src/model/mtp.ts); chained depths (k > 1) are not implemented.
  if (int("num_nextn_predict_layers", 0) && (config.num_nextn_predict_layers as number) > 1) bad("num_nextn_predict_layers", "expected 0 or 1 (one multi-token-prediction depth; chained depths are not implemented)");

  const kind = config.attention_kind;
  if (Array.isArray(kind)) {
    if (layersOk && kind.length !== config.num_hidden_layers) bad("attention_kind", `expected one kind or ${config.num_hidden_layers} (one per layer)`);
    kind.forEach((k, i) => {
      if (!(ATTENTION_KINDS as readonly unknown[]).includes(k)) problems.push(`attention_kind[${i}]: expected one of ${ATTENTION_KINDS.join(", ")}, got ${JSON.stringify(k)}`);
    });
  } else oneOf("attention_kind", ATTENTION_KINDS);
  const kinds = new Set(Array.isArray(kind) ? kind : [kind]);
  if (hiddenOk && headsOk && [...kinds].some((k) => k !== "mla" && k !== "dsa")) {
    const dh = (config.hidden_size as number) / (config.num_attention_heads as number);
    if (!Number.isInteger(dh) || dh % 2 !== 0) bad("num_attention_heads", `expected hidden_size=${config.hidden_size} / heads to be an even integer (head size of the ${[...kinds].join("/")} kinds)`);
  }
  int("index_n_heads", 1);
  // The indexer rotates its first qk_rope_head_dim features: only a DSA layer needs room for them.
  if (int("index_head_dim", 1) && kinds.has("dsa") && typeof config.qk_rope_head_dim === "number" &&
    (config.index_head_dim as number) < config.qk_rope_head_dim) {
    bad("index_head_dim", `expected an integer >= qk_rope_head_dim=${config.qk_rope_head_dim} (its first qk_rope_head_dim features are rotated)`);
  }
  int("index_topk", 1);
  oneOf("mla_mode", ["absorb", "naive"]);
  if (config.capacity_factor !== null) num("capacity_factor", 0, Infinity, true);
  oneOf("drop_policy", DROP_POLICIES);
  if (config.exit_threshold !== null) num("exit_threshold", 0);
  if (int("exit_min_layers", 1) && layersOk && (config.exit_min_layers as number) > (config.num_hidden_layers as number)) {
    bad("exit_min_layers", `expected at most num_hidden_layers=${config.num_hidden_layers}`);
  }
  if (config.decay_gamma !== "retnet") num("decay_gamma", 0, 1, true);
  oneOf("decay_mode", ["relative", "as-written"]);
  // As written, γ^j scales a kv head's keys: a kv head shared by query heads of different gammas has no one scaling.
  if (kinds.has("decay") && config.decay_mode === "as-written" && config.decay_gamma === "retnet" && config.num_key_value_heads !== config.num_attention_heads) {
    bad("decay_gamma", `expected one gamma for every head when kv heads are shared (decay_mode "as-written", ${config.num_key_value_heads} kv heads for ${config.num_attention_heads} heads)`);
  }
  int("segment_size", 1);
  int("segment_overlap", 0);
  int("memory_slots", 0);
  const blockOk = int("sparse_block", 1);
  const strideOk = int("sparse_stride", 1);
  const selectOk = int("sparse_select_block", 1);
  if (blockOk && strideOk && (config.sparse_block as number) % (config.sparse_stride as number) !== 0) bad("sparse_block", `expected a multiple of sparse_stride=${config.sparse_stride}`);
  if (selectOk && strideOk && (config.sparse_select_block as number) % (config.sparse_stride as number) !== 0) bad("sparse_select_block", `expected a multiple of sparse_stride=${config.sparse_stride}`);
  if (selectOk && blockOk && (config.sparse_select_block as number) < (config.sparse_block as number)) bad("sparse_select_block", `expected at least sparse_block=${config.sparse_block}`);
  int("sparse_select_count", 3);
  int("sparse_window", 1);
  if (int("init_seed", 0) && (config.init_seed as number) > 2 ** 32 - 1) bad("init_seed", "expected an integer below 2^32");
  num("init_std", 0);
  return problems;
}

/** Throws one error listing every problem (each names its field), or returns when the config is valid. */
export function validateConfig(config: ModelConfig | Record<string, unknown>): asserts config is ModelConfig {
  const problems = configProblems(config as Record<string, unknown>);
  if (problems.length > 0) {
    throw new TinyseekError(`config has ${problems.length} problem${problems.length > 1 ? "s" : ""}: ${problems.join("; ")}`);
  }
}

/** The MoE hyper-parameters of a model config, in src/moe's terms. */
export function moeConfigOf(config: ModelConfig): MoeConfig {
  const made = moeConfigs.get(config);
  if (made) return made;
  const moe = moeConfig({
    n_routed_experts: config.n_routed_experts,
    num_experts_per_tok: config.num_experts_per_tok,
    n_group: config.n_group,
    topk_group: config.topk_group,
    scoring_func: config.scoring_func,
    // V2's "group_limited_greedy" is greedy routing within the best groups: src/moe's "greedy" with n_group > 1.
    topk_method: config.topk_method === "noaux_tc" ? "noaux_tc" : "greedy",
    norm_topk_prob: config.norm_topk_prob,
    routed_scaling_factor: config.routed_scaling_factor,
    moe_intermediate_size: config.moe_intermediate_size,
    n_shared_experts: config.n_shared_experts,
    capacityFactor: config.capacity_factor,
    dropPolicy: config.drop_policy,
  });
  if (Object.isFrozen(config)) moeConfigs.set(config, moe);
  return moe;
}

/** The MoE configs of frozen model configs (resolveConfig freezes what it checked). */
const moeConfigs = new WeakMap<ModelConfig, MoeConfig>();
