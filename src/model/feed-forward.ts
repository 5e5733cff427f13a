// The feed-forward sublayer of the one forward (src/model/forward.ts), over the checked operations: the dense
// SwiGLU MLP, or the MoE layer (DeepSeek-V3 inference/model.py class MoE). The router's logits come back to the
// host, where the reference's own routeTokens (src/moe/layer.ts) picks the experts, with any expert edits of an
// intervention (src/model/interventions.ts); the routed experts and the shared expert run on the device.

import { read, settled, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { hookedKernels, type HookedWeight } from "../model-adapters.ts";
import type { Routing } from "../moe/experts.ts";
import { routeTokens, type MoeWeights } from "../moe/layer.ts";
import type { MoeStats } from "../moe/stats.ts";
import type { Tensor } from "../tensor.ts";
import { record } from "../trace.ts";
import { routeEditsFor } from "./interventions.ts";
import type { Run } from "./layers.ts";
import { hooked, hookHost, listened, point, readOnly } from "./points.ts";
import type { DenseMlpWeights } from "./weights.ts";

export interface FeedForward<X> {
  out: X;
  /** The MoE's routing and statistics over the rows it ran, or null for a dense layer. */
  routing: Routing | null;
  stats: MoeStats | null;
}

/** The dense SwiGLU MLP or the MoE layer on x [N, D] (already normalised); `positions` of its rows. */
export function feedForward<X extends Value>(run: Run<X>, l: number, x: X, w: DenseMlpWeights | MoeWeights, positions: Int32Array): Reading<FeedForward<X>> {
  if (!run.moeConfig || !("experts" in w)) return settled({ out: swigluMlp(run.ops, x, w as DenseMlpWeights), routing: null, stats: null });
  return moe(run, l, x, w, positions);
}

/** down(silu(gate·x) ⊙ up·x). */
function swigluMlp<X extends Value>(ops: Ops<X>, x: X, w: DenseMlpWeights): X {
  return ops.linear(ops.swiglu(ops.linear(x, w.gate_proj), ops.linear(x, w.up_proj)), w.down_proj);
}

/**
 * The MoE layer: y = Σ over kept (t, e) of w_te·Expert_e(x_t) + Shared(x_t). Hook points: the router's logits (a
 * replacement routes), its scores, indices, weights and kept flags (read-only), each chosen expert's output, the
 * routed sum and the shared expert's output.
 */
function* moe<X extends Value>(run: Run<X>, l: number, x: X, w: MoeWeights, positions: Int32Array): Reading<FeedForward<X>> {
  const { ops, listen } = run;
  const config = run.moeConfig!;
  const name = `layers.${l}.mlp`;
  const where = { layer: l, positions };
  const gate = ops.linear(x, w.gate.weight);
  const gateData = yield* read(ops, gate);
  const logits = hookHost(listen, `${name}.router.logits`, { shape: gate.shape, data: gateData }, where);
  const edits = run.experts.length ? routeEditsFor(run.experts, l, positions, config.num_experts_per_tok) : null;
  const { routing, scores, stats } = routeTokens(logits, config, w.gate.e_score_correction_bias, undefined, edits);
  const k = routing.k, N = x.shape[0]!;
  readOnly(listen, `${name}.router.scores`, scores, where);
  readOnly(listen, `${name}.router.indices`, { shape: [N, k], data: routing.experts }, where);
  readOnly(listen, `${name}.router.weights`, { shape: [N, k], data: routing.weights }, where);
  readOnly(listen, `${name}.router.kept`, { shape: [N, k], data: routing.kept }, where);
  // An ablated expert runs unkept: its output is zero on every backend, with its weight as the router gave it.
  const running = edits?.ablated.some((a) => a.length) ? withAblated(routing, edits.ablated) : routing;
  const hookedExperts = [w.experts.gate, w.experts.up, w.experts.down].some((t) => (t as HookedWeight).experts !== undefined);
  // Experts quantised or adapted one by one run on the host, each through its own weights (src/model-adapters.ts).
  let routed = hookedExperts
    ? ops.upload(hookedKernels(ops.hostKernels).moe({ shape: x.shape, data: yield* read(ops, x) }, running, w.experts))
    : ops.moe(x, running, w.experts, { logits: logits.data === gateData ? gate : ops.upload(logits), config }); // a hook's logits route
  if (listened(listen, `${name}.experts`)) routed = yield* expertOutputs(run, `${name}.experts`, x, running, w, routed, where);
  routed = yield* point(ops, listen, `${name}.routed`, routed, where);
  if (!w.shared_experts) return { out: routed, routing, stats };
  const shared = yield* point(ops, listen, `${name}.shared`, swigluMlp(ops, x, w.shared_experts), where);
  return { out: ops.add(routed, shared), routing, stats };
}

/** The routing with the ablated experts of each row marked unkept (a copy; the trace keeps the router's). */
function withAblated(routing: Routing, ablated: readonly (readonly number[])[]): Routing {
  const kept = routing.kept.slice();
  for (let a = 0; a < kept.length; a++) if (ablated[Math.floor(a / routing.k)]!.includes(routing.experts[a]!)) kept[a] = 0;
  return { ...routing, kept };
}

/**
 * layers.L.mlp.experts [N, k, D]: each chosen expert's output, before its weight (zero where it did not run),
 * computed on the host beside the fused kernel. A replacement changes the routed sum by Σ_r w_tr·(new − old), so
 * a hook that returns its input leaves the device's sum untouched, bit for bit.
 */
function* expertOutputs<X extends Value>(run: Run<X>, name: string, x: X, routing: Routing, w: MoeWeights, routed: X, where: { layer: number; positions: Int32Array }): Reading<X> {
  const { ops } = run;
  const [N, D] = x.shape as [number, number];
  const k = routing.k;
  const xs = yield* read(ops, x);
  // Every assignment as its own row, run through its one expert with weight 1: the kernels' own moe, k = 1.
  const rows = new Float32Array(N * k * D);
  for (let a = 0; a < N * k; a++) rows.set(xs.subarray(Math.floor(a / k) * D, (Math.floor(a / k) + 1) * D), a * D);
  const single = { k: 1, experts: routing.experts, weights: new Float32Array(N * k).fill(1), kept: routing.kept };
  const outs = hookedKernels(ops.hostKernels).moe({ shape: [N * k, D], data: rows }, single, w.experts);
  const value = { shape: [N, k, D], data: outs.data };
  if (!hooked(run.listen, name)) {
    hookHost(run.listen, name, value, where);
    return routed;
  }
  const flowing = hookHost(run.listen, name, { shape: value.shape, data: value.data.slice() }, where);
  if (flowing.data.every((v, i) => Object.is(v, value.data[i]))) return routed;
  const delta = new Float32Array(N * D);
  for (let a = 0; a < N * k; a++) {
    if (!routing.kept[a]) continue;
    const t = Math.floor(a / k), weight = routing.weights[a]!;
    for (let d = 0; d < D; d++) delta[t * D + d] += weight * (flowing.data[a * D + d]! - value.data[a * D + d]!);
  }
  return ops.add(routed, ops.upload({ shape: [N, D], data: delta }));
}
