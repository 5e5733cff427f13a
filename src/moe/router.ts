// The MoE router (spec/moe.md, DeepSeek-V3 inference/model.py class Gate), per token x (after RMSNorm):
//   logits = x·W_gᵀ                         [N, E]
//   scores = softmax(logits) | sigmoid(logits)
//   select = scores + b                      b = gate.e_score_correction_bias ("noaux_tc"), else 0
//   groups: E experts in n_group equal groups; group score = best expert ("greedy") or the sum of the top-2
//           selection scores ("noaux_tc", as V3); only the topk_group best groups stay eligible, the rest are
//           -Infinity (never "multiplied by zero": a zeroed score can still win when scores are negative)
//   top-k over eligible experts by selection score, ties to the lower expert index
//   weights = unbiased scores of the chosen experts, divided by their sum for sigmoid or norm_topk_prob,
//             times routed_scaling_factor
// The bias changes which experts are chosen, never how much they weigh.

import { argError, checkInteger, checkNumber, checkOneOf, TinyseekError } from "../errors.ts";
import { sigmoid, softmax } from "../ops.ts";
import { expectShape, type Tensor } from "../tensor.ts";

export type ScoringFunc = "softmax" | "sigmoid";
/** "greedy": no selection bias; "noaux_tc": V3's auxiliary-loss-free bias (HF's `topk_method` names). */
export type TopkMethod = "greedy" | "noaux_tc";

export interface RouterConfig {
  readonly n_routed_experts: number;
  readonly num_experts_per_tok: number;
  readonly n_group: number;
  readonly topk_group: number;
  readonly scoring_func: ScoringFunc;
  readonly topk_method: TopkMethod;
  readonly norm_topk_prob: boolean;
  readonly routed_scaling_factor: number;
}

export const routerDefaults = {
  n_group: 1,
  topk_group: 1,
  scoring_func: "softmax",
  topk_method: "greedy",
  norm_topk_prob: false,
  routed_scaling_factor: 1,
} as const satisfies Partial<RouterConfig>;

type RouterKeys = "n_routed_experts" | "num_experts_per_tok";
export type RouterConfigInput = Pick<RouterConfig, RouterKeys> & Partial<Omit<RouterConfig, RouterKeys>>;

/**
 * Configs routerConfig or moeConfig returned: checked and frozen, so checking one again (every layer of every
 * forward does) returns it at once.
 */
const checkedConfigs = new WeakSet<object>();

/** Fills the defaults and checks every hyper-parameter, naming the one that is wrong. */
export function routerConfig(input: RouterConfigInput): RouterConfig {
  if (checkedConfigs.has(input)) return input as RouterConfig;
  const c: RouterConfig = { ...routerDefaults, ...stripUndefined(input) } as RouterConfig;
  checkInteger("n_routed_experts", c.n_routed_experts, 1);
  checkInteger("num_experts_per_tok", c.num_experts_per_tok, 1, c.n_routed_experts);
  checkInteger("n_group", c.n_group, 1, c.n_routed_experts);
  if (c.n_routed_experts % c.n_group !== 0) {
    throw argError("n_group", `a divisor of n_routed_experts=${c.n_routed_experts}`, c.n_group);
  }
  checkInteger("topk_group", c.topk_group, 1, c.n_group);
  const eligible = (c.topk_group * c.n_routed_experts) / c.n_group;
  if (c.num_experts_per_tok > eligible) {
    throw argError("num_experts_per_tok", `at most topk_group·E/n_group = ${eligible} eligible experts`, c.num_experts_per_tok);
  }
  checkOneOf("scoring_func", c.scoring_func, ["softmax", "sigmoid"]);
  checkOneOf("topk_method", c.topk_method, ["greedy", "noaux_tc"]);
  if (typeof c.norm_topk_prob !== "boolean") throw argError("norm_topk_prob", "a boolean", c.norm_topk_prob);
  checkNumber("routed_scaling_factor", c.routed_scaling_factor, Number.MIN_VALUE, Infinity, " (0 excluded)");
  return markChecked(c);
}

/** A frozen config, remembered as checked (callers check it fully first). */
export function markChecked<T extends object>(c: T): T {
  checkedConfigs.add(Object.freeze(c));
  return c;
}

export function stripUndefined<T extends object>(o: T): T {
  const from = o as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(from)) if (from[key] !== undefined) out[key] = from[key];
  return out as T;
}

/** The router's output for N tokens: every score, and k chosen experts with their weights per token. */
export interface RouterOutput {
  readonly k: number;
  /** softmax or sigmoid of the logits, [N, E], before the bias. */
  readonly scores: Tensor;
  /** Chosen experts, token-major [N·k]: assignment (t, r) at t·k + r, r = 0 the best by selection score. */
  readonly experts: Int32Array;
  /** Their weights [N·k]. */
  readonly weights: Float32Array;
}

/**
 * Edits of the choice, per token row (src/model/interventions.ts says what each means): experts banned from it,
 * forced into it, and chosen but run with their output zeroed (applied by the caller, after routing).
 */
export interface RouteEdits {
  readonly banned: readonly (readonly number[])[];
  readonly forced: readonly (readonly number[])[];
  readonly ablated: readonly (readonly number[])[];
}

/** Scores of every expert: softmax over the experts, or an independent sigmoid each. */
export function routerScores(logits: Tensor, scoringFunc: ScoringFunc): Tensor {
  expectShape("logits", logits, ["N", "E"]);
  return scoringFunc === "softmax" ? softmax(logits) : sigmoid(logits);
}

/**
 * Routes N tokens from their router logits [N, E] (x·W_gᵀ, computed by the caller's kernels so that a backend's
 * matmul is what gets checked). `bias` [E] is gate.e_score_correction_bias, required for "noaux_tc".
 */
export function route(logits: Tensor, config: RouterConfig, bias?: Tensor | null, edits?: RouteEdits | null): RouterOutput {
  routerConfig(config);
  const E = config.n_routed_experts;
  const { N } = expectShape("logits", logits, ["N", E]);
  const withBias = config.topk_method === "noaux_tc";
  if (withBias) expectShape("bias", bias ?? undefined, [E]);
  else if (bias) throw argError("bias", `none with topk_method "greedy" (use "noaux_tc")`, "a bias tensor");
  checkFinite("logits", logits.data, E);
  if (withBias) checkFinite("bias", bias!.data);
  const k = config.num_experts_per_tok;
  const normalise = config.scoring_func === "sigmoid" || config.norm_topk_prob;
  const scores = routerScores(logits, config.scoring_func);
  const experts = new Int32Array(N * k);
  const weights = new Float32Array(N * k);
  // A plain array: a Float64Array of E > 8 lives off V8's heap, and making one costs more than routing a token.
  const select = new Array<number>(E).fill(0);
  const chosen = new Int32Array(k);
  const own = edits ? new Float64Array(E) : null; // the selection scores before the edits
  for (let t = 0; t < N; t++) {
    const row = scores.data.subarray(t * E, (t + 1) * E);
    for (let e = 0; e < E; e++) select[e] = row[e]! + (withBias ? bias!.data[e]! : 0);
    if (own) {
      own.set(select);
      for (const e of edits!.banned[t]!) select[e] = -Infinity;
      for (const e of edits!.forced[t]!) select[e] = Infinity;
    }
    limitGroups(select, config.n_group, config.topk_group, withBias ? 2 : 1);
    topk(select, k, chosen);
    if (own) editedChoice(chosen, select, own, t);
    let sum = 0;
    for (let r = 0; r < k; r++) sum += row[chosen[r]!]!;
    const denominator = normalise && sum > 0 ? sum : 1;
    for (let r = 0; r < k; r++) {
      experts[t * k + r] = chosen[r]!;
      weights[t * k + r] = (row[chosen[r]!]! / denominator) * config.routed_scaling_factor;
    }
  }
  return { k, scores, experts, weights };
}

/**
 * After an edited top-k: no banned (-∞) expert may fill a slot, and the chosen set is put in the order of the
 * router's own selection scores (ties to the lower index), so that forcing a token's own choice changes nothing.
 */
function editedChoice(chosen: Int32Array, select: readonly number[], own: Float64Array, t: number): void {
  if (chosen.some((e) => select[e] === -Infinity)) {
    throw new TinyseekError(`experts: the bans leave token ${t} fewer than ${chosen.length} experts to choose from (group limits included)`);
  }
  const sorted = Array.from(chosen).sort((a, b) => own[b]! - own[a]! || a - b);
  chosen.set(sorted);
}

/** NaN or ±Infinity would make every comparison false and the choice arbitrary: refuse them, naming the element. */
function checkFinite(argument: string, data: Float32Array, rowLength?: number): void {
  let i = 0;
  while (i < data.length && Number.isFinite(data[i])) i++;
  if (i === data.length) return;
  const at = rowLength === undefined ? `${i}` : `${Math.floor(i / rowLength)}, ${i % rowLength}`;
  throw argError(`${argument}[${at}]`, "a finite number", data[i]);
}

/**
 * Sets to -Infinity, in place, the experts of every group outside the `keep` best. A group scores the sum of its
 * `top` best selection scores (1: its best expert; 2: V3 with a bias). Ties between groups go to the lower group.
 */
export function limitGroups(select: Float64Array | number[], nGroups: number, keep: number, top: 1 | 2): void {
  if (nGroups === 1 || keep === nGroups) return;
  const size = select.length / nGroups;
  const groupScores = new Float64Array(nGroups);
  for (let g = 0; g < nGroups; g++) groupScores[g] = topSum(select, g * size, size, Math.min(top, size));
  const kept = topk(groupScores, keep, new Int32Array(keep));
  for (let g = 0; g < nGroups; g++) if (!chosen(kept, keep, g)) select.fill(-Infinity, g * size, (g + 1) * size);
}

/** 0 + the best + (n = 2) the second best of values[from … from + size − 1], added best first. */
function topSum(values: Float64Array | readonly number[], from: number, size: number, n: number): number {
  let [first, second] = [-Infinity, -Infinity];
  for (let i = from; i < from + size; i++) {
    const v = values[i]!;
    if (v > first) [first, second] = [v, first];
    else if (v > second) second = v;
  }
  // -Infinity entries still count (a group of banned experts sums to -Infinity), as the top-k picking them would.
  return n === 1 ? 0 + first : 0 + first + second;
}

/**
 * The indices of the k largest values, best first, into `out`; a tie goes to the lower index. -Infinity entries
 * are never chosen while a finite one remains. The one top-k of the router (experts and groups).
 */
export function topk(values: ArrayLike<number>, k: number, out: Int32Array): Int32Array {
  for (let r = 0; r < k; r++) {
    let best = -1;
    for (let i = 0; i < values.length; i++) {
      if ((best < 0 || values[i]! > values[best]!) && !chosen(out, r, i)) best = i;
    }
    out[r] = best;
  }
  return out;
}

/** Whether i is among the first r entries of out. */
function chosen(out: Int32Array, r: number, i: number): boolean {
  for (let j = 0; j < r; j++) if (out[j] === i) return true;
  return false;
}
