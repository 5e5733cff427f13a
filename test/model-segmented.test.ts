// Segmented attention (spec/segmented-attention.md) in the one forward, on the device (src/model/segmented-layer.ts):
// keys and values [Hkv, M + S + W, Dh] with the memory's first, and the pool [1, M + S, D], rewritten in place at
// each segment's start. On the reference every layer's output must be src/attention/segmented.ts's
// `segmentedAttention` (the old host path) on the layer's own input, bit for bit, in prefill, in chunks that cross
// segment ends and in token-by-token decode; on wasm the same tokens as the reference.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mergeHeads } from "../src/attention/heads.ts";
import { createSegmentedState, segmentedAttention, type SegmentedState, type SegmentedWeights } from "../src/attention/segmented.ts";
import { opsOver } from "../src/device/ops.ts";
import { referenceDevice } from "../src/device/reference.ts";
import { reference } from "../src/kernels.ts";
import { hookedKernels } from "../src/model-adapters.ts";
import { segmentedConfig } from "../src/model/attention.ts";
import { createCache, dropsPositions, releaseCache, type LayerCache } from "../src/model/cache.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { forward, forwardBatch } from "../src/model/forward.ts";
import { generate } from "../src/model/generate.ts";
import { hookPoints } from "../src/model/point-names.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { linear } from "../src/ops.ts";
import { quantizeModel } from "../src/quant/model.ts";
import { ablateHeads } from "../src/research/heads.ts";
import type { Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { createBackend, type WasmBackend } from "../wasm/backend.ts";
import { argmaxRows, nmse, relativeError, thrown } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

// <bos>The quick brown fox jumps: 26 tokens, six and more segments of 4.
const prompt = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110, 32, 102, 111, 120, 32, 106, 117, 109, 112, 115];

/** A segmented model: testConfig's S = 4, W = 2, M = 2 unless overridden; init_std 0.3 so that the layers are lively. */
const segmented = (overrides: Partial<ModelConfig> = {}) => initModel(testConfig({ attention_kind: "segmented", init_std: 0.3, ...overrides }));

/** Segment, window and memory shapes the layer must handle (W > S reaches into earlier segments; W = 0 none). */
const VARIANTS: [string, Partial<ModelConfig>][] = [
  ["S 4, W 2, M 2", {}],
  ["no memory", { memory_slots: 0 }],
  ["W 6 > S 4, M 3", { segment_overlap: 6, memory_slots: 3 }],
  ["W 0", { segment_overlap: 0 }],
  ["S 1, W 3", { segment_size: 1, segment_overlap: 3 }],
  ["2 kv heads", { num_key_value_heads: 2 }],
  ["S + W beyond max_position_embeddings", { segment_size: 16, segment_overlap: 16, max_position_embeddings: 26 }],
];

const io = "layers.*.attn.in,layers.*.attn.out";

/** The old host path: the module over layer l's input x [T, D], continuing `state` (from position 0 without one). */
function moduleLayer(model: Model, l: number, x: Tensor, state?: SegmentedState, kernels = reference): Float32Array {
  const w = model.weights.layers[l]!.self_attn as unknown as SegmentedWeights;
  return segmentedAttention({ shape: [1, ...x.shape], data: x.data }, w, segmentedConfig(model.config), state, kernels).data;
}

const layersOf = (model: Model) => Array.from({ length: model.config.num_hidden_layers }, (_, l) => l);

describe("segmented attention on the device, against its own module", () => {
  it.each(VARIANTS)("prefill of every length is the module on each layer's input, bit for bit (%s)", (_, overrides) => {
    const model = segmented(overrides);
    for (const T of [1, 3, 4, 5, 9, 13, 26]) {
      const trace = createTrace(io);
      forward(model, prompt.slice(0, T), { trace });
      for (const l of layersOf(model)) {
        const x = trace.tensors.get(`layers.${l}.attn.in`) as Tensor;
        expect(trace.tensors.get(`layers.${l}.attn.out`)!.data, `T ${T}, layer ${l}`).toEqual(moduleLayer(model, l, x));
      }
    }
  });

  it.each(VARIANTS)("chunks across segment ends and token-by-token decode are the module through its state, bit for bit (%s)", (_, overrides) => {
    const model = segmented(overrides);
    const cache = createCache(model.config);
    const states = layersOf(model).map(() => createSegmentedState(segmentedConfig(model.config)));
    // 3 tokens, then 6 across two segment ends, then one by one, then a chunk longer than a segment.
    const cuts = [0, 3, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 26];
    const logits: number[] = [];
    for (let i = 1; i < cuts.length; i++) {
      const trace = createTrace(io);
      logits.push(...forward(model, prompt.slice(cuts[i - 1], cuts[i]), { cache, trace }).logits.data);
      for (const l of layersOf(model)) {
        const x = trace.tensors.get(`layers.${l}.attn.in`) as Tensor;
        expect(trace.tensors.get(`layers.${l}.attn.out`)!.data, `tokens ${cuts[i - 1]}…, layer ${l}`).toEqual(moduleLayer(model, l, x, states[l]));
      }
    }
    expect(cache.length).toBe(prompt.length);
    expect(Float32Array.from(logits)).toEqual(forward(model, prompt).logits.data);
  });

  it("on quantised weights (int8 activations) it is the module over the same hooked weights, as the host path ran it", () => {
    const model = quantizeModel(segmented({ num_key_value_heads: 2 }), "int8.g32.a8", { targets: ["*.self_attn.*"] });
    const trace = createTrace(io);
    forward(model, prompt.slice(0, 13), { trace });
    for (const l of layersOf(model)) {
      const x = trace.tensors.get(`layers.${l}.attn.in`) as Tensor;
      const [hooked, plain] = [moduleLayer(model, l, x, undefined, hookedKernels(reference)), moduleLayer(model, l, x)];
      expect(relativeError(plain, hooked)).toBeGreaterThan(1e-3); // the activations' rounding shows
      expect(trace.tensors.get(`layers.${l}.attn.out`)!.data).toEqual(hooked);
    }
  });

  it("a batch of two sequences of different lengths equals each alone, prefill and a decode step", () => {
    const model = segmented();
    const V = model.config.vocab_size;
    const [a, b] = [prompt.slice(0, 13), prompt.slice(13, 20)];
    const caches = [createCache(model.config), createCache(model.config)];
    const batch = forwardBatch(model, [a, [...b, 0, 0, 0, 0, 0, 0]], [13, 7], { caches }).logits;
    const step = forwardBatch(model, [[prompt[20]!], [prompt[21]!]], [1, 1], { caches }).logits;
    for (const [row, tokens, next] of [[0, a, prompt[20]!], [1, b, prompt[21]!]] as const) {
      const alone = forward(model, [...tokens, next]).logits.data;
      expect(batch.data.subarray(row * 13 * V, (row * 13 + tokens.length) * V)).toEqual(alone.subarray(0, tokens.length * V));
      expect(step.data.subarray(row * V, (row + 1) * V)).toEqual(alone.subarray(tokens.length * V));
    }
  });

  it("holds a bounded state allocated once, and gives it back when the cache is released", () => {
    const freed: Tensor[] = [];
    const backend = { ops: opsOver({ ...referenceDevice, name: "counting-reference", free: (x: Tensor) => void freed.push(x) }) };
    const model = segmented({ segment_overlap: 3, memory_slots: 2 });
    const { num_key_value_heads: Hkv, hidden_size: D, num_attention_heads: H } = model.config;
    const cache = createCache(model.config, { backend });
    forward(model, prompt.slice(0, 5), { cache, backend });
    const layer = cache.layers[0] as LayerCache<Tensor>;
    const held = [layer.keys!, layer.values!, layer.segmentPool!];
    expect(held.map((t) => t.shape)).toEqual([[Hkv, 2 + 4 + 3, D / H], [Hkv, 2 + 4 + 3, D / H], [1, 2 + 4, D]]);
    for (const token of prompt.slice(5)) forward(model, [token], { cache, backend });
    expect([layer.keys, layer.values, layer.segmentPool]).toEqual(held); // rewritten in place, never grown
    expect(layer.keys).toBe(held[0]);
    releaseCache(cache);
    expect(freed.filter((t) => held.includes(t))).toHaveLength(3);
  });
});

describe("segmented attention in the model around it", () => {
  it("has the heads point [H, T, Dh] before o_proj, and head ablation reaches it", () => {
    const model = segmented();
    const { num_attention_heads: H, hidden_size: D } = model.config;
    expect(hookPoints(model.config).filter((p) => p.startsWith("layers.0.attn."))).toEqual(["layers.0.attn.in", "layers.0.attn.heads", "layers.0.attn.out", "layers.0.attn.residual"]);
    const T = 13; // four pieces: the heads are put together across them
    const trace = createTrace("layers.1.attn.heads,layers.1.attn.out");
    const plain = forward(model, prompt.slice(0, T), { trace }).logits.data;
    const heads = trace.tensors.get("layers.1.attn.heads") as Tensor;
    expect(heads.shape).toEqual([H, T, D / H]);
    const o = model.weights.layers[1]!.self_attn.o_proj!;
    expect(trace.tensors.get("layers.1.attn.out")!.data).toEqual(linear(mergeHeads({ shape: [1, ...heads.shape], data: heads.data }), o).data);
    const zeroed = createTrace("layers.1.attn.out");
    forward(model, prompt.slice(0, T), { trace: zeroed, hooks: { "layers.1.attn.heads": (h) => ({ shape: h.shape, data: new Float32Array(h.data.length) }) } });
    expect(zeroed.tensors.get("layers.1.attn.out")!.data.every((v) => v === 0)).toBe(true);
    const ablated = forward(model, prompt.slice(0, T), { interventions: [ablateHeads(model, { layer: 1, heads: [0, 2] })] }).logits.data;
    expect(relativeError(ablated, plain)).toBeGreaterThan(1e-3);
  });

  it("a forward that fails half-way leaves the cache refused, and speculative decoding refuses the model", () => {
    const model = segmented();
    expect(layersOf(model).map((l) => dropsPositions(model.config, l))).toEqual([false, false, false]);
    const cache = createCache(model.config);
    forward(model, prompt.slice(0, 3), { cache });
    // Layer 0 already pooled its memory and moved its window at position 4 when layer 2 fails.
    expect(() => forward(model, prompt.slice(3, 9), { cache, hooks: { "layers.2.attn.in": () => { throw new Error("stop"); } } })).toThrow("stop");
    expect(thrown(() => forward(model, prompt.slice(3, 9), { cache }))).toBe("cache: a forward through it failed half-way; start again with a new cache");
    const mtp = segmented({ num_nextn_predict_layers: 1 });
    expect(thrown(() => generate(mtp, prompt.slice(0, 5), { maxTokens: 3, stopToken: null, speculative: "mtp" }))).toMatch(
      /^speculative: expected a model whose every layer's cache can drop a rejected draft \(.*\), got "layer 0 segmented"$/,
    );
  });
});

describe("segmented attention on wasm", () => {
  let wasm: WasmBackend;
  let checked: WasmBackend;
  beforeAll(async () => {
    wasm = await createBackend({ threads: 1 });
    checked = await createBackend({ threads: 1, check: true }); // NaN-filled outputs, guard bytes verified per kernel
  });
  afterAll(async () => {
    await wasm.dispose();
    await checked.dispose();
  });

  it("in check mode: every output written, nothing written outside its block, across pooling and window moves", () => {
    const model = segmented({ segment_overlap: 6, memory_slots: 3, num_key_value_heads: 2 });
    const ref = forward(model, prompt).logits;
    const cache = createCache(model.config, { backend: checked });
    try {
      const logits = [...forward(model, prompt.slice(0, 10), { cache, backend: checked }).logits.data];
      for (const token of prompt.slice(10)) logits.push(...forward(model, [token], { cache, backend: checked }).logits.data);
      expect(nmse({ data: Float32Array.from(logits) }, ref)).toBeLessThan(1e-7);
    } finally {
      releaseCache(cache);
    }
  });

  it.each(VARIANTS)("prefill, then chunks and single tokens through a wasm cache: the reference's tokens (%s)", (_, overrides) => {
    const model = segmented(overrides);
    const ref = forward(model, prompt).logits;
    const whole = forward(model, prompt, { backend: wasm }).logits;
    expect(nmse(whole, ref)).toBeLessThan(1e-7);
    expect(argmaxRows(whole)).toEqual(argmaxRows(ref));
    const cache = createCache(model.config, { backend: wasm });
    try {
      const logits: number[] = [];
      for (const [from, to] of [[0, 7], [7, 8], [8, 9], [9, 18], [18, 19], [19, 26]]) logits.push(...forward(model, prompt.slice(from, to), { cache, backend: wasm }).logits.data);
      const stepped = { shape: ref.shape, data: Float32Array.from(logits) };
      expect(nmse(stepped, ref)).toBeLessThan(1e-7);
      expect(argmaxRows(stepped)).toEqual(argmaxRows(ref));
    } finally {
      releaseCache(cache);
    }
  });
});
