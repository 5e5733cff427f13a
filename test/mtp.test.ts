// The multi-token-prediction module (src/model/mtp.ts) and greedy speculative decoding with it
// (src/model/speculative.ts), on every backend: the module's logits against an independent host forward written
// here from the component functions, speculative tokens against plain greedy decoding, and the acceptance rate
// against known answers (a module built to copy the main model's next choice: 100 %; one that always drafts
// token 0: 0 %) and against a count made from one pass of the module over the finished sequence.
import { describe, expect, it } from "vitest";
import { createMlaCache, mla, type MlaWeights } from "../src/attention/mla.ts";
import { moeConfigOf, resolveConfig } from "../src/model/config.ts";
import { forward, forwardAsync } from "../src/model/forward.ts";
import { generate, generateAsync } from "../src/model/generate.ts";
import { createMtpCache, mtpForward, mtpForwardAsync } from "../src/model/mtp.ts";
import { countParameters, weightShapes } from "../src/model/params.ts";
import { preset } from "../src/model/presets.ts";
import { initModel, modelFromParams, modelFromSafetensors, modelParams, modelToSafetensors, type LayerWeights, type Model } from "../src/model/weights.ts";
import { moeConfig, moeLayer, type MoeWeights } from "../src/moe/layer.ts";
import { embedding, linear, rmsnorm } from "../src/ops.ts";
import { randn, Random } from "../src/random.ts";
import { stepRecord } from "../src/step/record.ts";
import { renderOutput, styleFor } from "../src/step/render.ts";
import { add, numel, reshape, type Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { startBackend } from "./backend-rows.ts";
import { MODEL_BACKENDS } from "./model-rows.ts";
import { argmaxRows, cli, nmse } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const ROWS = MODEL_BACKENDS;

const PROMPT = [256, 65, 108, 105, 99, 101, 32, 119, 97, 115, 32, 98, 101];
const seeded = initModel(testConfig({ num_nextn_predict_layers: 1, init_std: 0.3 }));

const times = (t: Tensor, a: number): Tensor => ({ shape: t.shape, data: t.data.map((v) => v * a) });

/** The layer with its attention and feed-forward outputs scaled by `a` (0: the layer adds nothing to the residual). */
function quiet(layer: LayerWeights, a: number): LayerWeights {
  const mlp = layer.mlp;
  const scaledMlp = "experts" in mlp
    ? { ...mlp, experts: { ...mlp.experts, down: times(mlp.experts.down, a) }, shared_experts: mlp.shared_experts && { ...mlp.shared_experts, down_proj: times(mlp.shared_experts.down_proj, a) } }
    : { ...mlp, down_proj: times(mlp.down_proj, a) };
  return { ...layer, self_attn: { ...layer.self_attn, o_proj: times(layer.self_attn.o_proj!, a) }, mlp: scaledMlp };
}

/**
 * The seeded model with its main layers scaled by `a`, and a module whose block adds nothing and whose eh_proj copies
 * one half of [enorm(Emb(t_(i+1))) ; hnorm(h_i)] (or is zero). At a = 0 the main model's choice after token t is a
 * function f(t) of t alone, so a module copying the embedding half predicts f(t_(i+1)), greedy's token i + 2, every
 * time; copying the hidden half it predicts f(t_i) = t_(i+1); a zero eh_proj gives zero logits, so token 0.
 */
function echo(a: number, copy: "embedding" | "hidden" | "zero"): Model {
  const D = seeded.config.hidden_size;
  const eh = new Float32Array(D * 2 * D);
  if (copy !== "zero") for (let i = 0; i < D; i++) eh[i * 2 * D + i + (copy === "hidden" ? D : 0)] = 1;
  const mtp = seeded.weights.mtp!;
  return {
    config: seeded.config,
    weights: { ...seeded.weights, layers: seeded.weights.layers.map((l) => quiet(l, a)), mtp: { ...mtp, eh_proj: { shape: [D, 2 * D], data: eh }, block: quiet(mtp.block, 0) } },
  };
}

/** The module from the component functions, on the host: [e ; h] row by row, then MLA and the MoE layer. */
function naiveMtp(model: Model, hidden: Tensor, next: number[]): Tensor {
  const { config: c, weights } = model;
  const w = weights.mtp!;
  const [T, D, eps] = [next.length, c.hidden_size, c.rms_norm_eps];
  const e = rmsnorm(embedding(w.embed_tokens ?? weights.embed_tokens, next), w.enorm, eps);
  const h = rmsnorm(hidden, w.hnorm, eps);
  const joined = new Float32Array(T * 2 * D);
  for (let t = 0; t < T; t++) {
    joined.set(e.data.subarray(t * D, (t + 1) * D), t * 2 * D);
    joined.set(h.data.subarray(t * D, (t + 1) * D), t * 2 * D + D);
  }
  let x = linear({ shape: [T, 2 * D], data: joined }, w.eh_proj);
  const b = w.block;
  const attnIn = reshape(rmsnorm(x, b.input_layernorm, eps), [1, T, D]);
  x = add(x, reshape(mla(attnIn, b.self_attn as unknown as MlaWeights, c, createMlaCache(c, c.mla_mode), undefined, c.mla_mode), [T, D]));
  x = add(x, moeLayer(rmsnorm(x, b.post_attention_layernorm, eps), b.mlp as MoeWeights, moeConfig(moeConfigOf(c))).out);
  return linear(rmsnorm(x, w.norm, eps), w.head ?? weights.lm_head);
}

/** The main model's RMSNorm(h_L) over `tokens` (the module's input), as the forward traces it. */
function mainHidden(model: Model, tokens: number[]): Tensor {
  const trace = createTrace("norm");
  forward(model, tokens, { trace });
  return trace.tensors.get("norm") as Tensor;
}

/**
 * Drafts and acceptances of greedy speculative decoding, counted from one pass of the module over the finished
 * sequence g (prompt + greedy tokens): at each verify step with g_m the last token, the draft is the module's
 * choice at position m - 1 (which predicts g_(m+1)); accepted, the step advances by two, else by one.
 */
function expectedDrafts(model: Model, prompt: number[], greedy: number[]): { drafted: number; accepted: number } {
  const g = [...prompt, ...greedy];
  const logits = mtpForward(model, mainHidden(model, g.slice(0, -1)), g.slice(1)).logits;
  const choice = argmaxRows(logits);
  let [drafted, accepted] = [0, 0];
  for (let m = prompt.length; m < g.length - 1; drafted++) {
    const ok = choice[m - 1] === g[m + 1];
    accepted += ok ? 1 : 0;
    m += ok ? 2 : 1;
  }
  return { drafted, accepted };
}

describe.each(ROWS)("the MTP module on $name", (row) => {
  const started = startBackend(row, (b) => b.dispose());

  it("gives the reference's logits, and the same all at once as position by position through its cache", async (context) => {
    const b = started.ready(context);
    const hidden = mainHidden(seeded, PROMPT);
    const next = [...PROMPT.slice(1), 42];
    const ref = mtpForward(seeded, hidden, next);
    if (row.name === "reference") expect(nmse(ref.logits, naiveMtp(seeded, hidden, next))).toBeLessThan(1e-12);
    const mine = await mtpForwardAsync(seeded, hidden, next, { backend: b });
    expect(nmse(mine.logits, ref.logits)).toBeLessThan(1e-7);
    expect(argmaxRows(mine.logits)).toEqual(argmaxRows(ref.logits));
    const cache = createMtpCache(seeded, { backend: b });
    const D = seeded.config.hidden_size;
    const rows: Float32Array[] = [];
    for (const [start, end] of [[0, 5], [5, 6], [6, 13]]) {
      const part = { shape: [end! - start!, D], data: hidden.data.slice(start! * D, end! * D) };
      rows.push((await mtpForwardAsync(seeded, part, next.slice(start, end), { backend: b, cache })).logits.data);
    }
    expect(cache.length).toBe(13);
    expect(nmse({ data: Float32Array.from(rows.flatMap((r) => Array.from(r))) }, mine.logits)).toBeLessThan(1e-10);
  });

  it.for([
    ["the seeded model", () => seeded],
    ["a module right a third of the time", () => echo(0.1, "embedding")],
    ["a module that copies the next choice", () => echo(0, "embedding")],
  ] as const)("speculative decoding gives greedy's tokens and the reference's acceptances: %s", async ([, make], context) => {
    const b = started.ready(context);
    const model = make();
    const options = { maxTokens: 24, stopToken: null, backend: b };
    const plain = await generateAsync(model, PROMPT, options);
    const spec = await generateAsync(model, PROMPT, { ...options, speculative: "mtp" });
    expect(spec.tokens).toEqual(plain.tokens);
    expect(spec.stopReason).toBe(plain.stopReason);
    const { drafted, accepted } = expectedDrafts(model, PROMPT, plain.tokens);
    expect(spec.speculative).toEqual({ drafted, accepted, acceptanceRate: accepted / drafted });
  });
});

describe("the acceptance rate", () => {
  it("is 100 % for a module that copies the main model's next choice, 0 % for one that drafts what greedy never picks", () => {
    const options = { maxTokens: 24, stopToken: null, speculative: "mtp" } as const;
    // 24 tokens: one from the prompt's forward, then 23 in verify steps of two, the last emitting one.
    expect(generate(echo(0, "embedding"), PROMPT, options).speculative).toEqual({ drafted: 12, accepted: 12, acceptanceRate: 1 });
    // The other half of eh_proj's input: the hidden state of position i, whose choice is t_(i+1), not t_(i+2).
    expect(generate(echo(0, "hidden"), PROMPT, options).speculative!.accepted).toBe(0);
    const zero = echo(0, "zero");
    expect(generate(zero, PROMPT, { ...options, speculative: undefined }).tokens).not.toContain(0);
    expect(generate(zero, PROMPT, options).speculative).toEqual({ drafted: 23, accepted: 0, acceptanceRate: 0 });
  });

  it("stops as greedy decoding does: at the stop token, at maxTokens, at the context, with the cache greedy leaves", () => {
    const model = echo(0, "embedding");
    for (const [maxTokens, stopToken, context] of [[0, null, 64], [1, null, 64], [2, null, 64], [7, null, 64], [30, null, 20], [30, null, 21], [30, null, 14], [30, null, 13]] as const) {
      const m = { ...model, config: { ...model.config, max_position_embeddings: context } };
      const plain = generate(m, PROMPT, { maxTokens, stopToken });
      const spec = generate(m, PROMPT, { maxTokens, stopToken, speculative: "mtp" });
      expect([spec.tokens, spec.stopReason, spec.cache.length], `${maxTokens} ${context}`).toEqual([plain.tokens, plain.stopReason, plain.cache.length]);
    }
    const plain = generate(model, PROMPT, { maxTokens: 20, stopToken: null }).tokens;
    for (const at of [0, 1, 2, 5]) {
      const stopToken = plain[at]!;
      const spec = generate(model, PROMPT, { maxTokens: 20, stopToken, speculative: "mtp" });
      expect([spec.tokens, spec.stopReason]).toEqual([plain.slice(0, plain.indexOf(stopToken) + 1), "eos"]);
    }
  });

  it("leaves the main cache as greedy decoding leaves it: a rejected draft's position is dropped", () => {
    for (const model of [seeded, echo(0.1, "embedding"), echo(0, "embedding")]) {
      const plain = generate(model, PROMPT, { maxTokens: 16, stopToken: null });
      const spec = generate(model, PROMPT, { maxTokens: 16, stopToken: null, speculative: "mtp" });
      expect(spec.cache.length).toBe(plain.cache.length);
      const last = [plain.tokens.at(-1)!];
      expect(forward(model, last, { cache: spec.cache }).logits.data).toEqual(forward(model, last, { cache: plain.cache }).logits.data);
    }
  });

  it("runs a DSA layer too: its indexer keys of a rejected draft are dropped with the position", () => {
    const model = initModel(testConfig({ num_nextn_predict_layers: 1, attention_kind: ["mla", "dsa", "mla"], index_n_heads: 2, index_head_dim: 12, index_topk: 3 }));
    const plain = generate(model, PROMPT, { maxTokens: 16, stopToken: null });
    const spec = generate(model, PROMPT, { maxTokens: 16, stopToken: null, speculative: "mtp" });
    expect(spec.tokens).toEqual(plain.tokens);
    expect(spec.speculative!.drafted).toBeGreaterThan(spec.speculative!.accepted); // some draft was rejected
    const last = [plain.tokens.at(-1)!];
    expect(forward(model, last, { cache: spec.cache }).logits.data).toEqual(forward(model, last, { cache: plain.cache }).logits.data);
  });

  it("refuses what it cannot do in one line", () => {
    const spec = { maxTokens: 4, speculative: "mtp" } as const;
    expect(() => generate(seeded, PROMPT, { ...spec, temperature: 0.7 })).toThrow(/^temperature: expected 0 with speculative decoding .*got 0\.7$/);
    expect(() => generate(seeded, PROMPT, { ...spec, interventions: [{ hooks: {} }] })).toThrow(/^interventions: expected none with speculative decoding/);
    expect(() => generate(seeded, PROMPT, { maxTokens: 4, speculative: "eagle" as "mtp" })).toThrow(/^speculative: expected "mtp" .*got "?eagle"?$/);
    expect(() => generate(initModel(testConfig()), PROMPT, spec)).toThrow(/^model: expected a model with a multi-token-prediction layer .*got "num_nextn_predict_layers 0"$/);
    const sparse = initModel(testConfig({ num_nextn_predict_layers: 1, attention_kind: ["mla", "sparse", "mla"] }));
    expect(() => generate(sparse, PROMPT, spec)).toThrow(/^speculative: expected a model whose every layer's cache can drop a rejected draft .*got "?layer 1 sparse"?$/);
    expect(() => mtpForward(seeded, { shape: [3, 5], data: new Float32Array(15) }, [1, 2, 3])).toThrow(/^hidden: expected shape \[3, 32\] .*got \[3, 5\]$/);
    expect(() => resolveConfig({ ...testConfig(), num_nextn_predict_layers: 2 })).toThrow(/num_nextn_predict_layers: expected 0 or 1 \(one multi-token-prediction depth; chained depths are not implemented\), got 2/);
  });
});

describe("the MTP layer's weights", () => {
  const L = seeded.config.num_hidden_layers;

  it("are named as DeepSeek's checkpoints name them, drawn after the main weights, and round-trip through safetensors", () => {
    const names = [...modelParams(seeded).keys()];
    const mtpNames = names.filter((n) => n.startsWith(`model.layers.${L}.`));
    expect(mtpNames.slice(0, 4)).toEqual([`model.layers.${L}.enorm.weight`, `model.layers.${L}.hnorm.weight`, `model.layers.${L}.eh_proj.weight`, `model.layers.${L}.input_layernorm.weight`]);
    expect(mtpNames).toContain(`model.layers.${L}.mlp.experts.7.down_proj.weight`);
    expect(mtpNames.at(-1)).toBe(`model.layers.${L}.shared_head.norm.weight`);
    // Every weight the list names, except the module's optional copies of the embedding and the head.
    expect(names).toEqual([...weightShapes(seeded.config)].filter(([, e]) => !e.optional).map(([n]) => n));
    const without = modelParams(initModel({ ...seeded.config, num_nextn_predict_layers: 0 }));
    for (const [name, t] of without) expect(modelParams(seeded).get(name)!.data, name).toEqual(t.data);
    const back = modelFromSafetensors(modelToSafetensors(seeded));
    for (const [name, t] of modelParams(seeded)) expect(modelParams(back).get(name)!.data, name).toEqual(t.data);
  });

  it("use the checkpoint's own copies of the embedding and the head when present; without any MTP tensor the model has none", () => {
    const params = modelParams(seeded);
    const rng = new Random(3);
    const [V, D] = [seeded.config.vocab_size, seeded.config.hidden_size];
    params.set(`model.layers.${L}.embed_tokens.weight`, randn(rng, [V, D], 0.3));
    params.set(`model.layers.${L}.shared_head.head.weight`, randn(rng, [V, D], 0.3));
    const own = modelFromParams(seeded.config, params);
    expect(own.weights.mtp!.head).toBe(params.get(`model.layers.${L}.shared_head.head.weight`));
    const hidden = mainHidden(seeded, PROMPT);
    const next = [...PROMPT.slice(1), 42];
    const logits = mtpForward(own, hidden, next).logits;
    expect(nmse(logits, naiveMtp(own, hidden, next))).toBeLessThan(1e-12);
    expect(nmse(logits, mtpForward(seeded, hidden, next).logits)).toBeGreaterThan(1e-3);

    const mainOnly = new Map([...modelParams(seeded)].filter(([n]) => !n.startsWith(`model.layers.${L}.`)));
    expect(modelFromParams(seeded.config, mainOnly).weights.mtp).toBeUndefined();
    const partial = new Map(modelParams(seeded));
    partial.delete(`model.layers.${L}.eh_proj.weight`);
    expect(() => modelFromParams(seeded.config, partial)).toThrow(`missing tensor "model.layers.${L}.eh_proj.weight" [32, 64]`);
  });

  it("are counted apart: DeepSeek-V3's 671B main weights and its 13.46B MTP layer, 685B as released with FP8 scales", () => {
    const v3 = countParameters(preset("deepseek-v3"));
    expect(v3.total).toBe(671_026_419_200);
    // The MTP layer by hand: eh_proj 7168×14336, three norms, MLA, 256 routed + 1 shared experts of 3×2048×7168,
    // the router, the block's two norms, and the release's copies of the embedding and the head (129280×7168 each).
    const [D, V, F] = [7168, 129280, 2048];
    const attention = 1536 * D + 1536 + 128 * 192 * 1536 + 576 * D + 512 + 128 * 256 * 512 + D * 128 * 128;
    const byHand = 2 * D * D + 3 * D + attention + 257 * 3 * F * D + 256 * D + 256 + 2 * D + 2 * V * D;
    expect(v3.mtp).toBe(byHand);
    expect(v3.mtp).toBe(13_463_426_304);
    // "685B" as released: the weights and the FP8 checkpoint's float32 scale per 128×128 block of every attention and
    // expert projection (not eh_proj, the router, the embedding or the head).
    let scales = 0;
    for (const [name, { shape }] of weightShapes(preset("deepseek-v3"))) {
      if (shape.length === 2 && /\.(self_attn|mlp)\./.test(name) && !name.includes(".mlp.gate.")) scales += Math.ceil(shape[0]! / 128) * Math.ceil(shape[1]! / 128);
    }
    expect(v3.total + v3.mtp + scales).toBe(684_531_386_000);
    const tiny = countParameters(seeded.config);
    expect(tiny.total).toBe(countParameters({ ...seeded.config, num_nextn_predict_layers: 0 }).total);
    expect(tiny.mtp).toBe([...modelParams(seeded)].filter(([n]) => n.startsWith(`model.layers.${L}.`)).reduce((a, [, t]) => a + numel(t.shape), 0) + 2 * 260 * 32);
  });
});

describe("the stepper and the command line", () => {
  it("step shows the module's prediction of the token after next, fed the main model's greedy choice", () => {
    const record = stepRecord(seeded, "Alice", PROMPT);
    const V = seeded.config.vocab_size;
    const T = PROMPT.length;
    const next = argmaxRows(forward(seeded, PROMPT).logits)[T - 1]!;
    const logits = naiveMtp(seeded, mainHidden(seeded, PROMPT), [...PROMPT.slice(1), next]);
    expect(record.mtp!.after.id).toBe(next);
    expect(record.mtp!.next[0]!.id).toBe(argmaxRows({ shape: [1, V], data: logits.data.subarray((T - 1) * V) })[0]);
    expect(record.mtp!.of).toBe(T - 2);
    expect(record.model.mtpParameters).toBe(countParameters(seeded.config).mtp);
    expect(renderOutput(record, styleFor(false))).toContain(`token after next, by the MTP module given next = ${record.mtp!.after.label}:`);
    expect(stepRecord(initModel(testConfig()), "Alice", PROMPT).mtp).toBeNull();
  });

  it("generate --speculative mtp prints greedy's text and the acceptance rate; bad uses exit with one line", async () => {
    const dir = await import("node:fs/promises").then((fs) => fs.mkdtemp(`${(process.env.TMPDIR ?? "/tmp")}/mtp-`));
    const config = `${dir}/config.json`;
    await import("node:fs/promises").then((fs) => fs.writeFile(config, JSON.stringify({ hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_nextn_predict_layers: 1, init_std: 0.3 })));
    const args = ["generate", "--config", config, "--prompt", "Alice was", "--max-tokens", "10"];
    const plain = JSON.parse((await cli(...args, "--json")).out);
    const spec = await cli(...args, "--json", "--speculative", "mtp");
    expect(JSON.parse(spec.out).tokens).toEqual(plain.tokens);
    expect(Object.keys(JSON.parse(spec.out).speculative)).toEqual(["drafted", "accepted", "acceptanceRate"]);
    const summary = await cli(...args, "--speculative", "mtp");
    expect(summary.err).toMatch(/^10 tokens · .* · MTP drafts accepted \d+ of \d+ \(\d+\.\d%\) · stopped at --max-tokens$/m);
    const step = JSON.parse((await cli("step", "--config", config, "--prompt", "Alice", "--json")).out);
    expect(step.mtp.next).toHaveLength(5);
    for (const [extra, message] of [
      [["--speculative", "eagle"], '--speculative: expected mtp (the multi-token-prediction layer drafts), got "eagle"'],
      [["--speculative", "mtp", "--temperature", "0.5"], '--speculative: greedy only, expected no --temperature (or 0), got "0.5"'],
    ] as const) {
      const r = await cli(...args, ...extra);
      expect([r.code, r.err.trim().split("\n").length, r.err]).toEqual([2, 1, expect.stringContaining(message)]);
    }
    const none = await cli("generate", "--weights", "random", "--prompt", "A", "--speculative", "mtp");
    expect([none.code, none.err.trim()]).toEqual([1, expect.stringMatching(/^tinyseek generate: model: expected a model with a multi-token-prediction layer .*got "num_nextn_predict_layers 0"$/)]);
  });
});
