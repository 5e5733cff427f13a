// One optimiser step and the evaluation loss, on the one forward (src/model/forward.ts) over the tfjs kernels:
//   loss = cross-entropy + α · sequence-wise balance loss;  gradients clipped to global norm 1;  Adam;
//   then each MoE layer's selection bias moves by γ towards balance (DeepSeek-V3's auxiliary-loss-free rule,
//   src/moe/balance.ts), from the expert loads the forward's routing statistics report.

import * as tf from "@tensorflow/tfjs-core";
import { updateBias } from "../src/moe/balance.ts";
import type { Sequence } from "./data.ts";
import { crossEntropy, sequenceBalance } from "./loss.ts";
import type { Params } from "./params.ts";

export interface StepOptions {
  /** Weight of the sequence-wise balance loss (V3: 1e-4). */
  alpha: number;
  /** Selection-bias step (V3: 1e-3; 1e-2 here). */
  gamma: number;
  /** Global gradient-norm clip (default 1). */
  maxNorm?: number;
}

export interface StepResult {
  /** The step's loss (cross-entropy + α·balance) before the update. */
  loss: number;
  /** Per MoE layer: each routed expert's assignments in this batch (what moved the bias). */
  loads: Map<number, number[]>;
}

/** One step on these sequences (all of one length): gradients, Adam, then the bias update. */
export function trainStep(params: Params, optimizer: tf.Optimizer, sequences: readonly Sequence[], options: StepOptions): StepResult {
  const loads = new Map<number, number[]>();
  const variables = [...params.variables.values()];
  params.kernels.takeMoeCalls(); // nothing left over from an interrupted forward
  const loss = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => {
      const { logits, result } = params.forward(sequences.map((s) => s.input));
      result.moe.forEach((stats, l) => {
        if (stats) loads.set(l, [...stats.routed]);
      });
      const ce = crossEntropy(logits, sequences.flatMap((s) => s.targets));
      const balance = sequenceBalance(params.kernels.takeMoeCalls(), sequences.map((s) => s.input.length));
      return tf.add(ce, tf.mul(balance, options.alpha)) as tf.Scalar;
    }, variables);
    optimizer.applyGradients(clipByGlobalNorm(grads, options.maxNorm ?? 1) as Parameters<typeof optimizer.applyGradients>[0]);
    return value.dataSync()[0]!;
  });
  for (const [l, load] of loads) params.bias(l).set(updateBias({ shape: [load.length], data: params.bias(l) }, load, options.gamma).data);
  return { loss, loads };
}

/** Mean nats per predicted byte over whole sequences, in batches of up to 16 of one length. */
export function meanLoss(params: Params, sequences: readonly Sequence[]): number {
  let [sum, count] = [0, 0];
  for (let at = 0; at < sequences.length; ) {
    const length = sequences[at]!.input.length;
    let end = at;
    while (end < sequences.length && end - at < 16 && sequences[end]!.input.length === length) end++;
    const group = sequences.slice(at, end);
    const targets = group.flatMap((s) => s.targets);
    sum += tf.tidy(() => crossEntropy(params.forward(group.map((s) => s.input)).logits, targets).dataSync()[0]!) * targets.length;
    params.kernels.takeMoeCalls();
    count += targets.length;
    at = end;
  }
  return sum / count;
}

function clipByGlobalNorm(grads: tf.NamedTensorMap, maxNorm: number): tf.NamedTensorMap {
  // Adam takes the update's direction from the moments; clipping only tames the first, noisy steps.
  const norm = Math.sqrt(Object.values(grads).reduce((s, g) => s + tf.sum(tf.square(g)).dataSync()[0]!, 0));
  if (norm <= maxNorm) return grads;
  return Object.fromEntries(Object.entries(grads).map(([name, g]) => [name, tf.mul(g, maxNorm / norm)]));
}
