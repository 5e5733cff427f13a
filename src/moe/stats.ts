// What a routing decision did, returned with every MoE call (spec/moe.md). Padding tokens count nowhere.
//   routed_e   assignments that chose expert e (before capacity); kept_e: those it kept
//   dropRate   dropped / (N·k)
//   maxVio     max_e routed_e / mean_e routed_e - 1 (DeepSeek's balance metric, Wang et al. 2024): 0 = balanced
//   active     experts that kept any assignment / E (with capacity C >= 1 the same as "routed any")
//   capacityUtilisation   Σ kept / (E·C); null when dropless (there is no C)
//   entropy    per token H(p_t) and of the batch's mean distribution H(mean_t p_t), natural log, also / ln E;
//              p is the softmax scores, or the sigmoid scores divided by their sum
// The material's "utilisation 68% → 92%" names no quantity: report both `active` and `capacityUtilisation`.
// With N = 0 every rate and entropy is 0.

import { argError } from "../errors.ts";
import { expectShape, type Tensor } from "../tensor.ts";
import { checkMask, countTokens, type TokenMask } from "./capacity.ts";
import type { Routing } from "./experts.ts";
import type { ScoringFunc } from "./router.ts";

export interface MoeStats {
  readonly tokens: number;
  readonly experts: number;
  readonly k: number;
  readonly capacity: number | null;
  readonly routed: number[];
  readonly kept: number[];
  readonly dropped: number;
  readonly dropRate: number;
  readonly maxVio: number;
  readonly activeFraction: number;
  readonly capacityUtilisation: number | null;
  /** H(p_t) per token (padding tokens: 0). */
  readonly tokenEntropy: Float64Array;
  readonly meanTokenEntropy: number;
  readonly batchEntropy: number;
  /** The two entropies divided by ln E (1 = uniform; E = 1 gives 0). */
  readonly meanTokenEntropyNormalised: number;
  readonly batchEntropyNormalised: number;
}

/** The routing distribution p [N, E]: softmax scores as they are, sigmoid scores divided by their row's sum. */
export function routingProbs(scores: Tensor, scoringFunc: ScoringFunc): Tensor {
  const { N, E } = expectShape("scores", scores, ["N", "E"]);
  if (scoringFunc === "softmax") return scores;
  const out = new Float32Array(N * E);
  for (let t = 0; t < N; t++) {
    let sum = 0;
    for (let e = 0; e < E; e++) sum += scores.data[t * E + e]!;
    for (let e = 0; e < E; e++) out[t * E + e] = sum > 0 ? scores.data[t * E + e]! / sum : 0;
  }
  return { shape: [N, E], data: out };
}

/** -Σ p ln p over a distribution, with 0·ln 0 = 0. */
export function entropy(p: ArrayLike<number>): number {
  let h = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) h -= p[i]! * Math.log(p[i]!);
  return h;
}

/** p_(t, e) averaged over the real tokens: [E] in float64 (zeros when there is none). */
export function meanProbs(probs: Tensor, mask?: TokenMask): Float64Array {
  const { N, E } = expectShape("probs", probs, ["N", "E"]);
  checkMask(mask, N);
  const mean = new Float64Array(E);
  const n = countTokens(N, mask);
  for (let t = 0; t < N; t++) {
    if (mask && !mask[t]) continue;
    for (let e = 0; e < E; e++) mean[e] += probs.data[t * E + e]! / n;
  }
  return mean;
}

/** Routed (before capacity) and kept assignments per expert, real tokens only. */
export function expertLoads(routing: Routing, E: number, mask?: TokenMask): { routed: number[]; kept: number[] } {
  const { k } = routing;
  const N = routing.experts.length / k;
  checkMask(mask, N);
  const routed = new Array<number>(E).fill(0);
  const kept = new Array<number>(E).fill(0);
  for (let a = 0; a < routing.experts.length; a++) {
    const e = routing.experts[a]!;
    if (mask && !mask[Math.floor(a / k)]) continue;
    if (e < 0 || e >= E) throw argError(`routing.experts[${a}]`, `an expert in [0, ${E - 1}]`, e);
    routed[e]!++;
    if (routing.kept[a]) kept[e]!++;
  }
  return { routed, kept };
}

/** Every statistic of spec/moe.md for one routing decision; `probs` is routingProbs of the router's scores. */
export function routingStats(routing: Routing, probs: Tensor, capacity: number | null, mask?: TokenMask): MoeStats {
  const { N, E } = expectShape("probs", probs, ["N", "E"]);
  const { k } = routing;
  if (routing.experts.length !== N * k) throw argError("routing.experts", `${N * k} entries (N=${N} · k=${k})`, routing.experts.length);
  const tokens = countTokens(N, mask);
  const { routed, kept } = expertLoads(routing, E, mask);
  const assignments = tokens * k;
  let totalKept = 0, maxRouted = -Infinity, active = 0;
  for (let e = 0; e < E; e++) {
    totalKept += kept[e]!;
    maxRouted = Math.max(maxRouted, routed[e]!);
    if (kept[e]! > 0) active++;
  }
  const dropped = assignments - totalKept;
  const meanRouted = assignments / E;

  const tokenEntropy = new Float64Array(N);
  let meanTokenEntropy = 0;
  for (let t = 0; t < N; t++) {
    if (mask && !mask[t]) continue;
    tokenEntropy[t] = entropy(probs.data.subarray(t * E, (t + 1) * E));
    meanTokenEntropy += tokenEntropy[t]! / tokens;
  }
  // One real token's mean distribution is its own: a decode step need not average it again (the same float64 sums).
  const batchEntropy = N === 1 && tokens === 1 ? tokenEntropy[0]! : entropy(meanProbs(probs, mask));
  const lnE = Math.log(E);
  return {
    tokens,
    experts: E,
    k,
    capacity,
    routed,
    kept,
    dropped,
    dropRate: assignments === 0 ? 0 : dropped / assignments,
    maxVio: assignments === 0 ? 0 : maxRouted / meanRouted - 1,
    activeFraction: active / E,
    capacityUtilisation: capacity === null ? null : capacity === 0 ? 0 : totalKept / (E * capacity),
    tokenEntropy,
    meanTokenEntropy,
    batchEntropy,
    meanTokenEntropyNormalised: E === 1 ? 0 : meanTokenEntropy / lnE,
    batchEntropyNormalised: E === 1 ? 0 : batchEntropy / lnE,
  };
}
