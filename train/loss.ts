// The training objective: next-byte cross-entropy, plus DeepSeek-V3's small sequence-wise balance loss computed
// from the MoE calls the tfjs kernels recorded (train/tfjs-kernels.ts takeMoeCalls).

import * as tf from "@tensorflow/tfjs-core";
import type { MoeCall } from "./tfjs-kernels.ts";

/** Mean cross-entropy (nats) of logits [N, V] against targets. */
export function crossEntropy(logits: tf.Tensor2D, targets: number[]): tf.Scalar {
  const onehot = tf.cast(tf.oneHot(tf.tensor1d(targets, "int32"), logits.shape[1]), "float32");
  return tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), -1))) as tf.Scalar;
}

/**
 * DeepSeek-V3's complementary sequence-wise balance loss (V3 report §2.1.2) before α, summed over the MoE calls
 * (one a layer) and averaged over the sequences, packed row after row with these lengths:
 *   Σ_i f_i·P_i,  f_i = E/(k·T)·(tokens of the sequence choosing i),  P_i = mean_t s_i,t / Σ_j s_j,t.
 * f is a constant (the choice has no gradient); P carries the gradient to the gate. As one product per layer:
 * Σ_t,i (f_i(seq t) / T(seq t))·ŝ_t,i.
 */
export function sequenceBalance(calls: readonly MoeCall[], lengths: readonly number[]): tf.Scalar {
  let total = tf.scalar(0);
  for (const { logits, routing, config } of calls) {
    const [N, E] = logits.shape;
    const { k } = routing;
    const coefficient = new Float32Array(N * E);
    let start = 0;
    for (const T of lengths) {
      const count = new Float64Array(E);
      for (let a = start * k; a < (start + T) * k; a++) count[routing.experts[a]!]++;
      for (let t = start; t < start + T; t++) {
        for (let e = 0; e < E; e++) coefficient[t * E + e] = (E / (k * T)) * count[e]! / T;
      }
      start += T;
    }
    const scores = config.scoring_func === "softmax" ? tf.softmax(logits) : tf.sigmoid(logits);
    const normalised = tf.div(scores, tf.sum(scores, -1, true));
    total = tf.add(total, tf.sum(tf.mul(normalised, tf.tensor2d(coefficient, [N, E]))));
  }
  return tf.div(total, lengths.length);
}
