import { describe, expect, it } from "vitest";
import { configProblems, resolveConfig } from "../src/model/config.ts";
import { countParameters } from "../src/model/params.ts";
import { preset, PRESET_NAMES } from "../src/model/presets.ts";

describe("parameter counter", () => {
  // spec/model.md, presets: DeepSeek's published shapes give the papers' 671B/37B, 236B/21B, 15.7B/2.4B.
  it.each([
    ["deepseek-v3", 671_026_419_200, 36_625_618_432],
    ["deepseek-v2", 235_741_434_880, 20_851_512_320],
    ["deepseek-v2-lite", 15_706_484_224, 2_451_435_008],
    ["tiny", 1_679_920, 761_904],
  ])("%s has %d parameters, %d active per token", (name, total, active) => {
    const count = countParameters(preset(name));
    expect(count.total).toBe(total);
    expect(count.active).toBe(active);
    expect(Object.values(count.parts).reduce((a, n) => a + n, 0)).toBe(total);
  });

  it("counts a tied head once in the total and as the head in the active count", () => {
    const untied = countParameters(preset("tiny"));
    const tied = countParameters(preset("tiny", { tie_word_embeddings: true }));
    expect(untied.total - tied.total).toBe(260 * 128);
    expect(tied.active).toBe(untied.active);
  });

  it("every preset validates", () => {
    for (const name of PRESET_NAMES) expect(() => preset(name)).not.toThrow();
  });
});

describe("config validation", () => {
  it("lists every bad field with its reason, not just the first", () => {
    const problems = configProblems({
      ...preset("tiny"), hidden_size: 0, n_group: 3, topk_group: 9, scoring_func: "relu", attention_kind: "flash", colour: "red",
    });
    const fields = problems.map((p) => p.split(":")[0]);
    expect(fields).toEqual(expect.arrayContaining(["hidden_size", "n_group", "topk_group", "scoring_func", "attention_kind", "colour"]));
    expect(problems.find((p) => p.startsWith("n_group"))).toMatch(/divisor of n_routed_experts=16, got 3/);
    expect(problems.find((p) => p.startsWith("colour"))).toMatch(/not a config field/);
  });

  it("throws one error naming each field", () => {
    expect(() => resolveConfig({ hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_experts_per_tok: 0, rms_norm_eps: -1 }))
      .toThrow(/2 problems: num_experts_per_tok: expected an integer >= 1, got 0; rms_norm_eps: expected a number in \[0, 1\], got -1/);
  });

  it("checks per-layer attention kinds and the head size of the plain kinds", () => {
    const problems = configProblems({ ...preset("tiny"), attention_kind: ["mla", "mha", "nope"], num_attention_heads: 3 });
    expect(problems.join("\n")).toMatch(/attention_kind: expected one kind or 4/);
    expect(problems.join("\n")).toMatch(/attention_kind\[2\]: expected one of/);
    expect(problems.join("\n")).toMatch(/num_attention_heads: expected hidden_size=128 \/ heads to be an even integer/);
  });

  it("fills defaults, reads V2-Lite's null q_lora_rank, and defaults kv heads to the heads", () => {
    const c = resolveConfig({ hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, q_lora_rank: null as unknown as number });
    expect(c.q_lora_rank).toBe(0);
    expect(c.num_key_value_heads).toBe(4);
    expect(c.attention_kind).toBe("mla");
    expect(c.exit_threshold).toBeNull();
  });

  it("rejects a preset name it does not know", () => {
    expect(() => preset("huge")).toThrow(/preset: expected one of tiny, small/);
  });
});

describe("reading DeepSeek's own config.json", () => {
  it("accepts the checkpoint's file as published (fields that change nothing here are ignored) and counts it", () => {
    const v3 = {
      architectures: ["DeepseekV3ForCausalLM"], attention_bias: false, attention_dropout: 0.0, aux_loss_alpha: 0.001,
      bos_token_id: 0, eos_token_id: 1, ep_size: 1, first_k_dense_replace: 3, hidden_act: "silu", hidden_size: 7168,
      initializer_range: 0.02, intermediate_size: 18432, kv_lora_rank: 512, max_position_embeddings: 163840,
      model_type: "deepseek_v3", moe_intermediate_size: 2048, moe_layer_freq: 1, n_group: 8, n_routed_experts: 256,
      n_shared_experts: 1, norm_topk_prob: true, num_attention_heads: 128, num_experts_per_tok: 8, num_hidden_layers: 61,
      num_key_value_heads: 128, num_nextn_predict_layers: 1, pretraining_tp: 1, q_lora_rank: 1536, qk_nope_head_dim: 128,
      qk_rope_head_dim: 64,
      quantization_config: { activation_scheme: "dynamic", fmt: "e4m3", quant_method: "fp8", weight_block_size: [128, 128] },
      rms_norm_eps: 1e-6,
      rope_scaling: { beta_fast: 32, beta_slow: 1, factor: 40, mscale: 1.0, mscale_all_dim: 1.0, original_max_position_embeddings: 4096, type: "yarn" },
      rope_theta: 10000, routed_scaling_factor: 2.5, scoring_func: "sigmoid", seq_aux: true, tie_word_embeddings: false,
      topk_group: 4, topk_method: "noaux_tc", torch_dtype: "bfloat16", transformers_version: "4.33.1", use_cache: true,
      v_head_dim: 128, vocab_size: 129280,
    };
    const count = countParameters(resolveConfig(v3));
    expect([count.total, count.active]).toEqual([671_026_419_200, 36_625_618_432]);
  });
});

describe("config problems show NaN and Infinity as they are", () => {
  it("does not print NaN as null (JSON's way)", () => {
    const problems = configProblems({ ...preset("tiny"), hidden_size: NaN, rope_scaling: { type: "yarn", factor: Infinity, original_max_position_embeddings: NaN } });
    expect(problems).toContain("hidden_size: expected an integer >= 1, got NaN");
    expect(problems.join("\n")).toMatch(/rope_scaling.original_max_position_embeddings: expected an integer >= 1, got NaN/);
    expect(problems.join("\n")).not.toMatch(/got null/);
  });
});
