import { describe, expect, it } from "vitest";
import { readSafetensors } from "../src/io/safetensors.ts";
import { forward } from "../src/model/forward.ts";
import { initModel } from "../src/model/weights.ts";
import { compareTraces, createTrace, globToRegExp, record, traceToSafetensors, wants } from "../src/trace.ts";
import { testConfig } from "./model-fixtures.ts";

describe("trace", () => {
  it("globs: * any run of characters (dots included), ? one character, everything else literal", () => {
    expect(globToRegExp("layers.*.attn.probs").test("layers.12.attn.probs")).toBe(true);
    expect(globToRegExp("layers.?.out").test("layers.3.out")).toBe(true);
    expect(globToRegExp("layers.?.out").test("layers.13.out")).toBe(false);
    expect(globToRegExp("layers.1.*").test("layers.1.mlp.router.indices")).toBe(true);
    expect(globToRegExp("a.b").test("axb")).toBe(false);
    expect(wants(undefined, "x")).toBe(false);
    expect(() => createTrace(" , ")).toThrow(/patterns: expected at least one glob pattern/);
  });

  it("records only what its patterns match, in forward order, named as documented", () => {
    const model = initModel(testConfig());
    const trace = createTrace("layers.*.attn.probs, layers.1.mlp.router.*, layers.*.residual_norm, logits");
    const result = forward(model, [256, 104, 105, 33], { trace });
    expect([...trace.tensors.keys()]).toEqual([
      "layers.0.attn.probs", "layers.0.residual_norm",
      "layers.1.attn.probs", "layers.1.mlp.router.logits", "layers.1.mlp.router.scores", "layers.1.mlp.router.indices",
      "layers.1.mlp.router.weights", "layers.1.mlp.router.kept", "layers.1.residual_norm",
      "layers.2.attn.probs", "layers.2.residual_norm", "logits",
    ]);
    const probs = trace.tensors.get("layers.0.attn.probs")!;
    expect(probs.shape).toEqual([4, 4, 4]); // heads, queries, keys
    for (let row = 0; row < 16; row++) {
      const sum = Array.from(probs.data.subarray(row * 4, row * 4 + 4)).reduce((a, v) => a + v, 0);
      expect(sum).toBeCloseTo(1, 5);
      expect(probs.data[row * 4 + 3]! === 0 || row % 4 === 3).toBe(true); // causal: only the last query sees key 3
    }
    expect(trace.tensors.get("layers.1.mlp.router.indices")!.data).toBeInstanceOf(Int32Array);
    expect(trace.tensors.get("logits")!.data).toEqual(result.logits.data);
  });

  it("a trace changes nothing the model computes", () => {
    const model = initModel(testConfig({ attention_kind: "decay" }));
    const plain = forward(model, [256, 1, 2, 3]).logits.data;
    expect(forward(model, [256, 1, 2, 3], { trace: createTrace("*") }).logits.data).toEqual(plain);
  });

  it("saves as safetensors with F32, I32 and U8 tensors and its order in the metadata", () => {
    const trace = createTrace("*");
    record(trace, "b.float", { shape: [2], data: Float32Array.of(1.5, -2) });
    record(trace, "a.index", { shape: [1, 2], data: Int32Array.of(3, 7) });
    record(trace, "c.flag", { shape: [2], data: Uint8Array.of(1, 0) });
    const file = readSafetensors(traceToSafetensors(trace, { prompt: "hi" }));
    expect(file.tensors.get("b.float")).toMatchObject({ dtype: "F32", shape: [2] });
    expect([...file.tensors.get("a.index")!.data]).toEqual([3, 7]);
    expect(file.tensors.get("c.flag")!.dtype).toBe("U8");
    expect(JSON.parse(file.metadata.order!)).toEqual(["b.float", "a.index", "c.flag"]);
    expect(file.metadata.prompt).toBe("hi");
  });

  it("names a tensor whose data does not fit its shape", () => {
    expect(() => record(createTrace("*"), "bad", { shape: [3], data: new Float32Array(2) })).toThrow(/trace "bad": expected 3 values/);
  });
});

describe("compareTraces", () => {
  it("names the first tensor, in forward order, where two runs part", () => {
    const model = initModel(testConfig());
    const [a, b] = [createTrace("*"), createTrace("*")];
    forward(model, [256, 5, 6, 7], { trace: a });
    forward(model, [256, 5, 6, 7], { trace: b });
    expect(compareTraces(a, b).firstDeparture).toBeUndefined();
    // Perturb one intermediate: everything before it still agrees, it is the first departure named.
    const out = b.tensors.get("layers.1.attn.out")!;
    const bent = Float32Array.from(out.data as Float32Array, (v, i) => (i === 3 ? v + 1 : v));
    b.tensors.set("layers.1.attn.out", { shape: out.shape, data: bent });
    const { tensors, firstDeparture } = compareTraces(a, b);
    expect(firstDeparture!.name).toBe("layers.1.attn.out");
    expect(firstDeparture!.comparison.maxAbsError).toBeCloseTo(1, 5);
    expect(tensors.map((t) => t.name).slice(0, 4)).toEqual(["tokens", "embed", "layers.0.in", "layers.0.attn.in"]);
    const indices = b.tensors.get("layers.1.mlp.router.indices")!;
    b.tensors.set("layers.1.mlp.router.indices", { shape: indices.shape, data: Int32Array.from(indices.data, (v, i) => (i === 0 ? v + 1 : v)) });
    expect(compareTraces(a, b).tensors.find((t) => t.name === "layers.1.mlp.router.indices")!.comparison.pass).toBe(false);
  });
});

describe("createTrace arguments", () => {
  it("refuses patterns that are neither a string nor a list of strings with a TinyseekError, not a TypeError", () => {
    expect(() => createTrace(42 as unknown as string)).toThrow(/^patterns: expected a comma-separated string or a list of glob patterns, got "number"/);
    expect(() => createTrace(["logits", 3] as unknown as string[])).toThrow(/^patterns: .*got "a list with a non-string"/);
  });
});
