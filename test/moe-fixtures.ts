// Shared generators for the MoE tests: valid router configurations and seeded logits without near-ties.

import fc from "fast-check";
import { randBounded, Random } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Routing } from "../src/moe/experts.ts";
import { routerConfig, type RouterConfig } from "../src/moe/router.ts";

/** Any valid router configuration: E = n_group · groupSize, k within the eligible experts. */
export const routerConfigArb: fc.Arbitrary<RouterConfig> = fc
  .record({
    nGroups: fc.constantFrom(1, 2, 4),
    groupSize: fc.integer({ min: 1, max: 4 }),
    keepFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    kFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    scoring_func: fc.constantFrom("softmax" as const, "sigmoid" as const),
    topk_method: fc.constantFrom("greedy" as const, "noaux_tc" as const),
    norm_topk_prob: fc.boolean(),
    routed_scaling_factor: fc.constantFrom(1, 2.5, 0.5),
  })
  .map((r) => {
    const topk_group = 1 + Math.floor(r.keepFraction * (r.nGroups - 1) + 0.5);
    const eligible = topk_group * r.groupSize;
    return routerConfig({
      n_routed_experts: r.nGroups * r.groupSize,
      num_experts_per_tok: 1 + Math.floor(r.kFraction * (eligible - 1) + 0.5),
      n_group: r.nGroups,
      topk_group,
      scoring_func: r.scoring_func,
      topk_method: r.topk_method,
      norm_topk_prob: r.norm_topk_prob,
      routed_scaling_factor: r.routed_scaling_factor,
    });
  });

/** Seeded logits [N, E] whose values differ pairwise by at least `gap` in each row (no near-ties by default). */
export function separatedLogits(seed: number, N: number, E: number, gap = 1e-3): Tensor {
  const rng = new Random(seed);
  for (;;) {
    const t = randBounded(rng, [N, E], 1.5);
    if (minRowGap(t.data, E) >= gap) return t;
  }
}

/** A seeded selection bias [E] (std 0.1), as bias balancing would have moved it. */
export const randomBias = (seed: number, E: number): Tensor => randBounded(new Random((seed ^ 0xb1a5) >>> 0), [E], 0.1);

function minRowGap(data: Float32Array, E: number): number {
  let gap = Infinity;
  for (let base = 0; base < data.length; base += E) {
    const row = Array.from(data.subarray(base, base + E)).sort((a, b) => a - b);
    for (let i = 1; i < row.length; i++) gap = Math.min(gap, row[i]! - row[i - 1]!);
  }
  return gap;
}

/** A random routing of N tokens to k of E experts each, with random weights and about 80 % of assignments kept. */
export function randomRouting(rng: Random, N: number, E: number, k: number): Routing {
  return {
    k,
    experts: Int32Array.from({ length: N * k }, () => rng.int(E)),
    weights: Float32Array.from({ length: N * k }, () => rng.uniform()),
    kept: Uint8Array.from({ length: N * k }, () => (rng.uniform() < 0.8 ? 1 : 0)),
  };
}
