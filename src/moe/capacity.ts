// Expert capacity (Switch Transformer, GShard; spec/moe.md). DeepSeek-V3's reference never drops a token:
// capacity is the Switch/GShard addition that the articles describe. Each expert keeps at most
//   C = ceil(capacityFactor · k · N / E)
// assignments, N being the non-padding tokens of the batch at hand (so C follows the batch: the grounded meaning
// of the material's "dynamic capacity"; its `int(batch·cf/E)` floors and forgets k). capacityFactor null = dropless.
// Which assignments an overfull expert keeps is the drop order, each deterministic:
//   "rank-position" (GShard, Switch): all first choices in token order, then all second choices, …
//   "rank-bpr" (V-MoE's batch-prioritised routing): the same with tokens by descending top-1 weight (the weight
//       of the token's first choice), ties to the lower token
//   "probs" (Megatron-LM's default, DeepSeek-V2's "drop the lowest affinity"): each expert keeps its C
//       assignments of highest weight, ties to the lower token, then the lower rank
// A dropped assignment adds nothing; kept weights are not renormalised.

import { argError, checkInteger, checkNumber, checkOneOf } from "../errors.ts";

export const DROP_POLICIES = ["rank-position", "rank-bpr", "probs"] as const;
export type DropPolicy = (typeof DROP_POLICIES)[number];

/** C = ceil(cf·k·N/E), or null when dropless. A relative 1e-12 is shaved first so that 1.1·10 gives 11, not 12. */
export function expertCapacity(capacityFactor: number | null, k: number, N: number, E: number): number | null {
  checkCapacityFactor(capacityFactor);
  checkInteger("k", k, 1);
  checkInteger("N", N, 0);
  checkInteger("E", E, 1);
  if (capacityFactor === null) return null;
  const exact = (capacityFactor * k * N) / E;
  return Math.ceil(exact - exact * 1e-12);
}

export function checkCapacityFactor(capacityFactor: number | null): void {
  if (capacityFactor !== null) checkNumber("capacityFactor", capacityFactor, Number.MIN_VALUE, Infinity, " or null (0 excluded)");
}

/** A padding flag per token, 1 = a real token; absent: every token is real. */
export type TokenMask = Uint8Array;

export function checkMask(mask: TokenMask | undefined, N: number): void {
  if (mask === undefined) return;
  if (!(mask instanceof Uint8Array) || mask.length !== N) {
    throw argError("mask", `a Uint8Array of ${N} flags (one per token)`, mask instanceof Uint8Array ? mask.length : typeof mask);
  }
  const bad = mask.findIndex((flag) => flag > 1); // token ids or counts passed by mistake would read as "real"
  if (bad >= 0) throw argError(`mask[${bad}]`, "0 (padding) or 1 (a real token)", mask[bad]);
}

/** The number of real tokens. */
export const countTokens = (N: number, mask?: TokenMask): number =>
  mask ? mask.reduce((n, m) => n + m, 0) : N;

/**
 * Which of the N·k assignments (token-major, expert `experts[t·k + r]`, weight `weights[t·k + r]`) each expert
 * keeps under capacity C (null: all). Padding tokens' assignments are never kept and take no capacity.
 */
export function applyCapacity(
  experts: Int32Array,
  weights: Float32Array,
  k: number,
  E: number,
  C: number | null,
  policy: DropPolicy = "rank-position",
  mask?: TokenMask,
): Uint8Array {
  checkInteger("k", k, 1);
  checkInteger("E", E, 1);
  if (experts.length % k !== 0) throw argError("experts", `a multiple of k=${k} entries`, experts.length);
  const N = experts.length / k;
  if (weights.length !== N * k) throw argError("weights", `${N * k} entries`, weights.length);
  if (C !== null) checkInteger("C", C, 0);
  checkOneOf("dropPolicy", policy, DROP_POLICIES);
  checkMask(mask, N);
  for (let a = 0; a < experts.length; a++) {
    const e = experts[a]!;
    if (!Number.isInteger(e) || e < 0 || e >= E) throw argError(`experts[${a}]`, `an expert in [0, ${E - 1}]`, e);
  }

  const kept = new Uint8Array(N * k);
  if (C === null) { // dropless: every real token's assignments stay, in any order
    for (let a = 0; a < N * k; a++) kept[a] = !mask || mask[Math.floor(a / k)] !== 0 ? 1 : 0;
    return kept;
  }
  const load = new Int32Array(E);
  for (const a of priorityOrder(weights, k, N, policy)) {
    if (mask && mask[Math.floor(a / k)] === 0) continue; // padding takes no capacity
    const e = experts[a]!;
    if (load[e]! < C) {
      kept[a] = 1;
      load[e]!++;
    }
  }
  return kept;
}

/** Every assignment index t·k + r in the order in which experts take them; the first C for an expert stay. */
function priorityOrder(weights: Float32Array, k: number, N: number, policy: DropPolicy): number[] {
  const tokens = Array.from({ length: N }, (_, t) => t);
  if (policy === "rank-bpr") tokens.sort((s, t) => weights[t * k]! - weights[s * k]! || s - t);
  if (policy === "probs") {
    // Highest weight first; experts are independent, so one global order serves them all. a = t·k + r, so the
    // lower index is the lower token, then the lower rank.
    return Array.from({ length: N * k }, (_, a) => a).sort((a, b) => weights[b]! - weights[a]! || a - b);
  }
  const order: number[] = [];
  for (let r = 0; r < k; r++) for (const t of tokens) order.push(t * k + r);
  return order;
}
