// The router's auxiliary losses (spec/moe.md), computed and shown now, applied once training exists. Each
// returns its raw value; the coefficient is the caller's (defaults below, with where they come from).
//   balance      E·Σ_i f_i·P_i, f_i = routed_i / (N·k) (before capacity), P_i = mean_t p_(t,i). Balanced routing
//                gives 1, so alpha·balance gives alpha. Switch counts f per token (k = 1); HF's DeepSeek counts it
//                per token too, which is k times ours: our f sums to 1 over the experts.
//   sequence     V3's sequence-wise form: the same per sequence of T tokens, then averaged over the sequences.
//   zLoss        mean_t (logsumexp_e logits_(t,e))² (ST-MoE, Zoph et al. 2022).
//   entropy      the material's "entropy-constrained routing loss", which no paper defines:
//                beta_tok·mean_t H(p_t) - beta_bal·H(mean_t p_t): confident tokens, a spread-out batch.
// p is the routing distribution: softmax scores, or sigmoid scores divided by their sum (as V3's sequence loss).
// Padding tokens (mask 0) count nowhere; with no real token every loss is 0.

import { argError, checkInteger } from "../errors.ts";
import { logsumexp } from "../ops.ts";
import { expectShape, type Tensor } from "../tensor.ts";
import { checkMask, countTokens, type TokenMask } from "./capacity.ts";
import type { Routing } from "./experts.ts";
import { entropy, expertLoads, meanProbs } from "./stats.ts";

/** Coefficients: Switch's alpha 1e-2, V3's sequence-wise 1e-4, ST-MoE's z 1e-3; the entropy term reports only. */
export const lossCoefficients = { balance: 1e-2, sequence: 1e-4, zLoss: 1e-3, entropy: 0 } as const;

/** E·Σ f_i·P_i over the batch (1 when balanced). */
export function balanceLoss(probs: Tensor, routing: Routing, mask?: TokenMask): number {
  const { N, E } = expectShape("probs", probs, ["N", "E"]);
  if (routing.experts.length !== N * routing.k) throw argError("routing.experts", `${N * routing.k} entries`, routing.experts.length);
  const assignments = countTokens(N, mask) * routing.k;
  if (assignments === 0) return 0;
  const { routed } = expertLoads(routing, E, mask);
  const P = meanProbs(probs, mask);
  let sum = 0;
  for (let e = 0; e < E; e++) sum += (routed[e]! / assignments) * P[e]!;
  return E * sum;
}

/** V3's sequence-wise balance: balanceLoss per sequence of `seqLen` consecutive tokens, averaged over sequences. */
export function sequenceBalanceLoss(probs: Tensor, routing: Routing, seqLen: number, mask?: TokenMask): number {
  const { N, E } = expectShape("probs", probs, ["N", "E"]);
  checkInteger("seqLen", seqLen, 1);
  if (N % seqLen !== 0) throw argError("seqLen", `a divisor of N=${N}`, seqLen);
  checkMask(mask, N);
  const { k } = routing;
  let sum = 0;
  let sequences = 0;
  for (let start = 0; start < N; start += seqLen) {
    const seqMask = mask?.subarray(start, start + seqLen);
    if (countTokens(seqLen, seqMask) === 0) continue;
    const slice = <T extends Int32Array | Float32Array | Uint8Array>(a: T) => a.subarray(start * k, (start + seqLen) * k) as T;
    const seqRouting: Routing = { k, experts: slice(routing.experts), weights: slice(routing.weights), kept: slice(routing.kept) };
    const seqProbs = { shape: [seqLen, E], data: probs.data.subarray(start * E, (start + seqLen) * E) };
    sum += balanceLoss(seqProbs, seqRouting, seqMask);
    sequences++;
  }
  return sequences === 0 ? 0 : sum / sequences;
}

/** ST-MoE's router z-loss: mean over tokens of (logsumexp of the logits)². */
export function zLoss(logits: Tensor, mask?: TokenMask): number {
  const { N, E } = expectShape("logits", logits, ["N", "E"]);
  checkMask(mask, N);
  const n = countTokens(N, mask);
  let sum = 0;
  for (let t = 0; t < N; t++) {
    if (mask && !mask[t]) continue;
    sum += logsumexp(logits.data.subarray(t * E, (t + 1) * E)) ** 2;
  }
  return n === 0 ? 0 : sum / n;
}

/** The material's entropy term: beta_tok·mean_t H(p_t) - beta_bal·H(mean_t p_t). */
export function entropyLoss(probs: Tensor, betaTok = 1, betaBal = 1, mask?: TokenMask): number {
  const { N, E } = expectShape("probs", probs, ["N", "E"]);
  checkMask(mask, N);
  const n = countTokens(N, mask);
  if (n === 0) return 0;
  let tokenEntropy = 0;
  for (let t = 0; t < N; t++) if (!mask || mask[t]) tokenEntropy += entropy(probs.data.subarray(t * E, (t + 1) * E)) / n;
  return betaTok * tokenEntropy - betaBal * entropy(meanProbs(probs, mask));
}

export interface MoeLosses {
  balance: number;
  sequence: number;
  zLoss: number;
  entropy: number;
}

/** Every loss's raw value for one batch (sequence-wise over `seqLen`, default the whole batch). */
export function moeLosses(logits: Tensor, probs: Tensor, routing: Routing, seqLen?: number, mask?: TokenMask): MoeLosses {
  const N = probs.shape[0]!;
  return {
    balance: balanceLoss(probs, routing, mask),
    sequence: sequenceBalanceLoss(probs, routing, seqLen ?? Math.max(N, 1), mask),
    zLoss: zLoss(logits, mask),
    entropy: entropyLoss(probs, 1, 1, mask),
  };
}
