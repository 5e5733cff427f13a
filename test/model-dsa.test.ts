// DSA (DeepSeek-V3.2's sparse attention, src/attention/dsa.ts) as a model attention kind: attention_kind "dsa" runs
// MLA on the device over the keys its indexer selected, the indexer on the host (src/model/dsa-layer.ts).
import { describe, expect, it } from "vitest";
import { dsa, initDsa, type DsaWeights } from "../src/attention/dsa.ts";
import { loraTargets } from "../src/lora.ts";
import { attentionKind } from "../src/model/attention.ts";
import { cacheNumbers, createCache } from "../src/model/cache.ts";
import { configProblems, type ModelConfig } from "../src/model/config.ts";
import { forward } from "../src/model/forward.ts";
import { countParameters, weightShapes } from "../src/model/params.ts";
import { hookPoints } from "../src/model/point-names.ts";
import { initModel, modelFromParams, modelFromSafetensors, modelParams, modelToSafetensors, type Model } from "../src/model/weights.ts";
import { Random } from "../src/random.ts";
import { attentionOverride } from "../src/step/load.ts";
import { stepRecord } from "../src/step/record.ts";
import type { Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { testConfig } from "./model-fixtures.ts";

const prompt = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98]; // <bos>The quick b
const T = prompt.length;

/** A DSA model; init_std 0.3 so that the MoE and the residual stream are lively. */
const dsaModel = (overrides: Partial<ModelConfig> = {}) =>
  initModel(testConfig({ attention_kind: "dsa", index_n_heads: 2, index_head_dim: 12, index_topk: 3, init_std: 0.3, ...overrides }));

/** The mla model with the DSA model's own weights, the indexer's left out. */
function mlaTwin(model: Model): Model {
  const params = new Map([...modelParams(model)].filter(([name]) => !name.includes(".self_attn.indexer.")));
  return modelFromParams({ ...model.config, attention_kind: "mla" }, params);
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((worst, v, i) => Math.max(worst, Math.abs(v - b[i]!)), 0);
const rowsOf = (t: { shape: readonly number[]; data: ArrayLike<number> }) => {
  const width = t.shape[1]!;
  return Array.from({ length: t.shape[0]! }, (_, r) => Array.from(t.data).slice(r * width, (r + 1) * width).filter((s) => s >= 0));
};

describe("dsa as a model attention kind", () => {
  it.each(["absorb", "naive"] as const)("with index_topk >= T it is the mla model with the same MLA weights, bit for bit (%s)", (mode) => {
    const model = dsaModel({ index_topk: T, mla_mode: mode });
    expect(forward(model, prompt).logits.data).toEqual(forward(mlaTwin(model), prompt).logits.data);
  });

  it("with a small index_topk the selection changes the logits, from the first query that has more keys than k on", () => {
    const k = 3;
    const model = dsaModel({ index_topk: k });
    const [sparse, dense] = [forward(model, prompt).logits, forward(mlaTwin(model), prompt).logits];
    const V = model.config.vocab_size;
    // Queries t < k see all their keys, at every layer (their inputs are causal): exactly the dense model.
    expect(sparse.data.subarray(0, k * V)).toEqual(dense.data.subarray(0, k * V));
    for (let t = k; t < T; t++) {
      const row = (x: Tensor) => x.data.subarray(t * V, (t + 1) * V);
      expect(maxDiff(row(sparse), row(dense)), `token ${t}`).toBeGreaterThan(1e-4);
    }
  });

  it("records what each layer selected: min(k, t + 1) causal keys per query, in ascending order", () => {
    const model = dsaModel();
    const trace = createTrace("layers.*.attn.selected,layers.*.attn.index_scores");
    forward(model, prompt, { trace });
    for (let l = 0; l < model.config.num_hidden_layers; l++) {
      const selected = trace.tensors.get(`layers.${l}.attn.selected`)!;
      expect(selected.shape).toEqual([T, 3]);
      expect(selected.data).toBeInstanceOf(Int32Array);
      rowsOf(selected).forEach((keys, t) => {
        expect(keys).toHaveLength(Math.min(3, t + 1));
        expect(keys.every((s, i) => s <= t && (i === 0 || s > keys[i - 1]!))).toBe(true);
      });
      const scores = trace.tensors.get(`layers.${l}.attn.index_scores`)!;
      expect(scores.shape).toEqual([T, T]);
      expect(scores.data[0 * T + 1]).toBe(-Infinity); // above the diagonal
    }
  });

  // index_head_dim 8 = qk_rope_head_dim: every indexer feature rotated, none left over.
  it.each([[12], [8]])("a layer is src/attention/dsa.ts on its own input, its scores included (index_head_dim %i)", (dI) => {
    const model = dsaModel({ index_head_dim: dI });
    const trace = createTrace("layers.0.attn.*");
    forward(model, prompt, { trace });
    const w = model.weights.layers[0]!.self_attn;
    const indexer = Object.fromEntries(Object.entries(w).filter(([n]) => n.startsWith("indexer.")).map(([n, t]) => [n.slice(8), t]));
    const weights = { ...w, indexer } as unknown as DsaWeights;
    const x = trace.tensors.get("layers.0.attn.in") as Tensor;
    const own = dsa({ shape: [1, T, x.shape[1]!], data: x.data }, weights, model.config);
    expect(trace.tensors.get("layers.0.attn.out")!.data).toEqual(own.out.data);
    expect(trace.tensors.get("layers.0.attn.selected")!.data).toEqual(own.selected.data);
    // The scores themselves, not only the order they give: a scale applied to all of them would select the same keys.
    expect(trace.tensors.get("layers.0.attn.index_scores")!.data).toEqual(own.scores.data);
  });

  it.each(["absorb", "naive"] as const)("prefill equals decode through the cache, chunked and token by token, selections included (%s)", (mode) => {
    const model = dsaModel({ mla_mode: mode });
    const full = createTrace("layers.*.attn.selected");
    const whole = forward(model, prompt, { trace: full });
    const cache = createCache(model.config);
    const parts = [prompt.slice(0, 2), prompt.slice(2, 7), ...prompt.slice(7).map((t) => [t])];
    const logits: number[] = [];
    const selected: number[][][] = Array.from({ length: model.config.num_hidden_layers }, () => []);
    for (const part of parts) {
      const trace = createTrace("layers.*.attn.selected");
      logits.push(...forward(model, part, { cache, trace }).logits.data);
      selected.forEach((rows, l) => rows.push(...rowsOf(trace.tensors.get(`layers.${l}.attn.selected`)!)));
    }
    expect(cache.length).toBe(T);
    expect(maxDiff(Float32Array.from(logits), whole.logits.data)).toBeLessThan(1e-5);
    selected.forEach((rows, l) => expect(rows, `layer ${l}`).toEqual(rowsOf(full.tensors.get(`layers.${l}.attn.selected`)!)));
  });

  it("runs on the device: MLA's hook points are its own, and a replacement of its heads flows on", () => {
    const model = dsaModel();
    const points = hookPoints(model.config).filter((p) => p.startsWith("layers.0.attn."));
    expect(points).toEqual(["layers.0.attn.in", "layers.0.attn.latent", "layers.0.attn.k_pe", "layers.0.attn.heads", "layers.0.attn.out", "layers.0.attn.residual"]);
    // No dense scores or probabilities: each token attends its own selection.
    expect(() => forward(model, prompt, { hooks: { "layers.0.attn.probs": (p) => p } })).toThrow(/layers\.0\.attn\.probs/);
    const plain = forward(model, prompt).logits.data;
    const zeroed = forward(model, prompt, { hooks: { "layers.1.attn.heads": (h) => ({ shape: h.shape, data: new Float32Array(h.data.length) }) } });
    const trace = createTrace(["layers.1.attn.heads", "layers.1.attn.out"]);
    forward(model, prompt, { trace, hooks: { "layers.1.attn.heads": (h) => ({ shape: h.shape, data: new Float32Array(h.data.length) }) } });
    expect(trace.tensors.get("layers.1.attn.heads")!.data.every((v) => v === 0)).toBe(true);
    expect(trace.tensors.get("layers.1.attn.out")!.data.every((v) => v === 0)).toBe(true); // o_proj of zeros, no bias
    expect(maxDiff(zeroed.logits.data, plain)).toBeGreaterThan(1e-3);
  });

  it("a forward that fails after a layer's indexer ran leaves the cache usable, the indexer's keys included", () => {
    const model = dsaModel();
    const cache = createCache(model.config);
    forward(model, prompt.slice(0, 5), { cache });
    const stop = { "layers.1.attn.out": () => { throw new Error("stop"); } }; // layer 0's and 1's indexers ran
    expect(() => forward(model, prompt.slice(5, 8), { cache, hooks: stop })).toThrow("stop");
    expect(cache.length).toBe(5);
    const rest = forward(model, prompt.slice(5), { cache }).logits.data;
    expect(maxDiff(rest, forward(model, prompt).logits.data.slice(5 * model.config.vocab_size))).toBeLessThan(1e-5);
  });

  it("mixes with the other kinds per layer", () => {
    const model = dsaModel({ attention_kind: ["mla", "dsa", "mha"], num_key_value_heads: 2 });
    const whole = forward(model, prompt).logits.data;
    const cache = createCache(model.config);
    const logits = [...forward(model, prompt.slice(0, 5), { cache }).logits.data, ...forward(model, prompt.slice(5), { cache }).logits.data];
    expect(maxDiff(Float32Array.from(logits), whole)).toBeLessThan(1e-5);
  });

  it("saves and loads under DeepSeek-V3.2's checkpoint names, with identical logits", () => {
    const model = dsaModel();
    const names = [...modelParams(model).keys()].filter((n) => n.startsWith("model.layers.1.self_attn.indexer."));
    expect(names).toEqual([
      "model.layers.1.self_attn.indexer.wq_b.weight", "model.layers.1.self_attn.indexer.wk.weight",
      "model.layers.1.self_attn.indexer.k_norm.weight", "model.layers.1.self_attn.indexer.k_norm.bias",
      "model.layers.1.self_attn.indexer.weights_proj.weight",
    ]);
    const loaded = modelFromSafetensors(modelToSafetensors(model));
    expect(loaded.config).toEqual(model.config);
    expect(forward(loaded, prompt).logits.data).toEqual(forward(model, prompt).logits.data);
    // A file without the indexer does not load as DSA, and names what is missing.
    const mlaFile = modelToSafetensors(mlaTwin(model));
    expect(() => modelFromSafetensors(mlaFile, model.config)).toThrow(/missing tensor "model.layers.0.self_attn.indexer.wq_b.weight" \[24, 16\]/);
  });

  it("its shapes are its init's, in order, and are src/attention/dsa.ts's", () => {
    const config = dsaModel().config;
    const made = attentionKind("dsa").init(new Random(0), config);
    expect(Object.entries(made).map(([k, t]) => [k, t.shape])).toEqual(Object.entries(attentionKind("dsa").shapes(config)));
    const { indexer, ...mla } = initDsa(new Random(0), config);
    expect(Object.values(made).map((t) => t.data)).toEqual([...Object.values(mla), ...Object.values(indexer)].map((t) => t!.data));
  });

  it("counts the indexer's parameters and its key in the cache", () => {
    for (const q_lora_rank of [16, 0]) {
      const model = dsaModel({ q_lora_rank });
      const c = model.config;
      const [D, HI, dI, L] = [c.hidden_size, c.index_n_heads, c.index_head_dim, c.num_hidden_layers];
      const indexer = HI * dI * (q_lora_rank || D) + dI * D + 2 * dI + HI * D;
      const [dsaCount, mlaCount] = [countParameters(c), countParameters(mlaTwin(model).config)];
      expect(dsaCount.total - mlaCount.total).toBe(L * indexer);
      expect(dsaCount.active - mlaCount.active).toBe(L * indexer);
      expect(dsaCount.parts.attention! - mlaCount.parts.attention!).toBe(L * indexer);
      expect(dsaCount.total).toBe([...modelParams(model).values()].reduce((n, t) => n + t.data.length, 0));
      expect([...weightShapes(c).keys()]).toEqual([...modelParams(model).keys()]);
      // MLA's latent and rotary key, plus the indexer's key: per token, per layer.
      expect(cacheNumbers(c, 10)).toBe(10 * L * (c.kv_lora_rank + c.qk_rope_head_dim + dI));
    }
  });

  it("validates the indexer's fields, each in one line with field, expectation and value", () => {
    const config = testConfig({ attention_kind: "dsa" }) as unknown as Record<string, unknown>;
    expect(configProblems({ ...config, index_topk: 0 })).toEqual(["index_topk: expected an integer >= 1, got 0"]);
    expect(configProblems({ ...config, index_n_heads: 1.5 })).toEqual(["index_n_heads: expected an integer >= 1, got 1.5"]);
    expect(configProblems({ ...config, index_head_dim: 4 })).toEqual([
      "index_head_dim: expected an integer >= qk_rope_head_dim=8 (its first qk_rope_head_dim features are rotated), got 4",
    ]);
    // Only a DSA layer rotates indexer features: other kinds do not read index_head_dim.
    expect(configProblems({ ...config, attention_kind: "mla", index_head_dim: 4 })).toEqual([]);
    // DSA's attention is MLA's: no hidden_size / heads constraint.
    expect(configProblems({ ...config, hidden_size: 36, num_attention_heads: 8 })).toEqual([]);
  });

  it("LoRA's q_proj and v_proj map onto its MLA, as on an mla layer", () => {
    const targets = loraTargets(dsaModel(), ["q_proj", "v_proj"]).map((t) => t.name);
    expect(targets).toContain("model.layers.0.self_attn.q_b_proj.weight");
    expect(targets).toContain("model.layers.2.self_attn.kv_b_proj.weight");
  });

  it("is reachable from the CLI's --attention and shows its selection in the step record", () => {
    expect(attentionOverride("dsa")).toEqual({ attention_kind: "dsa" });
    expect(attentionOverride("mla,dsa")).toEqual({ attention_kind: ["mla", "dsa"] });
    const record = stepRecord(dsaModel(), "x", prompt);
    expect(record.layers[0]!.attention).toBe("dsa");
    expect(record.layers[0]!.heatmap).toBeNull();
    expect(record.layers[0]!.dsa!.selected).toHaveLength(T);
    expect(record.layers[0]!.dsa!.selected[T - 1]!.filter((s) => s >= 0)).toHaveLength(3);
  });
});
