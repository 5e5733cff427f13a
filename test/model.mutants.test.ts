// Cases that kill mutants of the one forward (src/model/forward.ts, layers.ts) the other model tests let live
// (test/README.md, mutation testing): every refusal's whole message, padded batches at their edges, a dense model,
// where the early-exit check runs, decay attention against plain attention, and the small exported helpers.
import { describe, expect, it } from "vitest";
import { runSync } from "../src/device/drive.ts";
import { referenceOps } from "../src/device/ops.ts";
import { createCache } from "../src/model/cache.ts";
import { forward, forwardBatch, forwardRows, rowNorms, rowsWhere, topTwoMargin } from "../src/model/forward.ts";
import { initModel } from "../src/model/weights.ts";
import { tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { thrown } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const model = initModel(testConfig()); // 3 layers, vocabulary 260
const caches = (n: number) => Array.from({ length: n }, () => createCache(model.config));

describe("the forward refuses bad input, naming it", () => {
  const rowsOf = (n: number) => caches(n).map((cache) => ({ tokens: [1], cache, own: true }));
  it.each([
    ["no tokens", () => forward(model, []), "tokens: expected at least one token id, got 0"],
    ["null tokens", () => forward(model, null as never), "tokens: expected at least one token id, got null"],
    ["a number for tokens", () => forward(model, 5 as never), "tokens: expected at least one token id, got 5"],
    ["a backend without ops", () => forward(model, [1], { backend: {} as never }), "backend: expected a Backend from loadBackend (with ops), got an object without ops"],
    ["a null backend", () => forward(model, [1], { backend: null as never }), "backend: expected a Backend from loadBackend (with ops), got null"],
    ["a backend's name", () => forward(model, [1], { backend: "wasm" as never }), "backend: expected a Backend from loadBackend (with ops), got wasm"],
    ["a missing batch row", () => forwardBatch(model, [[1, 2], null as never], [2, 2], { caches: caches(2) }), "tokens[1]: expected 2 tokens (a padded batch), got undefined"],
    ["too few lengths", () => forwardBatch(model, [[1, 2], [1, 2]], [2], { caches: caches(2) }), "lengths: expected 2 lengths, got 1"],
    ["lengths not a list", () => forwardBatch(model, [[1, 2], [1, 2]], 2 as never, { caches: caches(2) }), "lengths: expected 2 lengths, got undefined"],
    ["a length past the row", () => forwardBatch(model, [[1, 2], [1, 2]], [3, 2], { caches: caches(2) }), "lengths[0]: expected an integer in [0, 2], got 3"],
    ["too few caches", () => forwardBatch(model, [[1, 2], [1, 2]], [2, 2], { caches: caches(1) }), "caches: expected 2 caches, got 1"],
    ["another model's cache in row 1", () => forwardBatch(model, [[1, 2], [1, 2]], [2, 2], { caches: [createCache(model.config), createCache(testConfig({ num_hidden_layers: 2 }))] }), "caches[1]: expected a cache of 3 layers (createCache(config)), got 2"],
    ["a negative exit threshold", () => forward(model, [1], { exitThreshold: -1 }), "exitThreshold: expected a finite number in [0, Infinity], got -1"],
    ["minLayers 0", () => forward(model, [1], { minLayers: 0 }), "minLayers: expected an integer in [1, 3], got 0"],
    ["a trace over two sequences", () => runSync(forwardRows(referenceOps, model, rowsOf(2), { trace: createTrace() }), "reference"), "trace: expected a single sequence (trace one request at a time)"],
  ])("%s", (_, call, message) => expect(thrown(call)).toBe(message));
});

describe("padded batches at their edges", () => {
  it("an empty batch gives empty logits", () => {
    const r = forwardBatch(model, [], [], { caches: [] });
    expect([r.logits.shape, r.exitLayers.length]).toEqual([[0, 0, 260], 0]);
  });

  it("a batch of padding only computes nothing: zero logits, zero exit layers", () => {
    const r = forwardBatch(model, [[1, 2]], [0], { caches: caches(1) });
    expect(r.logits.shape).toEqual([1, 2, 260]);
    expect(r.logits.data.every((v) => v === 0)).toBe(true);
    expect([...r.exitLayers]).toEqual([0, 0]);
  });

  it("exit layers are laid out [B, T]: every layer for real tokens, 0 for padding", () => {
    expect([...forwardBatch(model, [[1, 2], [3, 4]], [2, 1], { caches: caches(2) }).exitLayers]).toEqual([3, 3, 3, 0]);
  });
});

describe("model variants", () => {
  it("a dense model (no routed experts) runs and reports no MoE statistics", () => {
    const dense = initModel(testConfig({ n_routed_experts: 0 }));
    const r = forward(dense, [1, 2]);
    expect(r.moe).toEqual([null, null, null]);
    expect(r.logits.data.every(Number.isFinite)).toBe(true);
  });

  it("MLA layers (rotary dim 4) and MHA layers (head size 8) in one model each rotate by their own frequencies", () => {
    const mixed = initModel(testConfig({ attention_kind: ["mla", "mha", "mla"], qk_rope_head_dim: 4 }));
    const tokens = [256, 84, 104];
    const full = forward(mixed, tokens).logits.data;
    const cache = createCache(mixed.config);
    const stepped = tokens.flatMap((t) => [...forward(mixed, [t], { cache }).logits.data]);
    expect(stepped.every((v, i) => Math.abs(v - full[i]!) < 1e-5)).toBe(true);
  });

  it("keepLogits hands back the logits as a backend value", () => {
    const rows = [{ tokens: [1, 2], cache: createCache(model.config), own: true }];
    const r = runSync(forwardRows(referenceOps, model, rows, { keepLogits: true }), "reference");
    expect(r.logitsValue).toBeDefined();
    expect([...(referenceOps.read(r.logitsValue as never) as Float32Array)]).toEqual([...r.logits.data]);
  });

  it("decay attention with γ = 1 is plain attention; with γ = 0.5 it is not", () => {
    const tokens = [256, 84, 104, 101, 32];
    const plain = forward(initModel(testConfig({ attention_kind: "mha" })), tokens).logits.data;
    const decay = (gamma: number) => forward(initModel(testConfig({ attention_kind: "decay", decay_gamma: gamma })), tokens).logits.data;
    let worst = 0;
    decay(1).forEach((v, i) => (worst = Math.max(worst, Math.abs(v - plain[i]!))));
    expect(worst).toBeLessThan(1e-5);
    expect(decay(0.5).some((v, i) => Math.abs(v - plain[i]!) > 1e-3)).toBe(true);
  });
});

describe("the early-exit check", () => {
  it("runs after layers minLayers … L-1, never after the last; the exit layers are traced only when it is on", () => {
    const on = createTrace();
    forward(model, [1, 2, 3], { exitThreshold: 2, minLayers: 1, trace: on }); // nobody exits: every check is recorded
    expect([...on.tensors.keys()].filter((k) => k.includes("exit"))).toEqual(["layers.0.exit.confidence", "layers.1.exit.confidence", "exit.layers"]);
    expect([...on.tensors.get("exit.layers")!.data]).toEqual([3, 3, 3]);
    const off = createTrace();
    forward(model, [1, 2, 3], { exitThreshold: null, trace: off });
    expect([...off.tensors.keys()].filter((k) => k.includes("exit"))).toEqual([]);
  });
});

describe("when every token has exited", () => {
  it("the later layers run nothing and report no MoE statistics", () => {
    const r = forward(model, [1, 2, 3], { exitThreshold: 0, minLayers: 1 });
    expect([...r.exitLayers]).toEqual([1, 1, 1]);
    expect(r.moe).toEqual([null, null, null]); // layer 0 is dense; layers 1 and 2 ran no token
  });
});

describe("forward's helpers by hand", () => {
  it("topTwoMargin: the largest probability minus the second, per row; the largest alone when V = 1", () => {
    const rows = tensor([3, 3], [0.2, 0.5, 0.3, 0.4, 0.4, 0.2, 0.9, 0.05, 0.05]);
    expect([...topTwoMargin(rows).data].map((v) => +v.toFixed(6))).toEqual([0.2, 0, 0.85]);
    expect([...topTwoMargin(tensor([2, 2], [0.75, 0.25, 0.25, 0.75])).data]).toEqual([0.5, 0.5]);
    expect([...topTwoMargin(tensor([2, 1], [1, 0.5])).data]).toEqual([1, 0.5]);
    expect(topTwoMargin(tensor([0, 0])).shape).toEqual([0]);
  });

  it("rowsWhere: the set rows, or null when every row is set", () => {
    expect(rowsWhere(Uint8Array.of(1, 1, 1))).toBeNull();
    expect([...rowsWhere(Uint8Array.of(1, 0, 1))!]).toEqual([0, 2]);
    expect([...rowsWhere(Uint8Array.of(0, 0))!]).toEqual([]);
  });

  it("rowNorms: each row's L2 norm; a width of 0 has no rows", () => {
    const norms = rowNorms({ shape: [2, 2], data: [3, 4, 6, 8] });
    expect([norms.shape, [...norms.data]]).toEqual([[2], [5, 10]]);
    expect(rowNorms({ shape: [3, 0], data: [] }).shape).toEqual([0]);
  });
});
