// A reduced config for the model's tests: the tiny model's structure (MLA, dense first layer, sigmoid MoE with
// groups and bias, shared expert, YaRN) at a size that runs in milliseconds.
import type { ModelConfig } from "../src/model/config.ts";
import { preset } from "../src/model/presets.ts";

export function testConfig(overrides: Parameters<typeof preset>[1] = {}): ModelConfig {
  return preset("tiny", {
    hidden_size: 32, intermediate_size: 48, moe_intermediate_size: 16, num_hidden_layers: 3, num_attention_heads: 4,
    q_lora_rank: 16, kv_lora_rank: 16, qk_nope_head_dim: 8, qk_rope_head_dim: 8, v_head_dim: 8,
    n_routed_experts: 8, num_experts_per_tok: 2, n_group: 4, topk_group: 2, max_position_embeddings: 64,
    rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 16 },
    segment_size: 4, segment_overlap: 2, memory_slots: 2,
    sparse_block: 4, sparse_stride: 2, sparse_select_block: 4, sparse_select_count: 3, sparse_window: 4, ...overrides,
  });
}
