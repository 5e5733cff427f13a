import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bottleneck, initBottleneck, initLora, loraDelta, loraLinear, mergeLora, unmergeLora, type Lora } from "../src/adapters.ts";
import { linear } from "../src/ops.ts";
import { Random, randBounded } from "../src/random.ts";
import { tensor } from "../src/tensor.ts";

/** A LoRA as if trained: B no longer zero. */
function trained(rng: Random, lora: Lora): Lora {
  return { ...lora, B: randBounded(rng, lora.B.shape) };
}

const closeTo = (a: Float32Array, b: Float32Array, tol: number) => {
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(tol * (1 + Math.abs(b[i]!)));
};

describe("LoRA", () => {
  it("computes (alpha/r)·B·A by hand", () => {
    const lora: Lora = { rank: 1, alpha: 2, A: tensor([1, 2], [1, 2]), B: tensor([2, 1], [3, -1]) };
    expect([...loraDelta(lora, 2).data]).toEqual([6, 12, -2, -4]);
    const rowsOnly: Lora = { ...lora, B: tensor([1, 1], [3]), rows: Int32Array.from([1]) };
    expect([...loraDelta(rowsOnly, 2).data]).toEqual([0, 0, 6, 12]);
  });

  it("is the identity when fresh, and merged equals unmerged when trained (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 17 }), fc.integer({ min: 1, max: 4 }), (seed, out, inDim, r) => {
        const rng = new Random(seed);
        const rank = Math.min(r, out, inDim);
        const [w, x] = [randBounded(rng, [out, inDim]), randBounded(rng, [3, inDim])];
        const fresh = initLora(rng, [out, inDim], rank, 16);
        expect([...loraLinear(x, w, fresh).data]).toEqual([...linear(x, w).data]);
        expect([...mergeLora(w, fresh).data]).toEqual([...w.data]);
        const lora = trained(rng, fresh);
        closeTo(linear(x, mergeLora(w, lora)).data, loraLinear(x, w, lora).data, 1e-5);
        closeTo(unmergeLora(mergeLora(w, lora), lora).data, w.data, 1e-5);
      }),
      { numRuns: 60 },
    );
  });

  it("restricted to some rows leaves the others alone", () => {
    const rng = new Random(5);
    const w = randBounded(rng, [6, 4]);
    const lora = trained(rng, initLora(rng, [6, 4], 2, 8, Int32Array.from([3, 4, 5])));
    const merged = mergeLora(w, lora);
    expect([...merged.data.subarray(0, 12)]).toEqual([...w.data.subarray(0, 12)]);
    expect([...merged.data.subarray(12)]).not.toEqual([...w.data.subarray(12)]);
  });

  it("rejects bad arguments by name", () => {
    const rng = new Random(1);
    expect(() => initLora(rng, [4, 4], 0)).toThrow(/rank/);
    expect(() => initLora(rng, [4, 4], 2, 0)).toThrow(/alpha/);
    expect(() => initLora(rng, [4, 4], 2, 8, Int32Array.from([4]))).toThrow(/rows\[0\]/);
    expect(() => mergeLora(tensor([4, 5]), initLora(rng, [4, 4], 2))).toThrow(/weight/);
  });
});

describe("bottleneck adapter", () => {
  it("is the identity when fresh and not once trained", () => {
    const rng = new Random(9);
    const x = randBounded(rng, [3, 8]);
    for (const act of ["gelu", "silu", "relu"] as const) {
      const adapter = initBottleneck(rng, 8, 2, act);
      expect([...bottleneck(x, adapter).data]).toEqual([...x.data]);
      const changed = { ...adapter, up: randBounded(rng, [8, 2]) };
      expect([...bottleneck(x, changed).data]).not.toEqual([...x.data]);
    }
    expect(() => initBottleneck(rng, 8, 0)).toThrow(/bottleneck/);
  });
});

describe("LoRA shape checks", () => {
  it("refuses a weight shape that is not two integers >= 1, instead of a NaN-sized A", () => {
    expect(() => initLora(new Random(1), [NaN, 4], 2)).toThrow(/^shape\[0\]: expected an integer >= 1, got NaN/);
    expect(() => initLora(new Random(1), [4, 0], 1)).toThrow(/^shape\[1\]: expected an integer >= 1, got 0/);
    expect(() => initLora(new Random(1), [4] as unknown as [number, number], 1)).toThrow(/^shape: expected the weight's \[out, in\]/);
  });
});
