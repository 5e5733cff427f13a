import { describe, expect, it } from "vitest";
import { initMla } from "../src/attention/mla.ts";
import { Random } from "../src/random.ts";
import { cacheBytesPerToken, createCache } from "../src/model/cache.ts";
import { ATTENTION_KINDS, resolveConfig, type AttentionKind } from "../src/model/config.ts";
import { forward, forwardBatch } from "../src/model/forward.ts";
import { generate } from "../src/model/generate.ts";
import { depthSweep } from "../src/model/depth.ts";
import { runBatched } from "../src/model/batching.ts";
import { stepRecord } from "../src/step/record.ts";
import { countParameters, weightShapes } from "../src/model/params.ts";
import { initModel, modelFromParams, modelFromSafetensors, modelParams, modelToSafetensors } from "../src/model/weights.ts";
import { attentionKind } from "../src/model/attention.ts";
import { testConfig } from "./model-fixtures.ts";

const prompt = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107]; // <bos>The quick

const available = ATTENTION_KINDS.filter((kind) => {
  try {
    attentionKind(kind);
    return true;
  } catch {
    return false;
  }
});

describe("model forward", () => {
  it("freezes a config once checked: changing it in place is refused, a changed copy is another model", () => {
    const model = initModel(testConfig({ attention_kind: "mla" }));
    const before = forward(model, prompt).logits.data;
    expect(Object.isFrozen(model.config)).toBe(true);
    expect(() => ((model.config as { rope_theta: number }).rope_theta = 500)).toThrow(TypeError);
    for (const [field, value] of [["rope_theta", 500], ["routed_scaling_factor", 0.5]] as const) {
      const changed = forward({ ...model, config: resolveConfig({ ...model.config, [field]: value }) }, prompt).logits.data;
      expect(changed.some((v, i) => v !== before[i]), field).toBe(true);
    }
    expect([...forward(model, prompt).logits.data]).toEqual([...before]);
  });
  const withGqa = [...available.map((kind) => [kind, 4] as const), ...available.filter((k) => k !== "mla").map((kind) => [kind, 2] as const)];
  it.each(withGqa)("%s with %i kv heads: prefill logits equal token-by-token decode through the cache", (kind: AttentionKind, kvHeads: number) => {
    const model = initModel(testConfig({ attention_kind: kind, num_key_value_heads: kvHeads }));
    const full = forward(model, prompt);
    expect(full.logits.shape).toEqual([prompt.length, 260]);
    const cache = createCache(model.config);
    // Two chunks, then single tokens: a chunked prefill after position 0 must see the cache (spec/mla.md).
    const parts = [prompt.slice(0, 3), prompt.slice(3, 7), ...prompt.slice(7).map((t) => [t])];
    const rows: Float32Array[] = [];
    for (const part of parts) rows.push(forward(model, part, { cache }).logits.data);
    expect(cache.length).toBe(prompt.length);
    const joined = Float32Array.from(rows.flatMap((r) => [...r]));
    let worst = 0;
    joined.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - full.logits.data[i]!))));
    expect(worst).toBeLessThan(1e-5);
    expect(full.logits.data.every(Number.isFinite)).toBe(true);
  });

  it("MLA's naive and absorbed caches give the same logits; the absorbed one holds kv_lora_rank + qk_rope_head_dim per token", () => {
    const absorb = initModel(testConfig());
    const naive = initModel(testConfig({ mla_mode: "naive" }));
    const [a, n] = [forward(absorb, prompt).logits.data, forward(naive, prompt).logits.data];
    a.forEach((v, i) => expect(Math.abs(v - n[i]!)).toBeLessThan(1e-5));
    expect(cacheBytesPerToken(absorb.config, 10)).toBe(4 * 3 * (16 + 8));
    expect(cacheBytesPerToken(naive.config, 10)).toBe(4 * 3 * 4 * (8 + 8 + 8));
  });

  it("mixes kinds per layer", () => {
    const kinds = available.slice(0, 3);
    const model = initModel(testConfig({ attention_kind: kinds }));
    expect(Object.keys(model.weights.layers[0]!.self_attn)).toEqual(Object.keys(attentionKind(kinds[0]!).shapes(model.config)));
    expect(forward(model, prompt).logits.data.every(Number.isFinite)).toBe(true);
  });

  it("is deterministic: the same seed gives the same bits, another seed other ones", () => {
    const a = forward(initModel(testConfig()), prompt).logits.data;
    const b = forward(initModel(testConfig()), prompt).logits.data;
    const c = forward(initModel(testConfig({ init_seed: 1 })), prompt).logits.data;
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it("a capacity factor drops assignments, and the dropped ones show in the statistics", () => {
    const result = forward(initModel(testConfig({ capacity_factor: 0.5 })), prompt);
    const stats = result.moe[1]!;
    expect(stats.capacity).toBe(Math.ceil((0.5 * 2 * prompt.length) / 8));
    expect(stats.dropped).toBeGreaterThan(0);
    expect(stats.kept.reduce((a, n) => a + n, 0)).toBe(prompt.length * 2 - stats.dropped);
  });

  it("MoE layers after first_k_dense_replace, dense before, with routing statistics", () => {
    const result = forward(initModel(testConfig()), prompt);
    expect(result.moe[0]).toBeNull();
    expect(result.moe[1]!.tokens).toBe(prompt.length);
    expect(result.moe[2]!.routed.reduce((a, n) => a + n, 0)).toBe(prompt.length * 2);
  });

  it("refuses a sequence longer than max_position_embeddings, naming the cache", () => {
    const model = initModel(testConfig({ max_position_embeddings: 8 }));
    expect(() => forward(model, prompt)).toThrow(/cache: expected room for 10 more positions \(max_position_embeddings 8\)/);
  });
});

describe("early exit", () => {
  // Larger init weights make confident predictions, so exits actually happen.
  const config = testConfig({ init_std: 0.4, num_hidden_layers: 4 });
  const model = initModel(config);

  it("a threshold above 1 equals the full-depth model exactly", () => {
    const full = forward(model, prompt, { exitThreshold: null });
    const never = forward(model, prompt, { exitThreshold: 1.01, minLayers: 1 });
    expect(never.logits.data).toEqual(full.logits.data);
    expect([...never.exitLayers]).toEqual(prompt.map(() => 4));
  });

  it("exits tokens early, and prefill still equals decode (exited tokens fill the deeper caches)", () => {
    const full = forward(model, prompt, { exitThreshold: 0.05, minLayers: 1 });
    expect(Math.min(...full.exitLayers)).toBeLessThan(4);
    const cache = createCache(config);
    prompt.forEach((token, t) => {
      const step = forward(model, [token], { cache, exitThreshold: 0.05, minLayers: 1 });
      expect(step.exitLayers[0]).toBe(full.exitLayers[t]);
      const row = full.logits.data.subarray(t * 260, (t + 1) * 260);
      step.logits.data.forEach((v, i) => expect(Math.abs(v - row[i]!)).toBeLessThan(1e-5));
    });
  });

  it("threshold 0 exits every token at minLayers", () => {
    expect([...forward(model, prompt, { exitThreshold: 0, minLayers: 2 }).exitLayers]).toEqual(prompt.map(() => 2));
  });
});

describe("weights", () => {
  it("save then load gives identical logits, under the checkpoint's names", () => {
    const model = initModel(testConfig());
    const bytes = modelToSafetensors(model);
    const loaded = modelFromSafetensors(bytes);
    expect(loaded.config).toEqual(model.config);
    expect(forward(loaded, prompt).logits.data).toEqual(forward(model, prompt).logits.data);
    const names = [...modelParams(model).keys()];
    expect(names).toEqual(expect.arrayContaining([
      "model.embed_tokens.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "model.layers.0.mlp.gate_proj.weight",
      "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.gate.e_score_correction_bias", "model.layers.2.mlp.experts.7.down_proj.weight",
      "model.layers.2.mlp.shared_experts.up_proj.weight", "model.norm.weight", "lm_head.weight",
    ]));
    expect(names).toEqual([...weightShapes(model.config).keys()]);
  });

  it("a tied head is the embedding table: saved once, loaded back as one", () => {
    const model = initModel(testConfig({ tie_word_embeddings: true }));
    expect(model.weights.lm_head).toBe(model.weights.embed_tokens);
    expect(modelParams(model).has("lm_head.weight")).toBe(false);
    const loaded = modelFromSafetensors(modelToSafetensors(model));
    expect(loaded.weights.lm_head).toBe(loaded.weights.embed_tokens);
    expect(forward(loaded, prompt).logits.data).toEqual(forward(model, prompt).logits.data);
  });

  it("names every missing, extra or mis-shaped tensor", () => {
    const model = initModel(testConfig());
    const params = modelParams(model);
    params.delete("model.layers.1.mlp.experts.3.up_proj.weight");
    params.set("model.layers.9.self_attn.q_proj.weight", { shape: [1], data: new Float32Array(1) });
    params.set("model.norm.weight", { shape: [31], data: new Float32Array(31) });
    expect(() => modelFromParams(model.config, params)).toThrow(
      /3 problems.*missing tensor "model.layers.1.mlp.experts.3.up_proj.weight" \[16, 32\].*tensor "model.norm.weight": expected shape \[32\], got \[31\].*unexpected tensor "model.layers.9.self_attn.q_proj.weight"/,
    );
  });

  it.each(available)("%s: the shapes it counts and loads are the shapes its init makes, in order", (kind) => {
    const config = testConfig({ attention_kind: kind });
    const made = attentionKind(kind).init(new Random(0), config);
    const counted = attentionKind(kind).shapes(config);
    expect(Object.entries(made).map(([k, t]) => [k, t.shape])).toEqual(Object.entries(counted));
  });

  it("the MLA kind is src/attention/mla.ts's own init", () => {
    const config = testConfig();
    const shapes = Object.entries(initMla(new Random(0), config)).map(([k, t]) => [k, t!.shape]);
    expect(shapes).toEqual(Object.entries(attentionKind("mla").shapes(config)));
  });
});


describe("a value that is not a model", () => {
  it("is named as the model argument by every entry point, not met with a TypeError", async () => {
    const message = /^model: expected a Model \{ config, weights \} from initModel or loadModel, got /;
    const notModels = [null, {}, { config: testConfig() }] as unknown as Parameters<typeof forward>[0][];
    for (const m of notModels) {
      expect(() => forward(m, [1])).toThrow(message);
      expect(() => forwardBatch(m, [[1]], [1], { caches: [createCache(testConfig())] })).toThrow(message);
      expect(() => generate(m, [1], { maxTokens: 1 })).toThrow(message);
      expect(() => runBatched(m, [], { maxBatch: 1 })).toThrow(message);
      expect(() => stepRecord(m, "a", [1])).toThrow(message);
      expect(() => modelToSafetensors(m)).toThrow(message);
    }
    for (const m of notModels) await expect(depthSweep(m, [1], [0.1])).rejects.toThrow(message);
    expect(() => countParameters(null as unknown as Parameters<typeof countParameters>[0])).toThrow(/config: expected an object, got null/);
  });
});
