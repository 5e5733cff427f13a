// NSA (src/attention/sparse.ts) as a model attention kind on the device (src/model/sparse-layer.ts): projections and
// the three branches on the backend's operations, the selection and the gated sum on the host. Checked against the
// module itself and against the module with its selected branch through the fused attention, which is what the device
// path computes.
import { describe, expect, it } from "vitest";
import { attention } from "../src/attention/attention.ts";
import { mergeHeads } from "../src/attention/heads.ts";
import { createSparseState, gatedSum, sparseAttentionTraced, type SparseWeights } from "../src/attention/sparse.ts";
import { reference, type Kernels } from "../src/kernels.ts";
import { hookedKernels } from "../src/model-adapters.ts";
import { sparseConfig } from "../src/model/attention.ts";
import { cacheNumbers, cacheValues, createCache, dropsPositions, releaseCache, type LayerCache } from "../src/model/cache.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { forward, forwardBatch } from "../src/model/forward.ts";
import { generate } from "../src/model/generate.ts";
import { hookPoints } from "../src/model/point-names.ts";
import type { HookContext } from "../src/model/points.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { quantizeModel } from "../src/quant/model.ts";
import { ablateHeads } from "../src/research/heads.ts";
import { numel, type Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { relativeError } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

// <bos> and 27 bytes: 7 selection blocks of l' = 4, more than n = 4, and the window w = 4 slides.
const prompt = [256, ...Array.from("The quick brown fox jumps o", (ch) => ch.charCodeAt(0))];
const T = prompt.length;

/** Two kv groups of two heads; l = 4, d = 2, l' = 4, w = 4 (testConfig) and n = 4: one block chosen by score beside
 *  block 0 and the two most recent. init_std 0.3 keeps it lively. */
const sparseModel = (overrides: Partial<ModelConfig> = {}) =>
  initModel(testConfig({ attention_kind: "sparse", num_key_value_heads: 2, sparse_select_count: 4, init_std: 0.3, ...overrides }));

/** [Hkv, T, n] selections as lists per group and query, the -1 padding left out. */
const groups = (t: { shape: readonly number[]; data: ArrayLike<number> }) => {
  const [G, Tq, n] = t.shape as [number, number, number];
  return Array.from({ length: G }, (_, g) => Array.from({ length: Tq }, (_, q) => Array.from(t.data).slice((g * Tq + q) * n, (g * Tq + q + 1) * n).filter((j) => j >= 0)));
};

/**
 * The module on a layer's traced input, and its output once more with the selected branch's attention through
 * `attention` (src/attention/attention.ts: float64 scores, one rounding) under each group's block mask, where the
 * module's masked attention rounds q·kᵀ, the scaled scores and the probabilities to float32 on the way.
 */
function moduleLayer(model: Model, l: number, x: Tensor, kernels: Kernels = reference) {
  const c = sparseConfig(model.config);
  const weights = model.weights.layers[l]!.self_attn as unknown as SparseWeights;
  const [Tq, D] = x.shape as [number, number];
  const state = createSparseState(c);
  const { out, trace } = sparseAttentionTraced({ shape: [1, Tq, D], data: x.data }, weights, c, state, kernels);
  const { num_attention_heads: H, num_key_value_heads: Hkv, sparse_select_block: size, sparse_select_count: n } = model.config;
  const [G, Dh] = [H / Hkv, trace.queries.shape[3]!];
  const plane = (t: Tensor, from: number, count: number) => ({ shape: [1, count, Tq, Dh], data: t.data.slice(from * Tq * Dh, (from + count) * Tq * Dh) });
  const fused = new Float32Array(H * Tq * Dh);
  for (let g = 0; g < Hkv; g++) {
    const mask = new Uint8Array(Tq * Tq);
    for (let t = 0; t < Tq; t++) {
      for (const j of trace.selected.subarray((g * Tq + t) * n, (g * Tq + t + 1) * n)) {
        for (let p = j * size; j >= 0 && p < (j + 1) * size && p <= t; p++) mask[t * Tq + p] = 1;
      }
    }
    const o = attention(plane(trace.queries, g * G, G), plane(state.selectedKeys, g, 1), plane(state.selectedValues, g, 1), { mask: { shape: [Tq, Tq], data: mask }, scale: 1 / Math.sqrt(Dh) });
    fused.set(o.out.data, g * G * Tq * Dh);
  }
  const heads = gatedSum(trace.gates, trace.branches.compressed, { shape: [1, H, Tq, Dh], data: fused }, trace.branches.window);
  return { out, trace, heads, fusedOut: kernels.linear(mergeHeads(heads), weights.o_proj) };
}

const tracedLayer = (model: Model, tokens: readonly number[], l: number) => {
  const trace = createTrace(`layers.${l}.attn.*`);
  forward(model, tokens, { trace });
  return (name: string) => trace.tensors.get(`layers.${l}.attn.${name}`)!;
};

describe("sparse (NSA) as a model attention kind, on the device", () => {
  it("runs on the device and keeps its state in the layer's device cache: selected keys and values, the window bounded", () => {
    const model = sparseModel();
    const c = model.config;
    const cache = createCache(c);
    forward(model, prompt, { cache });
    const layer = cache.layers[0] as LayerCache<Tensor>;
    expect(layer.keys!.shape).toEqual([2, layer.rows, 8]); // [Hkv, rows, Dh]
    expect(layer.rows).toBeGreaterThanOrEqual(T);
    expect(layer.sparse!.position).toBe(T);
    expect(layer.sparse!.windowKeys!.shape).toEqual([2, c.sparse_window, 8]); // the last w positions: a ring [Hkv, w, Dh]
    // The compressed branch on the device too: every position's raw keys and values beside the cache's, and a row for
    // every block the cache's rows can end, floor((rows - l) / d) + 1.
    expect(layer.blocks!.rawKeys.shape).toEqual([2, layer.rows, 8]);
    expect(layer.blocks!.rawValues.shape).toEqual([2, layer.rows, 8]);
    expect(layer.blocks!.rows).toBe(Math.floor((layer.rows - c.sparse_block) / c.sparse_stride) + 1);
    expect(layer.blocks!.keys.shape).toEqual([2, layer.blocks!.rows, 8]);
    releaseCache(cache);
    expect(layer.sparse).toBeUndefined();
    expect(layer.blocks).toBeUndefined();
  });

  it("counts in cacheNumbers what its cache holds (a cache of exactly T rows after T tokens)", () => {
    const model = sparseModel();
    const cache = createCache(model.config, { capacity: T });
    forward(model, prompt, { cache });
    expect(cache.layers[0]!.rows).toBe(T);
    expect(cacheValues(cache).reduce((n, v) => n + numel(v.shape), 0)).toBe(cacheNumbers(model.config, T));
  });

  it("compresses each block on the device as the module does, bit for bit, in a prefill and in decode steps", () => {
    const model = sparseModel();
    const c = sparseConfig(model.config);
    const cache = createCache(model.config);
    const inputs: number[] = [];
    for (const part of [prompt.slice(0, T - 4), ...prompt.slice(T - 4).map((id) => [id])]) {
      const trace = createTrace("layers.1.attn.in");
      forward(model, part, { cache, trace });
      inputs.push(...trace.tensors.get("layers.1.attn.in")!.data);
    }
    const state = createSparseState(c);
    const weights = model.weights.layers[1]!.self_attn as unknown as SparseWeights;
    sparseAttentionTraced({ shape: [1, T, c.hidden_size], data: Float32Array.from(inputs) }, weights, c, state, reference);
    const blocks = (cache.layers[1] as LayerCache<Tensor>).blocks!;
    const [, Hkv, NB, Dh] = state.compressedKeys.shape as [number, number, number, number];
    expect(NB).toBe(Math.floor((T - c.sparse_block!) / c.sparse_stride!) + 1);
    // The first NB rows of each kv head's plane [Hkv, rows, Dh] against the module's [1, Hkv, NB, Dh].
    const filled = (x: Tensor) => Float32Array.from({ length: Hkv * NB * Dh }, (_, e) => x.data[Math.floor(e / (NB * Dh)) * blocks.rows * Dh + (e % (NB * Dh))]!);
    expect(filled(blocks.keys)).toEqual(state.compressedKeys.data);
    expect(filled(blocks.values)).toEqual(state.compressedValues.data);
  });

  it.each([[1], [5], [T]])("a layer is sparse.ts on its own input (T = %i): selections and gates exactly, the selected branch through the fused attention bit for bit", (length) => {
    const model = sparseModel();
    for (const l of [0, 2]) {
      const traced = tracedLayer(model, prompt.slice(0, length), l);
      const own = moduleLayer(model, l, traced("in") as Tensor);
      expect(traced("selected").shape).toEqual([2, length, 4]);
      expect(traced("selected").data).toEqual(own.trace.selected);
      expect(traced("gates").shape).toEqual([length, 3 * 4]);
      expect(traced("gates").data).toEqual(own.trace.gates.data);
      expect(traced("heads").data).toEqual(own.heads.data);
      expect(traced("out").data).toEqual(own.fusedOut.data);
      // The module's own masked attention rounds three more times: the same output up to float32 rounding.
      expect(relativeError(traced("out").data, own.out.data)).toBeLessThan(1e-6);
    }
  });

  it("kv groups that choose different blocks each attend their own", () => {
    const model = sparseModel();
    for (const l of [0, 1, 2]) {
      const selected = groups(tracedLayer(model, prompt, l)("selected"));
      expect(selected[0]!.some((blocks, t) => blocks.join() !== selected[1]![t]!.join()), `layer ${l}`).toBe(true);
      expect(selected[0]![T - 1]).toHaveLength(4);
    }
  });

  it("prefill equals decode through the cache, in chunks across block ends and the window, and token by token", () => {
    const model = sparseModel();
    const names = "layers.*.attn.selected";
    const whole = createTrace(names);
    const logits = forward(model, prompt, { trace: whole }).logits.data;
    const V = model.config.vocab_size;
    for (const cuts of [[3, 9, 10, 17], Array.from({ length: T - 1 }, (_, i) => i + 1)]) {
      const cache = createCache(model.config);
      const parts = [0, ...cuts, T].slice(1).map((end, i, ends) => prompt.slice(i === 0 ? 0 : ends[i - 1], end));
      const chunked: number[] = [];
      const selections: number[][][][] = [];
      for (const part of parts) {
        const trace = createTrace(names);
        chunked.push(...forward(model, part, { cache, trace }).logits.data);
        selections.push([0, 1, 2].map((l) => groups(trace.tensors.get(`layers.${l}.attn.selected`)!).flat()));
      }
      expect(cache.length).toBe(T);
      expect(Float32Array.from(chunked)).toEqual(logits.subarray(0, T * V));
      for (const l of [0, 1, 2]) {
        const perChunk = selections.map((s) => s[l]!);
        const [G0, G1] = groups(whole.tensors.get(`layers.${l}.attn.selected`)!);
        const split = (g: number) => perChunk.flatMap((s, i) => s.slice(g * parts[i]!.length, (g + 1) * parts[i]!.length));
        expect(split(0)).toEqual(G0);
        expect(split(1)).toEqual(G1);
      }
    }
  });

  it("a batch of two sequences of different lengths is each alone", () => {
    const model = sparseModel();
    const [a, b] = [prompt.slice(0, 19), prompt.slice(3, 10)];
    const V = model.config.vocab_size;
    const caches = [createCache(model.config), createCache(model.config)];
    const batch = forwardBatch(model, [a, [...b, ...new Array(a.length - b.length).fill(0)]], [a.length, b.length], { caches }).logits.data;
    expect(batch.subarray(0, a.length * V)).toEqual(forward(model, a).logits.data);
    expect(batch.subarray(a.length * V, (a.length + b.length) * V)).toEqual(forward(model, b).logits.data);
    // Each cache goes on alone.
    const next = forward(model, [101], { cache: caches[1] }).logits.data;
    expect(next).toEqual(forward(model, [...b, 101]).logits.data.subarray(b.length * V));
  });

  it("has the heads point [H, T, Dh]: zeroed heads zero its output, and head ablation works on it", () => {
    const model = sparseModel();
    expect(hookPoints(model.config).filter((p) => p.startsWith("layers.0.attn."))).toEqual([
      "layers.0.attn.in", "layers.0.attn.heads", "layers.0.attn.out", "layers.0.attn.residual",
    ]);
    const contexts: HookContext[] = [];
    const zero = (h: Tensor, context: HookContext) => (contexts.push(context), { shape: h.shape, data: new Float32Array(h.data.length) });
    const trace = createTrace("layers.1.attn.*");
    const zeroed = forward(model, prompt, { trace, hooks: { "layers.1.attn.heads": zero } }).logits.data;
    expect(contexts).toEqual([{ name: "layers.1.attn.heads", layer: 1, positions: Int32Array.from(prompt, (_, i) => i) }]);
    expect(trace.tensors.get("layers.1.attn.heads")!.shape).toEqual([4, T, 8]);
    expect(trace.tensors.get("layers.1.attn.out")!.data.every((v) => v === 0)).toBe(true);
    const plain = forward(model, prompt).logits.data;
    expect(relativeError(zeroed, plain)).toBeGreaterThan(1e-3);
    const ablated = forward(model, prompt, { interventions: [ablateHeads(model, { layer: 1, heads: [2] })] }).logits.data;
    expect(relativeError(ablated, plain)).toBeGreaterThan(1e-5);
  });

  it("on quantised weights its projections quantise their activations as the weights ask, as the module's do", () => {
    const model = quantizeModel(sparseModel(), "int8.g32.a8", { targets: ["*.self_attn.*"] });
    const traced = tracedLayer(model, prompt, 1);
    const own = moduleLayer(model, 1, traced("in") as Tensor, hookedKernels(reference));
    expect(traced("out").data).toEqual(own.fusedOut.data);
    expect(relativeError(own.fusedOut.data, moduleLayer(model, 1, traced("in") as Tensor).fusedOut.data)).toBeGreaterThan(1e-3);
  });

  it("a failed forward marks the cache broken (its blocks and window moved on in place), and speculative decoding refuses it", () => {
    const model = sparseModel();
    expect(dropsPositions(model.config, 0)).toBe(false);
    const cache = createCache(model.config);
    forward(model, prompt.slice(0, 5), { cache });
    const stop = { "layers.1.attn.out": () => { throw new Error("stop"); } };
    expect(() => forward(model, prompt.slice(5, 9), { cache, hooks: stop })).toThrow("stop");
    expect(cache.length).toBe(5);
    expect(() => forward(model, prompt.slice(5), { cache })).toThrow(/^cache: a forward through it failed half-way; start again with a new cache$/);
    // A cache shortened by hand (as speculative decoding drops a draft) is refused rather than read at wrong positions.
    const shortened = createCache(model.config);
    forward(model, prompt.slice(0, 5), { cache: shortened });
    shortened.length = 4;
    expect(() => forward(model, [101], { cache: shortened })).toThrow(/^layers\.0\.attn: the sparse state holds 5 positions, the cache 4$/);
    const mtp = sparseModel({ num_nextn_predict_layers: 1, attention_kind: ["mla", "sparse", "mla"] });
    expect(() => generate(mtp, prompt.slice(0, 4), { maxTokens: 2, speculative: "mtp" })).toThrow(/^speculative: .*got "?layer 1 sparse"?$/);
  });
});
