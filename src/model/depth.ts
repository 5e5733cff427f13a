// Dynamic depth (spec/model.md; CALM, Schuster et al. 2022). The material's "R1 adds or removes layers online,
// inference +40%" becomes early exit: after layer l (l >= minLayers) a still-running token applies the final norm
// and the shared head to its state and measures its confidence, the softmax response p_top1 - p_top2; at or above
// exitThreshold it stops there. Its state then passes unchanged to the output, and the deeper layers still compute
// their keys and values from it (state copying), so later tokens find a complete cache. A threshold above 1 never
// fires: the model is then exactly the full-depth one. The check itself is in src/model/forward.ts; `depthSweep`
// measures what exiting buys and costs.

import { checkNumber } from "../errors.ts";
import type { Backend } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { argmax } from "../ops.ts";
import { forwardAsync } from "./forward.ts";
import { checkModel, type Model } from "./weights.ts";

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
export async function depthSweep(model: Model, tokens: readonly number[], thresholds: readonly number[], options: { backend?: Pick<Backend, "ops">; minLayers?: number } = {}): Promise<DepthRow[]> {
  checkModel(model);
  thresholds.forEach((t, i) => checkNumber(`thresholds[${i}]`, t, 0, Infinity));
  const L = model.config.num_hidden_layers;
  const V = model.config.vocab_size;
  const full = await forwardAsync(model, tokens, { backend: options.backend, exitThreshold: null });
  const top1 = (logits: Tensor, t: number) => argmax(logits.data.subarray(t * V, (t + 1) * V));
  const rows: DepthRow[] = [];
  for (const threshold of thresholds) {
    const started = performance.now();
    const run = await forwardAsync(model, tokens, { backend: options.backend, exitThreshold: threshold, minLayers: options.minLayers });
    const ms = performance.now() - started;
    let [layers, agree] = [0, 0];
    for (let t = 0; t < tokens.length; t++) {
      layers += run.exitLayers[t]!;
      if (top1(run.logits, t) === top1(full.logits, t)) agree++;
    }
    const meanLayers = layers / tokens.length;
    rows.push({ threshold, meanLayers, ffnSkipped: 1 - meanLayers / L, agreement: agree / tokens.length, ms });
  }
  return rows;
}
