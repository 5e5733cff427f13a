import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBackend, NotSupportedError, type Backend } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { referenceDevice } from "../src/device/reference.ts";
import { namedWeights, type HookedWeight } from "../src/model-adapters.ts";
import { forward } from "../src/model/forward.ts";
import { initModel, modelToSafetensors, type Model } from "../src/model/weights.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { globMatcher, linearNames, parseScheme, quantizedModelFromSafetensors, quantizedModelToSafetensors, quantizeModel, SCHEME_NAMES, storedBytes } from "../src/quant/model.ts";
import { relativeError } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const TOKENS = [256, 84, 104, 101, 32, 114, 97, 98, 98, 105, 116];
const logits = (model: Model) => forward(model, TOKENS).logits.data;


describe("quantising a model", () => {
  // hidden 64 so that groups of 32 and 64 differ; odd-free shapes otherwise as the tiny model's test config.
  const model = initModel(testConfig({ hidden_size: 64, intermediate_size: 96, moe_intermediate_size: 32 }));
  const base = logits(model);

  it("quantises every projection and keeps embeddings, norms, the router gate and the head float", () => {
    const q = quantizeModel(model, "int4.g32");
    const names = [...q.quantization.weights.keys()];
    expect(names).toContain("model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
    expect(names).toContain("model.layers.2.mlp.experts.7.down_proj.weight");
    expect(names).toContain("model.layers.1.mlp.shared_experts.up_proj.weight");
    expect(names.some((n) => /embed|norm|mlp\.gate\.weight|lm_head/.test(n))).toBe(false);
    const weights = namedWeights(q);
    for (const name of names) expect((weights.get(name) as HookedWeight).quant?.weight.scheme).toBe("int4");
    expect(weights.get("lm_head.weight")).toBe(model.weights.lm_head);
    const withHead = quantizeModel(model, "int8", { targets: ["lm_head", "*.mlp.gate"] });
    expect([...withHead.quantization.weights.keys()]).toEqual(linearNames(model).filter((n) => /gate\.weight$|lm_head/.test(n)));
  });

  it("runs through the quantLinear kernel; without one, weight-only schemes run dequantised and quantised activations are refused", () => {
    const q = quantizeModel(model, "int8.g64", { targets: ["model.layers.0.*"] });
    let calls = 0;
    const counting = { ...referenceDevice, quantLinear: (...args: Parameters<NonNullable<typeof referenceDevice.quantLinear>>) => (calls++, referenceDevice.quantLinear!(...args)) };
    const out = forward(q, TOKENS, { backend: { ops: opsOver(counting) } }).logits.data;
    // q_a, q_b, kv_a, o and the dense MLP's gate, up, down; absorbed MLA folds kv_b_proj's dequantised matrix instead.
    expect(calls).toBe(7);
    expect(out).toEqual(logits(q));
    const { quantLinear: _, ...without } = referenceDevice;
    const dequantised = forward(q, TOKENS, { backend: { ops: opsOver({ ...without, name: "no-quant" }) } }).logits.data;
    expect(relativeError(dequantised, out) ** 2).toBeLessThan(1e-7);
    expect(dequantised).not.toEqual(out); // it did not run the integer kernel
    const activations = quantizeModel(model, "int8.g64.a8", { targets: ["model.layers.0.*"] });
    expect(() => forward(activations, TOKENS, { backend: { ops: opsOver({ ...without, name: "no-quant-2" }) } })).toThrow(NotSupportedError);
  });

  it("has a logits error that falls from int4 to int8 and from bf16 to fp16", () => {
    const error = (scheme: string) => relativeError(logits(quantizeModel(model, scheme)), base);
    const [int4, int8, fp8, bf16, fp16] = ["int4.g32", "int8.g32", "fp8", "bf16", "fp16"].map(error);
    expect(int8).toBeLessThan(int4);
    expect(fp16).toBeLessThan(bf16);
    expect(int8).toBeLessThan(fp8); // 8 bits of integer code beat e4m3's 3 mantissa bits
    for (const e of [int4, int8, fp8, bf16, fp16]) expect(e).toBeGreaterThan(0);
  });

  it("saves and loads every scheme with identical logits (property over schemes and targets)", () => {
    fc.assert(
      fc.property(fc.constantFrom(...SCHEME_NAMES), fc.constantFrom(undefined, ["q_b_proj", "experts.*"], ["down_proj"]), (scheme, targets) => {
        const q = quantizeModel(model, scheme, { targets });
        const back = quantizedModelFromSafetensors(quantizedModelToSafetensors(q));
        expect([...back.quantization.weights.keys()]).toEqual([...q.quantization.weights.keys()]);
        expect(logits(back)).toEqual(logits(q));
      }),
      { numRuns: 8 },
    );
  });

  it("stores the codes as the formats say: int4 packed U8, int8 I8, fp8 F8_E4M3 with weight_scale_inv, bf16 as BF16", () => {
    const name = "model.layers.0.self_attn.q_a_proj";
    const stored = (scheme: string) => readSafetensors(quantizedModelToSafetensors(quantizeModel(model, scheme, { targets: ["q_a_proj"] })));
    const int4 = stored("int4.g32");
    expect([int4.tensors.get(`${name}.qweight`)!.dtype, int4.tensors.get(`${name}.qweight`)!.shape]).toEqual(["U8", [16, 32]]);
    expect(int4.tensors.get(`${name}.scales`)!.shape).toEqual([16, 2]);
    expect(JSON.parse(int4.metadata.quantization!)).toMatchObject({ scheme: "int4.g32", bits: 4, group: 32 });
    expect(stored("int8.g64").tensors.get(`${name}.qweight`)!.dtype).toBe("I8");
    const fp8 = stored("fp8");
    expect([fp8.tensors.get(`${name}.weight`)!.dtype, fp8.tensors.get(`${name}.weight_scale_inv`)!.shape]).toEqual(["F8_E4M3", [1, 1]]);
    expect(stored("bf16").tensors.get(`${name}.weight`)!.dtype).toBe("BF16");
  });

  it("counts bytes as stored: int4.g32 is 0.5 + 4/32 bytes a weight", () => {
    const q = quantizeModel(model, "int4.g32");
    const w = namedWeights(q).get("model.layers.0.self_attn.q_a_proj.weight")!;
    expect(storedBytes(w, parseScheme("int4.g32"))).toBe(16 * 32 + 4 * 16 * 2);
    expect(storedBytes(w, parseScheme("bf16"))).toBe(2 * 16 * 64);
    expect(storedBytes(w, null)).toBe(4 * 16 * 64);
  });

  it("rejects bad arguments by name", () => {
    expect(() => quantizeModel(model, "int3.g32")).toThrow(/scheme.*"int3.g32"/);
    expect(() => quantizeModel(model, "int8.g48")).toThrow(/group size/);
    expect(() => quantizeModel(model, "int8", { targets: ["no_such_proj"] })).toThrow(/"no_such_proj" matches no linear layer/);
    expect(() => quantizedModelFromSafetensors(modelToSafetensors(model))).toThrow(/quantization/);
    expect(globMatcher("q_b_proj")("model.layers.3.self_attn.q_b_proj.weight")).toBe(true);
    expect(globMatcher("b_proj")("model.layers.3.self_attn.q_b_proj.weight")).toBe(false);
  });
});

describe("a quantised model on the WASM backend", () => {
  let wasm: Backend;
  beforeAll(async () => {
    wasm = await loadBackend("wasm", { threads: 1 });
  });
  afterAll(() => wasm.dispose());

  it("gives the reference's logits within the whole-model bound (NMSE <= 1e-7) and the same next tokens", () => {
    const model = initModel(testConfig({ hidden_size: 64, intermediate_size: 96, moe_intermediate_size: 32 }));
    for (const scheme of ["int4.g32", "int8.g128.a8", "fp8"]) {
      const q = quantizeModel(model, scheme);
      const [ref, out] = [forward(q, TOKENS), forward(q, TOKENS, { backend: wasm })].map((r) => r.logits);
      expect(relativeError(out!.data, ref!.data) ** 2, scheme).toBeLessThan(1e-7);
      const V = ref!.shape[1]!;
      const argmax = (d: Float32Array, t: number) => d.subarray(t * V, (t + 1) * V).reduce((b, v, i, row) => (v > row[b]! ? i : b), 0);
      for (let t = 0; t < TOKENS.length; t++) expect(argmax(out!.data, t)).toBe(argmax(ref!.data, t));
    }
  });
});
