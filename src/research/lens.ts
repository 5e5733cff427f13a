// The logit lens (nostalgebraist 2020; spec/research.md): each layer's residual stream read out as the model reads
// its last one, logits_l = W_head · RMSNorm_final(resid_post_l) with the final norm's γ, on the run's own backend,
// so the last layer's lens equals the model's logits bit for bit.

import { opsOf } from "../model/forward.ts";
import { read, runAsync, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { scoped } from "../device/scope.ts";
import type { Model } from "../model/weights.ts";
import type { Tensor } from "../tensor.ts";
import type { TracedTensor } from "../trace.ts";
import { runWithCache, type RunOptions } from "./run.ts";

export interface LogitLens {
  /** The residual points read: "embed", "layers.0.out", …, "layers.{L-1}.out". */
  points: string[];
  /** Per point, the logits [T, V] its residual gives. */
  logits: Tensor[];
  /** The model's own logits [T, V]. */
  final: Tensor;
}

export async function logitLens(model: Model, tokens: ArrayLike<number>, options: RunOptions = {}): Promise<LogitLens> {
  const L = model.config.num_hidden_layers;
  const points = ["embed", ...Array.from({ length: L }, (_, l) => `layers.${l}.out`)];
  const { activations, logits: final } = await runWithCache(model, tokens, { ...options, names: points });
  const residuals = points.map((p) => activations.get(p)!);
  const logits = await runAsync(readOut(opsOf(options.backend), model, residuals));
  return { points, logits, final };
}

/** W_head · RMSNorm_final(h) for each residual h [T, D], through the backend's own kernels. */
export function* readOut<X extends Value>(ops: Ops<X>, model: Model, residuals: readonly TracedTensor[]): Reading<Tensor[]> {
  const { weights, config } = model;
  const scope = scoped(ops);
  const o = scope.ops;
  const out: Tensor[] = [];
  try {
    for (const h of residuals) {
      const logits = o.linear(o.rmsnorm(o.upload({ shape: h.shape, data: Float32Array.from(h.data) }), weights.norm, config.rms_norm_eps), weights.lm_head);
      out.push({ shape: logits.shape, data: (yield* read(o, logits)).slice() });
      scope.releaseExcept();
    }
    return out;
  } finally {
    scope.releaseExcept();
    ops.settle();
  }
}

/** Softmax of one row of logits, in float64. */
export function probabilities(logits: Tensor, row: number): Float64Array {
  const V = logits.shape[logits.shape.length - 1]!;
  const x = logits.data.subarray(row * V, (row + 1) * V);
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  const p = Float64Array.from(x, (v) => Math.exp(v - max));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / sum);
}
