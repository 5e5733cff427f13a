// Named configurations. `tiny` and `small` are tinyseek's own (spec/model.md) and run; DeepSeek's published
// V3, V2 and V2-Lite shapes are here for reading and counting (their config.json values on Hugging Face,
// deepseek-ai/DeepSeek-V3, DeepSeek-V2, DeepSeek-V2-Lite), far too large to run in TypeScript.

import { TinyseekError } from "../errors.ts";
import { type ModelConfig, resolveConfig } from "./config.ts";

type Partial = Parameters<typeof resolveConfig>[0];

const tiny: Partial = {
  vocab_size: 260, // 256 bytes + BOS, EOS, PAD, IMG
  hidden_size: 128,
  intermediate_size: 384,
  moe_intermediate_size: 64,
  num_hidden_layers: 4,
  first_k_dense_replace: 1,
  num_attention_heads: 4,
  q_lora_rank: 64,
  kv_lora_rank: 32,
  qk_nope_head_dim: 32,
  qk_rope_head_dim: 16,
  v_head_dim: 32,
  n_routed_experts: 16,
  n_shared_experts: 1,
  num_experts_per_tok: 4,
  n_group: 4,
  topk_group: 2,
  topk_method: "noaux_tc", // sigmoid scores with a selection bias, as V3
  scoring_func: "sigmoid",
  norm_topk_prob: true,
  routed_scaling_factor: 2.5,
  max_position_embeddings: 1024,
  rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 256, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
  tie_word_embeddings: false,
  attention_kind: "mla",
};

const small: Partial = {
  ...tiny,
  hidden_size: 256,
  intermediate_size: 768,
  moe_intermediate_size: 128,
  num_hidden_layers: 8,
  num_attention_heads: 8,
  q_lora_rank: 128,
  kv_lora_rank: 64,
  n_routed_experts: 32,
  n_group: 4,
  topk_group: 2,
};

const v3: Partial = {
  vocab_size: 129280,
  hidden_size: 7168,
  intermediate_size: 18432,
  moe_intermediate_size: 2048,
  num_hidden_layers: 61,
  num_nextn_predict_layers: 1,
  num_attention_heads: 128,
  num_key_value_heads: 128,
  n_shared_experts: 1,
  n_routed_experts: 256,
  routed_scaling_factor: 2.5,
  kv_lora_rank: 512,
  q_lora_rank: 1536,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  qk_nope_head_dim: 128,
  topk_method: "noaux_tc",
  n_group: 8,
  topk_group: 4,
  num_experts_per_tok: 8,
  first_k_dense_replace: 3,
  norm_topk_prob: true,
  scoring_func: "sigmoid",
  max_position_embeddings: 163840,
  rope_theta: 10000,
  rope_scaling: { type: "yarn", factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  bos_token_id: 0,
  eos_token_id: 1,
};

const v2: Partial = {
  vocab_size: 102400,
  hidden_size: 5120,
  intermediate_size: 12288,
  moe_intermediate_size: 1536,
  num_hidden_layers: 60,
  num_attention_heads: 128,
  num_key_value_heads: 128,
  n_shared_experts: 2,
  n_routed_experts: 160,
  routed_scaling_factor: 16,
  kv_lora_rank: 512,
  q_lora_rank: 1536,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  qk_nope_head_dim: 128,
  topk_method: "group_limited_greedy",
  n_group: 8,
  topk_group: 3,
  num_experts_per_tok: 6,
  first_k_dense_replace: 1,
  norm_topk_prob: false,
  scoring_func: "softmax",
  max_position_embeddings: 163840,
  rope_theta: 10000,
  rope_scaling: { type: "yarn", factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 },
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  bos_token_id: 100000,
  eos_token_id: 100001,
};

const v2Lite: Partial = {
  ...v2,
  hidden_size: 2048,
  intermediate_size: 10944,
  moe_intermediate_size: 1408,
  num_hidden_layers: 27,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  n_routed_experts: 64,
  routed_scaling_factor: 1,
  q_lora_rank: 0, // null in the checkpoint: queries projected directly
  topk_method: "greedy",
  n_group: 1,
  topk_group: 1,
};

const PRESETS = { tiny, small, "deepseek-v3": v3, "deepseek-v2": v2, "deepseek-v2-lite": v2Lite } as const;
export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];
/** The presets small enough to run in TypeScript. */
export const RUNNABLE_PRESETS: PresetName[] = ["tiny", "small"];

/** A preset by name, with optional overrides (validated together). */
export function preset(name: string, overrides: Parameters<typeof resolveConfig>[0] = {}): ModelConfig {
  if (!(name in PRESETS)) throw new TinyseekError(`preset: expected one of ${PRESET_NAMES.join(", ")}, got "${name}"`);
  return resolveConfig({ ...PRESETS[name as PresetName], ...overrides });
}
