import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { updateBias } from "../src/moe/balance.ts";
import { applyCapacity } from "../src/moe/capacity.ts";
import type { Routing } from "../src/moe/experts.ts";
import { balanceLoss, entropyLoss, moeLosses, sequenceBalanceLoss, zLoss } from "../src/moe/losses.ts";
import { route, routerConfig } from "../src/moe/router.ts";
import { routingProbs, routingStats } from "../src/moe/stats.ts";
import { routingTable } from "../src/moe/table.ts";
import { randBounded, Random } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";

// The capacity test's hand case (6 tokens, 4 experts, k = 2, C = 3, rank-position): expert 0 is routed 6 and
// keeps 3, the others are routed 2 and keep 2.
const P = [
  [0.44, 0.46, 0.06, 0.04], [0.9, 0.03, 0.05, 0.02], [0.41, 0.3, 0.15, 0.14],
  [0.42, 0.1, 0.08, 0.4], [0.35, 0.03, 0.6, 0.02], [0.8, 0.06, 0.04, 0.1],
];
const probs = tensor([6, 4], P.flat());
const r = route(tensor([6, 4], P.flat().map(Math.log)), routerConfig({ n_routed_experts: 4, num_experts_per_tok: 2 }));
const routing: Routing = { ...r, kept: applyCapacity(r.experts, r.weights, 2, 4, 3) };

describe("routing statistics", () => {
  it("count the hand case", () => {
    const s = routingStats(routing, probs, 3);
    expect(s.routed).toEqual([6, 2, 2, 2]);
    expect(s.kept).toEqual([3, 2, 2, 2]);
    expect(s.dropped).toBe(3);
    expect(s.dropRate).toBe(3 / 12);
    expect(s.maxVio).toBe(6 / 3 - 1);
    expect(s.activeFraction).toBe(1);
    expect(s.capacityUtilisation).toBe(9 / 12);
    const H = (p: number[]) => -p.reduce((h, v) => h + v * Math.log(v), 0);
    expect(s.tokenEntropy[1]).toBeCloseTo(H(P[1]!), 6);
    const mean = [0, 1, 2, 3].map((e) => P.reduce((m, row) => m + row[e]! / 6, 0));
    expect(s.batchEntropy).toBeCloseTo(H(mean), 6);
    expect(s.batchEntropyNormalised).toBeCloseTo(H(mean) / Math.log(4), 6);
  });

  it("exclude padding, report null utilisation when dropless, and zeros for an empty batch", () => {
    const s = routingStats(routing, probs, null, Uint8Array.from([0, 1, 1, 1, 1, 1]));
    expect(s.tokens).toBe(5);
    expect(s.routed).toEqual([5, 1, 2, 2]);
    expect(s.capacityUtilisation).toBeNull();
    expect(s.tokenEntropy[0]).toBe(0);
    const empty = routingStats({ k: 2, experts: new Int32Array(0), weights: new Float32Array(0), kept: new Uint8Array(0) }, tensor([0, 4]), 0);
    expect([empty.dropRate, empty.maxVio, empty.capacityUtilisation, empty.meanTokenEntropy, empty.activeFraction]).toEqual([0, 0, 0, 0, 0]);
  });

  it("normalise sigmoid scores into a distribution", () => {
    const p = routingProbs(tensor([1, 3], [0.5, 0.25, 0.25]), "sigmoid");
    expect([...p.data]).toEqual([0.5, 0.25, 0.25]);
    expect([...routingProbs(tensor([1, 2], [0.3, 0.1]), "sigmoid").data].map((v) => +v.toFixed(6))).toEqual([0.75, 0.25]);
  });

  it("the routing table shows choices, weights and drops", () => {
    const table = routingTable(routing, { labels: ["a", "b", "c", "d", "e", "f"] });
    const lines = table.split("\n");
    expect(lines).toHaveLength(7);
    expect(lines[6]).toMatch(/^ {4}5 {2}"f" +e0 +0\.8000 {2}DROPPED {2}e3 +0\.1000 {2}kept$/);
    const short = routingTable(routing, { mask: Uint8Array.from([1, 0, 1, 1, 1, 1]), maxTokens: 2 }).split("\n");
    expect(short).toEqual([expect.stringMatching(/^token  choice 1 +choice 2$/), expect.stringMatching(/^ {4}0  e1 +0\.4600  kept +e0 +0\.4400  DROPPED$/), "    1  padding", "  … 4 more tokens"]);
    expect(() => routingTable(routing, { labels: ["a"] })).toThrow(/^labels: expected 6 labels/);
  });
});

describe("losses", () => {
  const oneHot = (rows: number[], E: number): Tensor => tensor([rows.length, E], rows.flatMap((e) => Array.from({ length: E }, (_, i) => +(i === e))));
  const routingOf = (rows: number[]): Routing => ({
    k: 1, experts: Int32Array.from(rows), weights: new Float32Array(rows.length).fill(1), kept: new Uint8Array(rows.length).fill(1),
  });

  it("balance is 1 when balanced, E when every token goes to one expert", () => {
    const uniform = tensor([4, 4], new Array(16).fill(0.25));
    expect(balanceLoss(uniform, routingOf([0, 1, 2, 3]))).toBeCloseTo(1, 12);
    expect(balanceLoss(oneHot([2, 2, 2, 2], 4), routingOf([2, 2, 2, 2]))).toBe(4);
    expect(balanceLoss(probs, routing)).toBeCloseTo(4 * [0, 1, 2, 3].reduce((s, e) => s + ([6, 2, 2, 2][e]! / 12) * P.reduce((m, row) => m + row[e]! / 6, 0), 0), 6);
  });

  it("the sequence-wise form sees imbalance inside sequences that the batch form averages away", () => {
    const rows = [0, 0, 1, 1]; // sequence 1 all expert 0, sequence 2 all expert 1
    expect(balanceLoss(oneHot(rows, 2), routingOf(rows))).toBe(1);
    expect(sequenceBalanceLoss(oneHot(rows, 2), routingOf(rows), 2)).toBe(2);
    expect(sequenceBalanceLoss(oneHot(rows, 2), routingOf(rows), 4)).toBe(1);
    expect(() => sequenceBalanceLoss(oneHot(rows, 2), routingOf(rows), 3)).toThrow(/^seqLen: expected a divisor of N=4/);
  });

  it("z-loss is the mean squared logsumexp; the entropy term rewards confident tokens and a spread batch", () => {
    expect(zLoss(tensor([2, 4]))).toBeCloseTo(Math.log(4) ** 2, 12);
    expect(zLoss(tensor([1, 2], [1000, 1000]))).toBeCloseTo((1000 + Math.log(2)) ** 2, 6); // no overflow
    expect(entropyLoss(tensor([2, 4], new Array(8).fill(0.25)))).toBeCloseTo(0, 12);
    expect(entropyLoss(oneHot([0, 1, 2, 3], 4))).toBeCloseTo(-Math.log(4), 12);
    expect(entropyLoss(oneHot([0, 1, 2, 3], 4), 1, 0.5)).toBeCloseTo(-0.5 * Math.log(4), 12);
    const all = moeLosses(tensor([6, 4], P.flat().map(Math.log)), probs, routing, 3);
    expect(all.sequence).toBeCloseTo((balanceLoss(tensor([3, 4], P.slice(0, 3).flat()), { ...routing, experts: routing.experts.slice(0, 6) }) +
      balanceLoss(tensor([3, 4], P.slice(3).flat()), { ...routing, experts: routing.experts.slice(6) })) / 2, 6);
  });
});

describe("bias balancing", () => {
  it("moves each bias by u toward the mean load", () => {
    const b = updateBias(tensor([4], [0, 0, 0.5, 0]), [6, 2, 2, 2], 0.001);
    expect([...b.data]).toEqual([-0.001, 0.001, 0.501, 0.001].map(Math.fround));
    expect([...updateBias(tensor([2]), [3, 3]).data]).toEqual([0, 0]);
    expect(() => updateBias(tensor([2]), [3])).toThrow(/^routed: expected 2 loads/);
  });

  it("repeated updates on a skewed router lower the imbalance", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), (seed) => {
        const E = 8;
        const config = routerConfig({ n_routed_experts: E, num_experts_per_tok: 2, scoring_func: "sigmoid", topk_method: "noaux_tc" });
        const rng = new Random(seed);
        // Skewed: expert e's logits are offset by 1 - 2e/(E-1) (from +1 to -1), plus a seeded jitter.
        const skew = randBounded(rng, [E], 0.2).data.map((v, e) => v + 1 - (2 * e) / (E - 1));
        const batch = (N: number) => {
          const x = randBounded(rng, [N, E]);
          return tensor([N, E], x.data.map((v, i) => v + skew[i % E]!));
        };
        const loads = (b: Tensor, logits: Tensor) => {
          const N = logits.shape[0]!;
          return routingStats({ ...route(logits, config, b), kept: new Uint8Array(N * 2) }, tensor([N, E]), null);
        };
        let bias = tensor([E]);
        for (let step = 0; step < 50; step++) bias = updateBias(bias, loads(bias, batch(64)).routed, 0.01);
        const test = batch(512);
        expect(loads(bias, test).maxVio).toBeLessThan(loads(tensor([E]), test).maxVio);
      }),
      { numRuns: 20 },
    );
  });
});
