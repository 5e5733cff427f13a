// Dynamic depth (design section 9; CALM, Schuster et al. 2022). The material's "R1 adds or removes layers online,
// inference +40%" becomes early exit: after layer l (l >= minLayers) a still-running token applies the final norm
// and the shared head to its state and measures its confidence, the softmax response p_top1 - p_top2; at or above
// exitThreshold it stops there. Its state then passes unchanged to the output, and the deeper layers still compute
// their keys and values from it (state copying), so later tokens find a complete cache. A threshold above 1 never
// fires: the model is then exactly the full-depth one. `depthSweep` measures what exiting buys and costs.

import { checkNumber } from "../errors.ts";
import { type Kernels } from "../kernels.ts";
import { type Tensor } from "../tensor.ts";
import { record, type Trace } from "../trace.ts";
import { argmax } from "../ops.ts";
import { forward } from "./model.ts";
import { checkModel, type Model } from "./weights.ts";

/** After layer l: running tokens whose confidence reaches the threshold stop (active 0, exitLayers l + 1). */
export function exitCheck(
  x: Tensor, l: number, active: Uint8Array, exitLayers: Int32Array, threshold: number, model: Model, kernels: Kernels, trace?: Trace,
): void {
  const { weights, config } = model;
  const probs = kernels.softmax(kernels.linear(kernels.rmsnorm(x, weights.norm, config.rms_norm_eps), weights.lm_head));
  const confidence = topTwoMargin(probs);
  record(trace, `layers.${l}.exit.confidence`, confidence);
  for (let t = 0; t < active.length; t++) {
    if (active[t] && confidence.data[t]! >= threshold) {
      active[t] = 0;
      exitLayers[t] = l + 1;
    }
  }
}

/** p_top1 - p_top2 per row of probabilities [N, V] (p_top1 alone when V = 1). */
export function topTwoMargin(probs: Tensor): Tensor {
  const V = probs.shape[probs.shape.length - 1]!;
  const N = V === 0 ? 0 : probs.data.length / V;
  const out = new Float32Array(N);
  for (let t = 0; t < N; t++) {
    let [first, second] = [-Infinity, -Infinity];
    for (let v = t * V; v < (t + 1) * V; v++) {
      const p = probs.data[v]!;
      if (p > first) [first, second] = [p, first];
      else if (p > second) second = p;
    }
    out[t] = V < 2 ? first : first - second;
  }
  return { shape: [N], data: out };
}

export interface DepthRow {
  threshold: number;
  /** Mean layers a token ran, and the fraction of feed-forward (MLP/MoE) layers it skipped against full depth
   * (attention still runs on an exited token, to fill the deeper caches). */
  meanLayers: number;
  ffnSkipped: number;
  /** Fraction of tokens whose top-1 prediction matches the full-depth model's. */
  agreement: number;
  ms: number;
}

/** For each threshold: mean depth, layers saved and top-1 agreement with full depth on `tokens`. */
export function depthSweep(model: Model, tokens: readonly number[], thresholds: readonly number[], options: { kernels?: Kernels; minLayers?: number } = {}): DepthRow[] {
  checkModel(model);
  thresholds.forEach((t, i) => checkNumber(`thresholds[${i}]`, t, 0, Infinity));
  const L = model.config.num_hidden_layers;
  const V = model.config.vocab_size;
  const full = forward(model, tokens, { kernels: options.kernels, exitThreshold: null });
  const top1 = (logits: Tensor, t: number) => argmax(logits.data.subarray(t * V, (t + 1) * V));
  return thresholds.map((threshold) => {
    const started = performance.now();
    const run = forward(model, tokens, { kernels: options.kernels, exitThreshold: threshold, minLayers: options.minLayers });
    const ms = performance.now() - started;
    let [layers, agree] = [0, 0];
    for (let t = 0; t < tokens.length; t++) {
      layers += run.exitLayers[t]!;
      if (top1(run.logits, t) === top1(full.logits, t)) agree++;
    }
    const meanLayers = layers / tokens.length;
    return { threshold, meanLayers, ffnSkipped: 1 - meanLayers / L, agreement: agree / tokens.length, ms };
  });
}
