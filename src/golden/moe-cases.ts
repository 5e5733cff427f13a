// Golden cases for the MoE (spec/moe.md): the router at each configuration (softmax, sigmoid, groups, bias, each
// drop order, overflow, dropless, padding, ties, groups excluded under a negative bias) and the whole layer.
// Router cases run on every backend: only the logits x·W_gᵀ come from the backend's `linear` (asynchronous ones
// included); scoring, top-k and capacity are the reference's, so a backend's logits must lead to the very same
// experts and kept flags (I32 and U8 outputs, compared exactly). Generated inputs are redrawn until every
// comparison the router makes has a margin of at least MARGIN, so float32 logits cannot flip a choice; the `ties`
// case builds exact ties instead (duplicated gate rows) to pin the lower-index rule.
// Layer cases need synchronous kernels (kernels.moe) and report "not supported" elsewhere.

import { NotSupportedError, type Backend } from "../backend.ts";
import { TinyseekError } from "../errors.ts";
import type { Tolerance } from "../io/compare.ts";
import type { Routing } from "../moe/experts.ts";
import { initMoe, moeConfig, moeLayer, moeParams, moeWeightsFromParams, routeTokens, type MoeConfig, type MoeConfigInput } from "../moe/layer.ts";
import { route, type RouterOutput } from "../moe/router.ts";
import { linear } from "../ops.ts";
import { randBounded, Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import type { GoldenCase, TensorMap } from "./case.ts";

/** The smallest gap allowed between any two values the router compares (f32 logits err by ~1e-7). */
const MARGIN = 1e-4;
const FLOAT: Tolerance = { rtol: 1e-5, atol: 1e-6, nmse: 1e-10 };

/** One case: the config, N tokens of width D, and how the inputs are drawn. */
interface CaseSpec {
  name: string;
  config: MoeConfigInput;
  N: number;
  D: number;
  /** Every `pad`-th token (1-based) is padding. */
  pad?: number;
  /** Per-expert logit offset in 0..skew: a skewed router that overflows the first experts. */
  skew?: number;
  /** Duplicate gate rows so that experts tie exactly. */
  ties?: boolean;
  /** Added to every expert's selection bias: -1 makes every selection score negative. */
  biasOffset?: number;
}

const E8 = { n_routed_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: 8 };
const V3ish = { n_routed_experts: 16, num_experts_per_tok: 4, moe_intermediate_size: 8, n_group: 4, topk_group: 2, scoring_func: "sigmoid", topk_method: "noaux_tc", norm_topk_prob: true, routed_scaling_factor: 2.5 } as const;

const ROUTER_SPECS: CaseSpec[] = [
  { name: "softmax", config: E8, N: 16, D: 16 },
  { name: "softmax-norm", config: { ...E8, norm_topk_prob: true, routed_scaling_factor: 2 }, N: 16, D: 16 },
  { name: "sigmoid", config: { ...E8, num_experts_per_tok: 3, scoring_func: "sigmoid", routed_scaling_factor: 2.5 }, N: 16, D: 16 },
  { name: "groups", config: { ...V3ish, scoring_func: "softmax", topk_method: "greedy", norm_topk_prob: false, routed_scaling_factor: 1 }, N: 16, D: 16 },
  { name: "sigmoid-bias-groups", config: V3ish, N: 16, D: 16 },
  { name: "rank-position", config: { ...E8, capacityFactor: 1, dropPolicy: "rank-position" }, N: 24, D: 16, skew: 2 },
  { name: "rank-bpr", config: { ...E8, capacityFactor: 1, dropPolicy: "rank-bpr" }, N: 24, D: 16, skew: 2 },
  { name: "probs", config: { ...E8, capacityFactor: 1, dropPolicy: "probs" }, N: 24, D: 16, skew: 2 },
  { name: "overflow", config: { ...V3ish, capacityFactor: 0.25, dropPolicy: "rank-position" }, N: 16, D: 16, skew: 3 },
  { name: "dropless-skewed", config: { ...E8, capacityFactor: null }, N: 24, D: 16, skew: 2 },
  { name: "padding", config: { ...E8, capacityFactor: 1.25, dropPolicy: "probs" }, N: 13, D: 16, pad: 3, skew: 1 },
  { name: "single-token", config: { ...V3ish, capacityFactor: 1 }, N: 1, D: 16 },
  { name: "ties", config: { ...E8, num_experts_per_tok: 3, capacityFactor: 1, dropPolicy: "probs" }, N: 8, D: 8, ties: true },
  // Every selection score sigmoid + bias is below 0, so an excluded group must be -Infinity: a group "masked" to 0
  // would beat every eligible expert (with positive scores, as in the cases above, 0 never wins).
  { name: "groups-negative-bias", config: V3ish, N: 16, D: 16, biasOffset: -1 },
];

const LAYER_SPECS: CaseSpec[] = [
  { name: "dropless-shared", config: { ...V3ish, n_shared_experts: 1 }, N: 12, D: 16 },
  { name: "capacity-probs", config: { ...E8, capacityFactor: 1, dropPolicy: "probs" }, N: 12, D: 16, skew: 2 },
  { name: "padding-rank-bpr", config: { ...E8, n_shared_experts: 2, capacityFactor: 1.25, dropPolicy: "rank-bpr" }, N: 10, D: 16, pad: 4, skew: 1 },
];

export function moeGoldenCases(): GoldenCase[] {
  return [
    ...ROUTER_SPECS.map((s, i) => routerCase(s, 4100 + i)),
    ...LAYER_SPECS.map((s, i) => layerCase(s, 4200 + i)),
  ];
}

/** x [N, D], gate.weight [E, D] (logits ~ N(0, 1)), a bias for noaux_tc, a padding mask when asked. */
function draw(spec: CaseSpec, config: MoeConfig, rng: Random): { x: Tensor; weight: Tensor; bias: Tensor | null; mask?: Uint8Array } {
  const { N, D } = spec;
  const E = config.n_routed_experts;
  const x = randBounded(rng, [N, D]);
  const weight = randBounded(rng, [E, D], 1 / Math.sqrt(D));
  if (spec.skew) {
    // Feature 0 is a constant 1, so W[e, 0] is expert e's logit offset: high for the first experts.
    for (let t = 0; t < N; t++) x.data[t * D] = 1;
    for (let e = 0; e < E; e++) weight.data[e * D] = Math.fround(spec.skew * (1 - e / (E - 1)));
  }
  if (spec.ties) {
    // Experts 1 = 2 and 5 = 6 = 7 share gate rows: their logits tie exactly on any backend.
    for (const [to, from] of [[2, 1], [6, 5], [7, 5]] as const) weight.data.copyWithin(to * D, from * D, (from + 1) * D);
  }
  const bias = config.topk_method === "noaux_tc" ? randBounded(rng, [E], 0.05) : null;
  if (bias && spec.biasOffset) bias.data.forEach((b, e) => (bias.data[e] = Math.fround(b + spec.biasOffset!)));
  const mask = spec.pad ? Uint8Array.from({ length: N }, (_, t) => ((t + 1) % spec.pad! === 0 ? 0 : 1)) : undefined;
  return { x, weight, bias, mask };
}

/**
 * The smallest gap between values the router compares: each token's selection scores (biased), the weights of
 * every assignment (capacity orders compare them across tokens) — exact ties (gap 0) are decided by index on every
 * backend alike and count as fine.
 */
function smallestGap(r: RouterOutput, bias: Tensor | null): number {
  const [N, E] = r.scores.shape as [number, number];
  let gap = Infinity;
  const consider = (values: number[]) => {
    values.sort((a, b) => a - b);
    for (let i = 1; i < values.length; i++) if (values[i] !== values[i - 1]) gap = Math.min(gap, values[i]! - values[i - 1]!);
  };
  for (let t = 0; t < N; t++) consider(Array.from({ length: E }, (_, e) => r.scores.data[t * E + e]! + (bias ? bias.data[e]! : 0)));
  consider(Array.from(r.weights));
  return gap;
}

function buildInputs(spec: CaseSpec, config: MoeConfig, seed: number) {
  const rng = new Random(seed);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const d = draw(spec, config, rng);
    if (spec.ties || smallestGap(route(linear(d.x, d.weight), config, d.bias), d.bias) >= MARGIN) return d;
  }
  throw new TinyseekError(`moe golden case ${spec.name}: no draw in 1000 keeps every router comparison ${MARGIN} apart`);
}

function routerCase(spec: CaseSpec, seed: number): GoldenCase {
  const config = moeConfig(spec.config);
  return {
    name: `moe.router.${spec.name}`,
    component: "moe.router",
    config: { ...config, N: spec.N, D: spec.D, skew: spec.skew ?? 0, pad: spec.pad ?? 0, ties: spec.ties ?? false, ...(spec.biasOffset ? { bias_offset: spec.biasOffset } : {}) },
    seed,
    build() {
      const { x, weight, bias, mask } = buildInputs(spec, config, seed);
      const inputs: TensorMap = { x, ...(mask ? { mask: { shape: [spec.N], data: mask } } : {}) };
      return { inputs, params: { "gate.weight": weight, ...(bias ? { "gate.e_score_correction_bias": bias } : {}) } };
    },
    async run(backend: Backend, inputs, params) {
      const linearOn = backend.kernels?.linear ?? backend.asyncKernels.linear;
      const logits = await linearOn(inputs.x as Tensor, params["gate.weight"]!);
      const mask = inputs.mask?.data as Uint8Array | undefined;
      const { routing, scores } = routeTokens(logits, config, params["gate.e_score_correction_bias"] ?? null, mask);
      return routerOutputs(logits, scores, routing, spec.N);
    },
    tolerance: { logits: FLOAT, scores: FLOAT, weights: FLOAT },
  };
}

function routerOutputs(logits: Tensor, scores: Tensor, r: Routing, N: number): TensorMap {
  return {
    logits,
    scores,
    experts: { shape: [N, r.k], data: r.experts },
    weights: { shape: [N, r.k], data: r.weights },
    kept: { shape: [N, r.k], data: r.kept },
  };
}

function layerCase(spec: CaseSpec, seed: number): GoldenCase {
  const config = moeConfig(spec.config);
  return {
    name: `moe.layer.${spec.name}`,
    component: "moe.layer",
    config: { ...config, N: spec.N, D: spec.D, skew: spec.skew ?? 0, pad: spec.pad ?? 0 },
    seed,
    build() {
      const { x, weight, bias, mask } = buildInputs(spec, config, seed);
      const init = initMoe(new Random(seed + 1), config, spec.D, 0.3);
      const weights = { ...init, gate: { weight, e_score_correction_bias: bias } };
      const inputs: TensorMap = { x, ...(mask ? { mask: { shape: [spec.N], data: mask } } : {}) };
      return { inputs, params: moeParams(weights) };
    },
    run(backend: Backend, inputs, params) {
      if (!backend.kernels) throw new NotSupportedError(`${backend.name} has no synchronous kernels for the MoE layer`);
      const mask = inputs.mask?.data as Uint8Array | undefined;
      const result = moeLayer(inputs.x as Tensor, moeWeightsFromParams(params, config), config, backend.kernels, { mask });
      return { out: result.out, ...routerOutputs(result.logits, result.scores, result.routing, spec.N) };
    },
    tolerance: { logits: FLOAT, scores: FLOAT, weights: FLOAT },
  };
}
