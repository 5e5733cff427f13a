import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { reference, type Kernels } from "../src/kernels.ts";
import { expert, swigluMlp } from "../src/moe/experts.ts";
import { initMoe, moeConfig, moeLayer, moeParams, moeWeightsFromParams, type MoeConfig, type MoeConfigInput } from "../src/moe/layer.ts";
import { randBounded, Random } from "../src/random.ts";
import { sliceRows, type Tensor } from "../src/tensor.ts";
import { routerConfigArb } from "./moe-fixtures.ts";

const D = 6;
const config = (c: Partial<MoeConfigInput> = {}): MoeConfig =>
  moeConfig({ n_routed_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 5, ...c });
const input = (seed: number, N: number) => randBounded(new Random(seed), [N, D]);
const setup = (c: MoeConfig, seed = 1) => initMoe(new Random(seed), c, D, 0.3);

describe("moe layer", () => {
  it("E = 1, k = 1, dropless equals the single expert", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 6 }), fc.constantFrom("softmax" as const, "sigmoid" as const), (seed, N, scoring_func) => {
        const c = config({ n_routed_experts: 1, num_experts_per_tok: 1, scoring_func });
        const w = setup(c, seed);
        const x = input(seed + 1, N);
        const e = expert(w.experts, 0);
        const { out } = moeLayer(x, w, c);
        const alone = swigluMlp(x, e.gate, e.up, e.down);
        // softmax of one logit is 1; a sigmoid weight is divided by itself: the expert enters with weight exactly 1
        expect(out.data).toEqual(alone.data);
      }),
      { numRuns: 30 },
    );
  });

  it("out = Σ kept w·Expert_e(x) + shared(x), written out token by token", () => {
    const c = config({ n_shared_experts: 2, capacityFactor: 0.5, scoring_func: "sigmoid", topk_method: "noaux_tc", routed_scaling_factor: 2.5 });
    const w = setup(c, 3);
    const x = input(4, 9);
    const { out, routing, stats } = moeLayer(x, w, c);
    expect(stats.dropped).toBeGreaterThan(0); // the check covers dropped assignments too
    const s = w.shared_experts!;
    for (let t = 0; t < 9; t++) {
      const row = sliceRows(x, t, t + 1);
      const expected = new Float64Array(swigluMlp(row, s.gate_proj, s.up_proj, s.down_proj).data);
      for (let r = 0; r < 2; r++) {
        if (!routing.kept[t * 2 + r]) continue;
        const e = expert(w.experts, routing.experts[t * 2 + r]!);
        const y = swigluMlp(row, e.gate, e.up, e.down);
        y.data.forEach((v, i) => (expected[i] += routing.weights[t * 2 + r]! * v));
      }
      expected.forEach((v, i) => expect(out.data[t * D + i]).toBeCloseTo(v, 6));
    }
  });

  it("routes the routed experts through kernels.moe and the rest through the kernels it is given", () => {
    const calls: string[] = [];
    const spy: Kernels = {
      ...reference,
      name: "spy",
      linear: (x, weight) => (calls.push("linear"), reference.linear(x, weight)),
      moe: (x, routing, experts) => (calls.push("moe"), reference.moe(x, routing, experts)),
    };
    const c = config({ n_shared_experts: 1 });
    moeLayer(input(5, 3), setup(c), c, spy);
    expect(calls).toEqual(["linear", "moe", "linear", "linear", "linear"]);
  });

  it("padding rows output zeros and leave the real rows as they are without them", () => {
    fc.assert(
      fc.property(routerConfigArb, fc.integer({ min: 0, max: 1000 }), fc.constantFrom(null, 1, 1.5), (rc, seed, cf) => {
        const c = moeConfig({ ...rc, moe_intermediate_size: 3, n_shared_experts: 1, capacityFactor: cf });
        const w = setup(c, seed);
        const x = input(seed + 1, 7);
        const mask = Uint8Array.from([1, 0, 1, 1, 0, 0, 1]);
        const padded = moeLayer(x, w, c, reference, { mask });
        const real = [0, 2, 3, 6];
        const alone = moeLayer(gather(x, real), w, c);
        real.forEach((t, i) => expect([...padded.out.data.subarray(t * D, (t + 1) * D)]).toEqual([...alone.out.data.subarray(i * D, (i + 1) * D)]));
        [1, 4, 5].forEach((t) => expect(padded.out.data.subarray(t * D, (t + 1) * D).every((v) => v === 0)).toBe(true));
        expect(padded.stats.tokens).toBe(4);
        expect(padded.stats.routed).toEqual(alone.stats.routed);
        expect(padded.stats.kept).toEqual(alone.stats.kept);
      }),
      { numRuns: 40 },
    );
  });

  it("N = 0 is a no-op", () => {
    const c = config({ capacityFactor: 1 });
    const r = moeLayer(input(1, 0), setup(c), c);
    expect(r.out.shape).toEqual([0, D]);
    expect(r.stats.capacity).toBe(0);
    expect(r.stats.dropRate).toBe(0);
  });

  it("initMoe is seeded and moeParams round-trips with checkpoint names", () => {
    const c = config({ n_shared_experts: 1, topk_method: "noaux_tc", scoring_func: "sigmoid" });
    const a = setup(c, 9);
    expect(setup(c, 9).experts.down.data).toEqual(a.experts.down.data);
    const params = moeParams(a, "mlp.");
    expect(Object.keys(params).sort()).toEqual([
      "mlp.experts.down_proj.weight", "mlp.experts.gate_proj.weight", "mlp.experts.up_proj.weight",
      "mlp.gate.e_score_correction_bias", "mlp.gate.weight",
      "mlp.shared_experts.down_proj.weight", "mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight",
    ]);
    expect(moeWeightsFromParams(params, c, "mlp.")).toEqual(a);
  });

  it("refuses bad configs and weights, naming the argument", () => {
    expect(() => config({ capacityFactor: 0 })).toThrow(/^capacityFactor: expected/);
    expect(() => config({ dropPolicy: "fifo" as "probs" })).toThrow(/^dropPolicy: expected/);
    expect(() => config({ n_shared_experts: -1 })).toThrow(/^n_shared_experts: expected/);
    expect(() => config({ moe_intermediate_size: 0 })).toThrow(/^moe_intermediate_size: expected/);
    expect(() => config({ num_experts_per_tok: 5 })).toThrow(/^num_experts_per_tok: expected/);
    const c = config();
    const w = setup(c);
    expect(() => moeLayer(randBounded(new Random(1), [3, D + 1]), w, c)).toThrow(/^x: expected shape \[N=3, 6\]/);
    expect(() => moeLayer(input(1, 3), w, config({ n_shared_experts: 1 }))).toThrow(/^shared_experts: expected/);
    expect(() => moeLayer(input(1, 3), w, c, reference, { mask: new Uint8Array(2) })).toThrow(/^mask: expected/);
    expect(() => moeLayer(input(1, 3), w, c, reference, { mask: Uint8Array.of(1, 2, 0) })).toThrow("mask[1]: expected 0 (padding) or 1 (a real token), got 2");
  });
});

function gather(x: Tensor, rows: number[]): Tensor {
  const Dx = x.shape[1]!;
  const data = new Float32Array(rows.length * Dx);
  rows.forEach((t, i) => data.set(x.data.subarray(t * Dx, (t + 1) * Dx), i * Dx));
  return { shape: [rows.length, Dx], data };
}

describe("moe layer: configs with defaults left out", () => {
  it("initMoe and moeLayer fill the defaults instead of drawing NaN-shaped weights", () => {
    const input = { n_routed_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 4 } as MoeConfigInput;
    const weights = initMoe(new Random(1), input as MoeConfig, 8);
    expect(weights.shared_experts).toBeNull(); // n_shared_experts defaults to 0
    expect(weights.experts.gate.shape).toEqual([4, 4, 8]);
    const x = randBounded(new Random(2), [3, 8]);
    expect(moeLayer(x, weights, input as MoeConfig).out).toEqual(moeLayer(x, weights, moeConfig(input)).out);
  });
});
