import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { limitGroups, route, routerConfig, topk, type RouterConfig, type RouterConfigInput } from "../src/moe/router.ts";
import { tensor, type Tensor } from "../src/tensor.ts";
import { randomBias, routerConfigArb, separatedLogits } from "./moe-fixtures.ts";

const cfg = (c: Partial<RouterConfigInput>): RouterConfig =>
  routerConfig({ n_routed_experts: 4, num_experts_per_tok: 2, ...c });
const chosen = (r: { experts: Int32Array; k: number }, t: number) => [...r.experts.subarray(t * r.k, (t + 1) * r.k)];
const logit = (p: number) => Math.log(p / (1 - p)); // sigmoid⁻¹

describe("router by hand", () => {
  it("softmax top-2: weights are the probabilities, unnormalised, times the scale", () => {
    const probs = [0.1, 0.5, 0.15, 0.25];
    const r = route(tensor([1, 4], probs.map(Math.log)), cfg({ routed_scaling_factor: 2 }));
    expect(chosen(r, 0)).toEqual([1, 3]);
    expect(r.weights[0]).toBeCloseTo(1.0, 6);
    expect(r.weights[1]).toBeCloseTo(0.5, 6);
  });

  it("norm_topk_prob divides by the chosen experts' sum", () => {
    const r = route(tensor([1, 4], [0.1, 0.5, 0.15, 0.25].map(Math.log)), cfg({ norm_topk_prob: true }));
    expect(r.weights[0]).toBeCloseTo(2 / 3, 6);
    expect(r.weights[1]).toBeCloseTo(1 / 3, 6);
  });

  it("sigmoid: independent scores, always normalised over the chosen", () => {
    const r = route(tensor([1, 4], [0.9, 0.2, 0.6, 0.3].map(logit)), cfg({ scoring_func: "sigmoid", routed_scaling_factor: 2.5 }));
    expect(chosen(r, 0)).toEqual([0, 2]);
    expect(r.weights[0]).toBeCloseTo((2.5 * 0.9) / 1.5, 6);
    expect(r.weights[1]).toBeCloseTo((2.5 * 0.6) / 1.5, 6);
  });

  it("ties go to the lower expert index", () => {
    const r = route(tensor([2, 4], [0, 0, 0, 0, 1, 3, 3, 3]), cfg({ num_experts_per_tok: 3 }));
    expect(chosen(r, 0)).toEqual([0, 1, 2]);
    expect(chosen(r, 1)).toEqual([1, 2, 3]);
  });

  it("tied groups go to the lower group", () => {
    const r = route(tensor([1, 4], [0.5, 0.3, 0.3, 0.5].map(logit)), cfg({ n_group: 2, topk_group: 1, scoring_func: "sigmoid" }));
    expect(chosen(r, 0)).toEqual([0, 1]);
  });

  it("group score: best expert (greedy) versus sum of the top two (noaux_tc, as V3)", () => {
    // group 0 = experts {0, 1} scores 0.9, 0.1 ; group 1 = {2, 3} scores 0.8, 0.7
    const logits = tensor([1, 4], [0.9, 0.1, 0.8, 0.7].map(logit));
    const base = { n_group: 2, topk_group: 1, scoring_func: "sigmoid" } as const;
    expect(chosen(route(logits, cfg(base)), 0)).toEqual([0, 1]); // max: 0.9 > 0.8
    const zeroBias = tensor([4]);
    expect(chosen(route(logits, cfg({ ...base, topk_method: "noaux_tc" }), zeroBias), 0)).toEqual([2, 3]); // 1.5 > 1.0
  });

  it("excluded experts are -Infinity, not zeroed: negative selection scores cannot reach an excluded group", () => {
    // A bias of -2 makes every selection score negative. Group 0 {0, 1} wins (0.9+0.8 > 0.2+0.1); zeroing group 1
    // instead of excluding it would pick experts 2 and 3 (0 > s - 2).
    const logits = tensor([1, 4], [0.9, 0.8, 0.2, 0.1].map(logit));
    const bias = tensor([4], [-2, -2, -2, -2]);
    const r = route(logits, cfg({ n_group: 2, topk_group: 1, scoring_func: "sigmoid", topk_method: "noaux_tc" }), bias);
    expect(chosen(r, 0)).toEqual([0, 1]);
  });

  it("the bias moves the choice, the weight stays the unbiased score", () => {
    const logits = tensor([1, 4], [0.9, 0.2, 0.6, 0.3].map(logit));
    const c = cfg({ scoring_func: "sigmoid", topk_method: "noaux_tc", num_experts_per_tok: 1 });
    const r = route(logits, c, tensor([4], [0, 0.8, 0, 0]));
    expect(chosen(r, 0)).toEqual([1]);
    expect(r.weights[0]).toBeCloseTo(1, 6); // 0.2 / 0.2: the bias never enters the weight
  });
});

describe("router properties", () => {
  const inputs = fc.record({ config: routerConfigArb, seed: fc.integer({ min: 0, max: 2 ** 31 }), N: fc.integer({ min: 0, max: 9 }) });
  const run = (config: RouterConfig, logits: Tensor, seed: number) =>
    route(logits, config, config.topk_method === "noaux_tc" ? randomBias(seed, config.n_routed_experts) : null);

  it("chosen experts are distinct, eligible, sorted by selection; sigmoid or normalised weights sum to the scale", () => {
    fc.assert(
      fc.property(inputs, ({ config, seed, N }) => {
        const E = config.n_routed_experts;
        const r = run(config, separatedLogits(seed, N, E), seed);
        for (let t = 0; t < N; t++) {
          const c = chosen(r, t);
          expect(new Set(c).size).toBe(c.length);
          const groupsUsed = new Set(c.map((e) => Math.floor(e / (E / config.n_group))));
          expect(groupsUsed.size).toBeLessThanOrEqual(config.topk_group);
          const w = [...r.weights.subarray(t * r.k, (t + 1) * r.k)];
          if (config.scoring_func === "sigmoid" || config.norm_topk_prob) {
            expect(w.reduce((s, v) => s + v, 0)).toBeCloseTo(config.routed_scaling_factor, 5);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it("n_group = 1 and topk_group = n_group both equal plain routing", () => {
    fc.assert(
      fc.property(inputs, ({ config, seed, N }) => {
        const logits = separatedLogits(seed, N, config.n_routed_experts);
        const plain = run({ ...config, n_group: 1, topk_group: 1 }, logits, seed);
        const allGroups = run({ ...config, topk_group: config.n_group }, logits, seed);
        expect(allGroups.experts).toEqual(plain.experts);
        expect(allGroups.weights).toEqual(plain.weights);
      }),
      { numRuns: 100 },
    );
  });

  it("the bias changes the selection but never the weight of a chosen expert", () => {
    fc.assert(
      fc.property(inputs, ({ config, seed, N }) => {
        const c = { ...config, topk_method: "noaux_tc" as const, norm_topk_prob: false, scoring_func: "sigmoid" as const, num_experts_per_tok: 1 };
        const E = c.n_routed_experts;
        const logits = separatedLogits(seed, N, E);
        const biased = route(logits, c, randomBias(seed, E));
        for (let t = 0; t < N; t++) expect(biased.weights[t]).toBeCloseTo(c.routed_scaling_factor, 5); // s_e / s_e
        const k2 = { ...config, topk_method: "noaux_tc" as const };
        const r = route(logits, k2, randomBias(seed, E));
        const scores = route(logits, k2, tensor([E])).scores; // the same unbiased scores
        for (let t = 0; t < N; t++) {
          const c2 = chosen(r, t);
          const raw = c2.map((e) => scores.data[t * E + e]!);
          const sum = raw.reduce((s, v) => s + v, 0);
          const normalise = k2.scoring_func === "sigmoid" || k2.norm_topk_prob;
          c2.forEach((_, i) => expect(r.weights[t * r.k + i]).toBeCloseTo((raw[i]! / (normalise ? sum : 1)) * k2.routed_scaling_factor, 5));
        }
      }),
      { numRuns: 100 },
    );
  });

  it("a large enough bias on one expert puts it first for every token", () => {
    const c = cfg({ scoring_func: "sigmoid", topk_method: "noaux_tc" });
    const r = route(separatedLogits(7, 20, 4), c, tensor([4], [0, 0, 0, 2]));
    for (let t = 0; t < 20; t++) expect(r.experts[t * 2]).toBe(3);
  });
});

// topk and limitGroups against a sort: values from a few levels (ties) and -Infinity (banned experts).
describe("top-k and group limits against a sort", () => {
  const level = fc.constantFrom(-Infinity, -1.5, -0.25, 0, 0.25, 1, 2.5);
  const byRank = (values: ArrayLike<number>) => Array.from(values, (v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);

  it("topk: the k best indices, best first, ties to the lower index", () => {
    fc.assert(fc.property(fc.array(level, { minLength: 1, maxLength: 24 }), fc.nat(), (values, pick) => {
      const k = 1 + (pick % values.length);
      const out = topk(Float64Array.from(values), k, new Int32Array(k));
      expect(Array.from(out)).toEqual(byRank(values).slice(0, k).map(([, i]) => i));
    }));
  });

  it("limitGroups: the groups outside the keep best by the sum of their top 1 or 2 are -Infinity", () => {
    const shape = fc.record({ groups: fc.integer({ min: 1, max: 6 }), size: fc.integer({ min: 1, max: 5 }), keep: fc.nat(), top: fc.constantFrom(1 as const, 2 as const) });
    fc.assert(fc.property(shape.chain((s) => fc.tuple(fc.constant(s), fc.array(level, { minLength: s.groups * s.size, maxLength: s.groups * s.size }))), ([s, values]) => {
      const keep = 1 + (s.keep % s.groups);
      const select = Float64Array.from(values);
      limitGroups(select, s.groups, keep, s.top);
      const score = (g: number) => byRank(values.slice(g * s.size, (g + 1) * s.size)).slice(0, s.top).reduce((sum, [v]) => sum + v, 0);
      const scores = Array.from({ length: s.groups }, (_, g) => score(g));
      const kept = new Set(s.groups === keep ? scores.keys() : byRank(scores).slice(0, keep).map(([, g]) => g));
      const expected = values.map((v, e) => (kept.has(Math.floor(e / s.size)) ? v : -Infinity));
      expect(Array.from(select)).toEqual(expected);
    }));
  });
});

describe("router validation", () => {
  const bad: [Partial<RouterConfigInput>, string][] = [
    [{ num_experts_per_tok: 5 }, "num_experts_per_tok"],
    [{ num_experts_per_tok: 0 }, "num_experts_per_tok"],
    [{ n_group: 3 }, "n_group"],
    [{ n_group: 2, topk_group: 3 }, "topk_group"],
    [{ n_group: 4, topk_group: 1 }, "num_experts_per_tok"], // one group of one expert cannot give k = 2
    [{ scoring_func: "relu" as "softmax" }, "scoring_func"],
    [{ topk_method: "aux" as "greedy" }, "topk_method"],
    [{ routed_scaling_factor: 0 }, "routed_scaling_factor"],
    [{ n_routed_experts: 0 }, "n_routed_experts"],
  ];
  it.each(bad)("%o is refused naming %s", (c, name) => {
    expect(() => cfg(c)).toThrow(new RegExp(`^${name}: expected`));
  });

  it("logits of the wrong width and a missing or unexpected bias are refused", () => {
    expect(() => route(tensor([2, 3]), cfg({}))).toThrow(/^logits: expected shape \[N=2, 4\]/);
    expect(() => route(tensor([2, 4]), cfg({ topk_method: "noaux_tc" }))).toThrow(/^bias: expected/);
    expect(() => route(tensor([2, 4]), cfg({}), tensor([4]))).toThrow(/^bias: expected none/);
    expect(() => route(tensor([2, 4], [0, 0, 0, 0, 0, Number.NaN, 0, 0]), cfg({}))).toThrow(/^logits\[1, 1\]: expected a finite number, got NaN/);
  });
});
