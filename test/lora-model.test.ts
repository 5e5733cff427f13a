import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Lora } from "../src/adapters.ts";
import { adaptersFromSafetensors, adaptersToSafetensors, attachBottlenecks, attachLora, initModelBottlenecks, initModelLora, loraTargets, mergeModelLora, unmergeModelLora, type BottleneckSet, type LoraSet } from "../src/lora.ts";
import { namedWeights } from "../src/model-adapters.ts";
import { forward } from "../src/model/forward.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { quantizeModel } from "../src/quant/model.ts";
import { Random, randBounded } from "../src/random.ts";
import { relativeError } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const TOKENS = [256, 72, 101, 108, 108, 111, 33];
const logits = (model: Model) => forward(model, TOKENS).logits.data;

/** As if trained: B (or the adapters' up) no longer zero. */
function trainedLora(set: LoraSet, rng: Random): LoraSet {
  const loras = new Map<string, Lora>([...set.loras].map(([n, l]) => [n, { ...l, B: randBounded(rng, l.B.shape, 0.5) }]));
  return { ...set, loras };
}
function trainedBottlenecks(set: BottleneckSet, rng: Random): BottleneckSet {
  return { ...set, layers: set.layers.map((a) => Object.fromEntries(Object.entries(a).map(([k, b]) => [k, { ...b, up: randBounded(rng, b.up.shape, 0.5) }]))) };
}


describe("LoRA on the model", () => {
  const model = initModel(testConfig());

  it("maps q_proj and v_proj onto MLA: q_b_proj (q_proj without q_lora) and kv_b_proj's value rows", () => {
    const targets = loraTargets(model, ["q_proj", "v_proj"]);
    expect(targets.map((t) => t.name)).toEqual([0, 1, 2].flatMap((l) => [`model.layers.${l}.self_attn.q_b_proj.weight`]).concat(
      [0, 1, 2].map((l) => `model.layers.${l}.self_attn.kv_b_proj.weight`)));
    const v = targets.find((t) => t.name.endsWith("kv_b_proj.weight"))!;
    // 4 heads of [k_nope 8 ; v 8]: rows 8..15, 24..31, ...
    expect([...v.rows!.subarray(0, 10)]).toEqual([8, 9, 10, 11, 12, 13, 14, 15, 24, 25]);
    const noQLora = initModel(testConfig({ q_lora_rank: 0 }));
    expect(loraTargets(noQLora, ["q_proj"]).map((t) => t.name)[0]).toBe("model.layers.0.self_attn.q_proj.weight");
    const mha = initModel(testConfig({ attention_kind: "mha" }));
    expect(loraTargets(mha, ["v_proj"]).map((t) => t.name)[1]).toBe("model.layers.1.self_attn.v_proj.weight");
    expect(loraTargets(model, ["layers.1.*o_proj"]).map((t) => t.name)).toEqual(["model.layers.1.self_attn.o_proj.weight"]);
  });

  it("fresh is the identity (bit-identical logits); trained, merged equals unmerged; unmerge restores W (property)", () => {
    const base = logits(model);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 1, max: 8 }), fc.constantFrom(["q_proj", "v_proj"], ["o_proj"], ["kv_a_proj_with_mqa", "down_proj"]), (seed, rank, targets) => {
        const rng = new Random(seed);
        const fresh = initModelLora(model, rng, { targets, rank, alpha: 16 });
        expect(logits(attachLora(model, fresh))).toEqual(base);
        expect(logits(mergeModelLora(model, fresh))).toEqual(base);
        const set = trainedLora(fresh, rng);
        const merged = mergeModelLora(model, set);
        const unmerged = logits(attachLora(model, set));
        expect(relativeError(unmerged, base)).toBeGreaterThan(1e-4); // the LoRA does something
        expect(relativeError(logits(merged), unmerged)).toBeLessThan(1e-5);
        const restored = namedWeights(unmergeModelLora(merged, set));
        for (const [name, w] of namedWeights(model)) {
          const back = restored.get(name)!.data;
          w.data.forEach((v, i) => expect(Math.abs(back[i]! - v)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(v))));
        }
      }),
      { numRuns: 3 },
    );
  });

  it("runs unmerged through every MLA mode and other attention kinds", () => {
    for (const overrides of [{ mla_mode: "naive" as const }, { attention_kind: "mha" as const }]) {
      const m = initModel(testConfig(overrides));
      const set = trainedLora(initModelLora(m, new Random(3), { rank: 4 }), new Random(4));
      expect(relativeError(logits(attachLora(m, set)), logits(mergeModelLora(m, set)))).toBeLessThan(1e-5);
    }
  });

  it("QLoRA: a LoRA beside quantised weights runs, and refuses to merge into them", () => {
    const q = quantizeModel(model, "int8.g32");
    const set = trainedLora(initModelLora(q, new Random(7), { rank: 2 }), new Random(8));
    const out = logits(attachLora(q, set));
    expect(relativeError(out, logits(q))).toBeGreaterThan(1e-4);
    expect(() => mergeModelLora(q, set)).toThrow(/quantised/);
  });

  it("saves alone with PEFT names and loads back: identical logits", () => {
    const set = trainedLora(initModelLora(model, new Random(11), { rank: 4, alpha: 8 }), new Random(12));
    const bytes = adaptersToSafetensors({ lora: set });
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))));
    expect(text).toContain('"base_model.model.model.layers.0.self_attn.q_b_proj.lora_A.weight"');
    expect(text).toContain('"base_model.model.model.layers.2.self_attn.kv_b_proj.lora_B.weight"');
    const back = adaptersFromSafetensors(bytes, model).lora!;
    expect([back.rank, back.alpha, back.targets]).toEqual([4, 8, ["q_proj", "v_proj"]]);
    expect(logits(attachLora(model, back))).toEqual(logits(attachLora(model, set)));
    const other = initModel(testConfig({ kv_lora_rank: 8 }));
    expect(() => adaptersFromSafetensors(bytes, other)).toThrow(/LoRA of "model.layers.0.self_attn.kv_b_proj"/);
  });

  it("rejects bad arguments by name", () => {
    const rng = new Random(1);
    expect(() => initModelLora(model, rng, { rank: 0 })).toThrow(/rank/);
    expect(() => initModelLora(model, rng, { targets: ["nope_proj"] })).toThrow(/"nope_proj"/);
    expect(() => initModelLora(model, rng, { targets: [] })).toThrow(/targets/);
    expect(() => initModelLora(model, rng, { rank: 1000 })).toThrow(/rank/);
    expect(() => initModelLora(initModel(testConfig({ attention_kind: "sparse" })), rng, { targets: ["v_proj"] })).toThrow(/"v_proj"/);
  });
});

describe("bottleneck adapters on the model", () => {
  const model = initModel(testConfig());

  it("fresh is the identity; trained changes the logits; saves and loads back", () => {
    const base = logits(model);
    const fresh = initModelBottlenecks(model, new Random(2), { where: ["attn", "mlp"], size: 4 });
    expect(logits(attachBottlenecks(model, fresh))).toEqual(base);
    const set = trainedBottlenecks(fresh, new Random(3));
    const adapted = logits(attachBottlenecks(model, set));
    expect(relativeError(adapted, base)).toBeGreaterThan(1e-4);
    const back = adaptersFromSafetensors(adaptersToSafetensors({ bottlenecks: set }), model).bottlenecks!;
    expect(logits(attachBottlenecks(model, back))).toEqual(adapted);
    const mlpOnly = initModelBottlenecks(model, new Random(2), { where: ["mlp"] });
    expect(mlpOnly.layers.every((a) => a.attn === undefined && a.mlp !== undefined)).toBe(true);
    expect(() => initModelBottlenecks(model, new Random(1), { where: ["ffn" as "mlp"] })).toThrow(/where/);
  });
});

describe("attachLora arguments", () => {
  it("names a set that is not a LoraSet", () => {
    const model = initModel(testConfig());
    expect(() => attachLora(model, {} as LoraSet)).toThrow(/^set: expected a LoraSet from initModelLora or adaptersFromSafetensors/);
  });
});
