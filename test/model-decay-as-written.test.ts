// Decay "as-written" (spec/attention.md) in the one forward: the cache holds each key scaled by γ^j
// (src/model/decay-layer.ts) and the backend's attention runs over it (src/model/layers.ts `multiHead`). On the
// reference every layer's output and traced probabilities must be src/attention/decay.ts's `decayAttention` on the
// layer's own input, bit for bit, in prefill, chunked and token-by-token decode.
import { describe, expect, it } from "vitest";
import { decayAttention } from "../src/attention/decay.ts";
import { mergeHeads, splitHeads } from "../src/attention/heads.ts";
import { yarnOptions } from "../src/attention/mla.ts";
import { createCache, dropsPositions, type LayerCache } from "../src/model/cache.ts";
import { configProblems, headDim, type ModelConfig } from "../src/model/config.ts";
import { forward, forwardBatch } from "../src/model/forward.ts";
import { generate } from "../src/model/generate.ts";
import { decayGammas } from "../src/model/mha.ts";
import { hookPoints } from "../src/model/point-names.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { linear } from "../src/ops.ts";
import { applyRope, ropeFrequencies } from "../src/rope.ts";
import type { Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { thrown } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const prompt = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110, 32, 102, 111, 120]; // <bos>The quick brown fox

/** An as-written model (testConfig has YaRN on: the module's 1/√Dh, not mha's mscale²/√Dh, must show). */
const asWritten = (overrides: Partial<ModelConfig> = {}) =>
  initModel(testConfig({ attention_kind: "decay", decay_mode: "as-written", init_std: 0.3, ...overrides }));

/** Layer l of the old host path: src/attention/decay.ts over the layer's input x [N, D] at positions 0 … N - 1. */
function moduleLayer(model: Model, l: number, x: Tensor): { out: Float32Array; probs: Tensor } {
  const c = model.config;
  const [H, Hkv, Dh, N] = [c.num_attention_heads, c.num_key_value_heads, headDim(c), x.shape[0]!];
  const w = model.weights.layers[l]!.self_attn;
  const x3 = { shape: [1, N, c.hidden_size], data: x.data };
  const freqs = ropeFrequencies({ dim: Dh, theta: c.rope_theta, yarn: yarnOptions(c) });
  const positions = Array.from({ length: N }, (_, t) => t);
  const [q] = splitHeads(linear(x3, w.q_proj!), H, [Dh]);
  const [k] = splitHeads(linear(x3, w.k_proj!), Hkv, [Dh]);
  const [v] = splitHeads(linear(x3, w.v_proj!), Hkv, [Dh]);
  const result = decayAttention(applyRope(q!, positions, freqs), applyRope(k!, positions, freqs), v!, { gamma: decayGammas(c), mode: "as-written" });
  return { out: linear(mergeHeads(result.out), w.o_proj!).data, probs: result.probs };
}

/** Rows [from, from + Tq) and keys [0, from + Tq) of probabilities [1, H, N, N]: what a chunk's trace holds. */
function chunkProbs(probs: Tensor, from: number, Tq: number): Float32Array {
  const [H, N] = [probs.shape[1]!, probs.shape[2]!];
  const Tk = from + Tq;
  const out = new Float32Array(H * Tq * Tk);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < Tq; i++) out.set(probs.data.subarray((h * N + from + i) * N, (h * N + from + i) * N + Tk), (h * Tq + i) * Tk);
  }
  return out;
}

const concat = (parts: Float32Array[]) => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
};

/**
 * Runs `tokens` through one cache in the chunks `sizes` and checks every layer's output and probabilities against
 * the module on that run's own layer inputs, bit for bit.
 */
function expectModuleNumbers(model: Model, tokens: number[], sizes: number[], capacity = 0) {
  const L = model.config.num_hidden_layers;
  const cache = createCache(model.config, { capacity });
  const [ins, outs] = [Array.from({ length: L }, () => [] as Float32Array[]), Array.from({ length: L }, () => [] as Float32Array[])];
  const probs: { from: number; Tq: number; data: Float32Array[] }[] = [];
  let from = 0;
  for (const size of sizes) {
    const trace = createTrace("layers.*.attn.in,layers.*.attn.out,layers.*.attn.probs");
    forward(model, tokens.slice(from, from + size), { cache, trace });
    for (let l = 0; l < L; l++) {
      ins[l]!.push(trace.tensors.get(`layers.${l}.attn.in`)!.data as Float32Array);
      outs[l]!.push(trace.tensors.get(`layers.${l}.attn.out`)!.data as Float32Array);
      expect(trace.tensors.get(`layers.${l}.attn.probs`)!.shape).toEqual([model.config.num_attention_heads, size, from + size]);
    }
    probs.push({ from, Tq: size, data: Array.from({ length: L }, (_, l) => trace.tensors.get(`layers.${l}.attn.probs`)!.data as Float32Array) });
    from += size;
  }
  expect(cache.length).toBe(tokens.length);
  for (let l = 0; l < L; l++) {
    const own = moduleLayer(model, l, { shape: [tokens.length, model.config.hidden_size], data: concat(ins[l]!) });
    expect(concat(outs[l]!), `layer ${l} output`).toEqual(own.out);
    for (const chunk of probs) expect(chunk.data[l], `layer ${l} probs from ${chunk.from}`).toEqual(chunkProbs(own.probs, chunk.from, chunk.Tq));
  }
  return cache;
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((worst, v, i) => Math.max(worst, Math.abs(v - b[i]!)), 0);

describe("decay as-written on the device", () => {
  it("runs on the device, with scores, probs and heads points", () => {
    const c = asWritten().config;
    expect(dropsPositions(c, 1)).toBe(true);
    expect(hookPoints(c).filter((p) => p.startsWith("layers.1.attn."))).toEqual([
      "layers.1.attn.in", "layers.1.attn.scores", "layers.1.attn.probs", "layers.1.attn.heads", "layers.1.attn.out", "layers.1.attn.residual",
    ]);
  });

  it.each([1, 2, 7, 20])("prefill of %i tokens is the module on each layer's input, outputs and probabilities bit for bit", (T) => {
    expectModuleNumbers(asWritten(), prompt.slice(0, T), [T]);
  });

  it.each([
    ["chunks that cross the cache's growth (2 → 7 → 14 → 28 rows)", [2, 5, 1, 6, 3, 3], 0],
    ["token by token", Array<number>(prompt.length).fill(1), 0],
    ["chunks into a cache sized at once", [3, 9, 8], prompt.length],
  ] as const)("decode through the cache is the module, bit for bit: %s", (_, sizes, capacity) => {
    expectModuleNumbers(asWritten(), prompt, [...sizes], capacity);
  });

  it("with RetNet's per-head gammas (a kv head per query head) and with one gamma over shared kv heads", () => {
    expectModuleNumbers(asWritten({ decay_gamma: "retnet" }), prompt, [5, 1, 1, 13]);
    expectModuleNumbers(asWritten({ num_key_value_heads: 2, decay_gamma: 0.8 }), prompt, [5, 1, 1, 13]);
    expectModuleNumbers(asWritten({ num_key_value_heads: 1, decay_gamma: 0.9 }), prompt, [12, 8]);
  });

  it("keeps the material's flaw: far keys underflow to exactly 0 in float32, as in the module", () => {
    const model = asWritten({ decay_gamma: 0.1 });
    const tokens = Array.from({ length: 60 }, (_, t) => prompt[t % prompt.length]!);
    const cache = expectModuleNumbers(model, tokens, [30, 1, 1, 28]);
    const layer = cache.layers[0] as LayerCache<Tensor>;
    const [Hkv, rows, Dh] = layer.keys!.shape as [number, number, number];
    const row = (g: number, j: number) => layer.keys!.data.subarray((g * rows + j) * Dh, (g * rows + j + 1) * Dh);
    for (let g = 0; g < Hkv; g++) {
      expect(row(g, 1).some((v) => v !== 0)).toBe(true);
      for (let j = 50; j < 60; j++) expect(row(g, j).every((v) => v === 0), `kv head ${g} key ${j}`).toBe(true); // 0.1^50·k < 2^-149
    }
  });

  it("its hook points: identity hooks change nothing, scores are q_i·(γ^j·k_j)/√Dh, a heads replacement flows on", () => {
    const model = asWritten();
    const T = prompt.length;
    const plain = forward(model, prompt).logits.data;
    const identity = forward(model, prompt, { hooks: { "layers.*.attn.scores": () => {}, "layers.*.attn.probs": (p) => p, "layers.*.attn.heads": (h) => h } });
    expect(identity.logits.data).toEqual(plain);

    const c = model.config;
    const [H, Dh] = [c.num_attention_heads, headDim(c)];
    const trace = createTrace("layers.1.attn.in,layers.1.attn.scores,layers.1.attn.probs");
    forward(model, prompt, { trace });
    const scores = trace.tensors.get("layers.1.attn.scores")!;
    expect(scores.shape).toEqual([H, T, T]);
    // By hand: rotated q and k from the layer's input, each key scaled by 0.95^j, no YaRN factor.
    const w = model.weights.layers[1]!.self_attn;
    const x3 = { shape: [1, T, c.hidden_size], data: trace.tensors.get("layers.1.attn.in")!.data as Float32Array };
    const freqs = ropeFrequencies({ dim: Dh, theta: c.rope_theta, yarn: yarnOptions(c) });
    const positions = Array.from({ length: T }, (_, t) => t);
    const q = applyRope(splitHeads(linear(x3, w.q_proj!), H, [Dh])[0]!, positions, freqs).data;
    const k = applyRope(splitHeads(linear(x3, w.k_proj!), H, [Dh])[0]!, positions, freqs).data;
    for (const [h, i, j] of [[0, T - 1, 0], [2, T - 1, T - 1], [3, 9, 4], [1, 3, 5]] as const) {
      let dot = 0;
      for (let d = 0; d < Dh; d++) dot += q[(h * T + i) * Dh + d]! * k[(h * T + j) * Dh + d]! * 0.95 ** j;
      const got = scores.data[(h * T + i) * T + j]!;
      if (j > i) expect(got).toBe(-Infinity);
      else expect(Math.abs(got - dot / Math.sqrt(Dh))).toBeLessThan(1e-5 * Math.max(1, Math.abs(got)));
    }
    // The probabilities are the softmax of those scores, row by row.
    const probs = trace.tensors.get("layers.1.attn.probs")!.data;
    const last = Array.from(scores.data.subarray((T - 1) * T, T * T)); // head 0, the last query
    const top = Math.max(...last);
    const sum = last.reduce((s, v) => s + Math.exp(v - top), 0);
    last.forEach((v, j) => expect(Math.abs(probs[(T - 1) * T + j]! - Math.exp(v - top) / sum)).toBeLessThan(1e-6));

    const zero = (t: Tensor) => ({ shape: t.shape, data: new Float32Array(t.data.length) });
    const out = createTrace("layers.1.attn.out");
    const zeroed = forward(model, prompt, { trace: out, hooks: { "layers.1.attn.heads": zero } });
    expect(out.tensors.get("layers.1.attn.out")!.data.every((v) => v === 0)).toBe(true); // o_proj of zeros, no bias
    expect(maxDiff(zeroed.logits.data, plain)).toBeGreaterThan(1e-3);
    // A replacement of the probabilities is applied to the values: uniform over the visible keys, the keys no longer
    // matter, and the model is the plain mha model with the same weights under the same hook.
    const uniform = (p: Tensor) => ({ shape: p.shape, data: p.data.map((_, n) => (n % T <= Math.floor(n / T) % T ? 1 / ((Math.floor(n / T) % T) + 1) : 0)) });
    const mha = { ...model, config: { ...c, attention_kind: "mha" as const } };
    const averaged = forward(model, prompt, { hooks: { "layers.*.attn.probs": uniform } }).logits.data;
    expect(averaged).toEqual(forward(mha, prompt, { hooks: { "layers.*.attn.probs": uniform } }).logits.data);
    expect(maxDiff(averaged, plain)).toBeGreaterThan(1e-4);
  });

  it("a forward that fails half-way leaves the cache usable, with the results of a clean run", () => {
    const model = asWritten();
    const clean = createCache(model.config);
    forward(model, prompt.slice(0, 5), { cache: clean });
    const want = forward(model, prompt.slice(5), { cache: clean }).logits.data;

    const cache = createCache(model.config);
    forward(model, prompt.slice(0, 5), { cache });
    // Layers 0 and 1 write other tokens' scaled keys at positions 5 … 10 before layer 2's hook throws.
    const stop = { "layers.2.attn.in": () => { throw new Error("stop"); } };
    expect(() => forward(model, [97, 98, 99, 100, 101, 102], { cache, hooks: stop })).toThrow("stop");
    expect(cache.broken).toBeUndefined();
    expect(cache.length).toBe(5);
    expect(forward(model, prompt.slice(5), { cache }).logits.data).toEqual(want);
  });

  it("speculative decoding accepts it and gives plain greedy decoding's tokens and cache", () => {
    const model = asWritten({ num_nextn_predict_layers: 1 });
    const plain = generate(model, prompt.slice(0, 6), { maxTokens: 16, stopToken: null });
    const spec = generate(model, prompt.slice(0, 6), { maxTokens: 16, stopToken: null, speculative: "mtp" });
    expect(spec.tokens).toEqual(plain.tokens);
    expect(spec.speculative!.drafted).toBeGreaterThan(spec.speculative!.accepted); // some draft was rejected
    const last = [plain.tokens.at(-1)!];
    expect(forward(model, last, { cache: spec.cache }).logits.data).toEqual(forward(model, last, { cache: plain.cache }).logits.data);
  });

  it("a batch of two sequences of different lengths is each alone", () => {
    const model = asWritten();
    const V = model.config.vocab_size;
    const [a, b] = [prompt.slice(0, 9), prompt.slice(3, 7)];
    const caches = [createCache(model.config), createCache(model.config)];
    const batch = forwardBatch(model, [a, [...b, 0, 0, 0, 0, 0]], [9, 4], { caches }).logits.data;
    expect(batch.subarray(0, 9 * V)).toEqual(forward(model, a).logits.data);
    expect(batch.subarray(9 * V, 13 * V)).toEqual(forward(model, b).logits.data);
  });

  it("refuses per-head gammas over shared kv heads with the config, in one line naming the field", () => {
    expect(thrown(() => asWritten({ decay_gamma: "retnet", num_key_value_heads: 2 }))).toBe(
      'config has 1 problem: decay_gamma: expected one gamma for every head when kv heads are shared (decay_mode "as-written", 2 kv heads for 4 heads), got "retnet"',
    );
    expect(configProblems({ ...testConfig({ attention_kind: "mha", decay_mode: "as-written", decay_gamma: "retnet", num_key_value_heads: 2 }) })).toEqual([]); // no decay layer
  });
});
