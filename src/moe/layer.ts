// The MoE layer (spec/moe.md; DeepSeek-V3 inference/model.py class MoE): route, apply capacity, run the
// routed experts through the backend's kernels.moe, add the shared experts:
//   y_t = Σ over kept (t, e) of w_te · Expert_e(x_t) + Shared(x_t)
// Shared experts are one SwiGLU MLP of width n_shared_experts · moe_intermediate_size, as in V3 (the same as
// summing n_shared_experts MLPs of width moe_intermediate_size). Padding rows (mask 0) output zeros, so the
// residual passes them through untouched. Config fields use DeepSeek-V3's names; capacityFactor and dropPolicy
// are ours (V3 itself is dropless).

import { argError, checkInteger, checkOneOf, TinyseekError } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { randn, type Random } from "../random.ts";
import { expectShape, type Tensor } from "../tensor.ts";
import { applyCapacity, checkCapacityFactor, checkMask, countTokens, DROP_POLICIES, expertCapacity, type DropPolicy, type TokenMask } from "./capacity.ts";
import type { ExpertWeights, Routing } from "./experts.ts";
import { markChecked, route, routerConfig, routerDefaults, stripUndefined, type RouteEdits, type RouterConfig, type RouterConfigInput } from "./router.ts";
import { routingProbs, routingStats, type MoeStats } from "./stats.ts";

export interface MoeConfig extends RouterConfig {
  readonly moe_intermediate_size: number;
  readonly n_shared_experts: number;
  /** Expert capacity C = ceil(capacityFactor·k·N/E); null = dropless (DeepSeek-V3). */
  readonly capacityFactor: number | null;
  readonly dropPolicy: DropPolicy;
}

export type MoeConfigInput = RouterConfigInput &
  Pick<MoeConfig, "moe_intermediate_size"> &
  Partial<Pick<MoeConfig, "n_shared_experts" | "capacityFactor" | "dropPolicy">>;

export const moeDefaults = { ...routerDefaults, n_shared_experts: 0, capacityFactor: null, dropPolicy: "rank-position" } as const;

/** Fills the defaults and checks every hyper-parameter, naming the one that is wrong. */
export function moeConfig(input: MoeConfigInput): MoeConfig {
  if (checkedMoeConfigs.has(input)) return input as MoeConfig;
  const c = { ...moeDefaults, ...stripUndefined(input) } as MoeConfig;
  routerConfig(c);
  checkInteger("moe_intermediate_size", c.moe_intermediate_size, 1);
  checkInteger("n_shared_experts", c.n_shared_experts, 0);
  checkCapacityFactor(c.capacityFactor);
  checkOneOf("dropPolicy", c.dropPolicy, DROP_POLICIES);
  checkedMoeConfigs.add(markChecked(c)); // frozen: the next check of this object returns it at once
  return c;
}

const checkedMoeConfigs = new WeakSet<object>();

/** The weights of one MoE layer, named as in the Hugging Face DeepSeek-V3 checkpoint (experts stacked). */
export interface MoeWeights {
  readonly gate: {
    readonly weight: Tensor; // [E, D]
    readonly e_score_correction_bias: Tensor | null; // [E] with topk_method "noaux_tc", else null
  };
  readonly experts: ExpertWeights; // gate, up [E, F, D]; down [E, D, F]
  readonly shared_experts: { gate_proj: Tensor; up_proj: Tensor; down_proj: Tensor } | null; // [S·F, D], [S·F, D], [D, S·F]
}

/**
 * Seeded weights, drawn in this order: gate.weight, experts gate, up, down, shared gate_proj, up_proj, down_proj;
 * normal with `std` (0.02 as GPT-2 and V3); the bias starts at zero.
 */
export function initMoe(rng: Random, config: MoeConfig, D: number, std = 0.02): MoeWeights {
  const c = moeConfig(config); // with its defaults filled: a config without n_shared_experts has none
  checkInteger("D", D, 1);
  const { n_routed_experts: E, moe_intermediate_size: F, n_shared_experts: S } = c;
  const weight = randn(rng, [E, D], std);
  const experts = { gate: randn(rng, [E, F, D], std), up: randn(rng, [E, F, D], std), down: randn(rng, [E, D, F], std) };
  const shared_experts = S === 0 ? null : {
    gate_proj: randn(rng, [S * F, D], std),
    up_proj: randn(rng, [S * F, D], std),
    down_proj: randn(rng, [D, S * F], std),
  };
  const bias = c.topk_method === "noaux_tc" ? { shape: [E], data: new Float32Array(E) } : null;
  return { gate: { weight, e_score_correction_bias: bias }, experts, shared_experts };
}

/** Checks every weight's shape against the config; returns D. */
export function checkMoeWeights(weights: MoeWeights, config: MoeConfig): number {
  const { n_routed_experts: E, moe_intermediate_size: F, n_shared_experts: S } = config;
  if (!weights || !weights.gate || !weights.experts) throw argError("weights", "MoeWeights { gate, experts, shared_experts }", weights);
  const { D } = expectShape("gate.weight", weights.gate.weight, [E, "D"]);
  const bias = weights.gate.e_score_correction_bias;
  if (config.topk_method === "noaux_tc") expectShape("gate.e_score_correction_bias", bias ?? undefined, [E]);
  else if (bias) throw argError("gate.e_score_correction_bias", `null with topk_method "greedy"`, "a tensor");
  expectShape("experts.gate", weights.experts.gate, [E, F, D]);
  expectShape("experts.up", weights.experts.up, [E, F, D]);
  expectShape("experts.down", weights.experts.down, [E, D, F]);
  const shared = weights.shared_experts;
  if ((S === 0) !== (shared === null)) {
    throw argError("shared_experts", S === 0 ? "null (n_shared_experts = 0)" : `weights for ${S} shared experts`, shared === null ? "null" : "weights");
  }
  if (shared) {
    expectShape("shared_experts.gate_proj", shared.gate_proj, [S * F, D]);
    expectShape("shared_experts.up_proj", shared.up_proj, [S * F, D]);
    expectShape("shared_experts.down_proj", shared.down_proj, [D, S * F]);
  }
  return D;
}

export interface MoeResult {
  /** [N, D]: routed experts' weighted sum plus the shared experts (zeros on padding rows). */
  readonly out: Tensor;
  readonly routing: Routing;
  readonly stats: MoeStats;
  /** Router logits x·W_gᵀ and scores (softmax or sigmoid, before the bias), [N, E]: for traces and losses. */
  readonly logits: Tensor;
  readonly scores: Tensor;
}

export interface MoeOptions {
  /** 1 = real token, 0 = padding (excluded from N, capacity, statistics; its output row is zeros). */
  mask?: TokenMask;
}

/** One MoE layer over x [N, D] (already normalised); the hot parts run on `kernels`. */
export function moeLayer(
  x: Tensor,
  weights: MoeWeights,
  config: MoeConfig,
  kernels: Kernels = reference,
  options: MoeOptions = {},
): MoeResult {
  const c = moeConfig(config);
  const D = checkMoeWeights(weights, c);
  const { N } = expectShape("x", x, ["N", D]);
  const { mask } = options;
  checkMask(mask, N);

  const logits = kernels.linear(x, weights.gate.weight);
  const { routing, scores, stats } = routeTokens(logits, c, weights.gate.e_score_correction_bias, mask);
  if (N === 0) return { out: { shape: [0, D], data: new Float32Array(0) }, routing, stats, logits, scores };

  const routed = kernels.moe(x, routing, weights.experts);
  expectShape("kernels.moe(x)", routed, [N, D]);
  const out = new Float32Array(N * D);
  const shared = weights.shared_experts ? sharedExperts(x, weights.shared_experts, kernels) : null;
  for (let t = 0; t < N; t++) {
    if (mask && !mask[t]) continue;
    for (let i = t * D; i < (t + 1) * D; i++) out[i] = routed.data[i]! + (shared ? shared.data[i]! : 0);
  }
  return { out: { shape: [N, D], data: out }, routing, stats, logits, scores };
}

/**
 * Router and capacity together, from the logits [N, E]: each token's k experts and weights, which assignments
 * capacity keeps (C from the real tokens of this batch), the scores, and the routing statistics.
 */
export function routeTokens(
  logits: Tensor,
  config: MoeConfig,
  bias: Tensor | null,
  mask?: TokenMask,
  edits?: RouteEdits | null,
): { routing: Routing; scores: Tensor; capacity: number | null; stats: MoeStats } {
  config = moeConfig(config);
  const E = config.n_routed_experts;
  const { N } = expectShape("logits", logits, ["N", E]);
  checkMask(mask, N);
  const { k, experts, weights, scores } = route(logits, config, bias, edits);
  const capacity = expertCapacity(config.capacityFactor, k, countTokens(N, mask), E);
  const kept = applyCapacity(experts, weights, k, E, capacity, config.dropPolicy, mask);
  const routing = { k, experts, weights, kept };
  return { routing, scores, capacity, stats: routingStats(routing, routingProbs(scores, config.scoring_func), capacity, mask) };
}

/** The shared experts: one SwiGLU MLP, down(silu(gate·x) ⊙ up·x), on the backend's kernels. */
export function sharedExperts(x: Tensor, w: NonNullable<MoeWeights["shared_experts"]>, kernels: Kernels = reference): Tensor {
  return kernels.linear(kernels.swiglu(kernels.linear(x, w.gate_proj), kernels.linear(x, w.up_proj)), w.down_proj);
}

/** The layer's weights as flat tensors named like the checkpoint (experts stacked on a leading axis). */
export function moeParams(weights: MoeWeights, prefix = ""): Record<string, Tensor> {
  const p: Record<string, Tensor> = {
    [`${prefix}gate.weight`]: weights.gate.weight,
    [`${prefix}experts.gate_proj.weight`]: weights.experts.gate,
    [`${prefix}experts.up_proj.weight`]: weights.experts.up,
    [`${prefix}experts.down_proj.weight`]: weights.experts.down,
  };
  if (weights.gate.e_score_correction_bias) p[`${prefix}gate.e_score_correction_bias`] = weights.gate.e_score_correction_bias;
  if (weights.shared_experts) {
    for (const [name, t] of Object.entries(weights.shared_experts)) p[`${prefix}shared_experts.${name}.weight`] = t;
  }
  return p;
}

/** The inverse of moeParams; shapes are checked against the config. */
export function moeWeightsFromParams(params: Record<string, Tensor>, config: MoeConfig, prefix = ""): MoeWeights {
  const get = (name: string): Tensor => {
    const t = params[prefix + name];
    if (!t) throw new TinyseekError(`params: expected a tensor named "${prefix + name}", got none`);
    return t;
  };
  const weights: MoeWeights = {
    gate: {
      weight: get("gate.weight"),
      e_score_correction_bias: config.topk_method === "noaux_tc" ? get("gate.e_score_correction_bias") : null,
    },
    experts: { gate: get("experts.gate_proj.weight"), up: get("experts.up_proj.weight"), down: get("experts.down_proj.weight") },
    shared_experts: config.n_shared_experts === 0 ? null : {
      gate_proj: get("shared_experts.gate_proj.weight"),
      up_proj: get("shared_experts.up_proj.weight"),
      down_proj: get("shared_experts.down_proj.weight"),
    },
  };
  checkMoeWeights(weights, config);
  return weights;
}
