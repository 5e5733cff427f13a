// The model's weights as tfjs variables, and the tfjs kernels (train/tfjs-kernels.ts) that run the one forward
// over them. The forward reads the project Model (`model`): each of its host tensors stands for the variable made
// from it (the kernels' `weight` maps its Float32Array to the variable), so training updates the variables and the
// forward sees them. Variables carry the checkpoint's names, with one change: a MoE layer's routed experts stay
// stacked, model.layers.N.mlp.experts.gate_proj [E, F, D], as the Model holds them, so that all experts run as one
// matmul. The selection bias (gate.e_score_correction_bias) is not a variable: no gradient reaches it; the
// balancing rule sets it (train/trainer.ts), in place in the Model, where the forward's router reads it.

import * as tf from "@tensorflow/tfjs-core";
import type { Ops } from "../src/device/ops.ts";
import { isMoeLayer } from "../src/model/config.ts";
import { modelFromParams, modelParams, type Model } from "../src/model/weights.ts";
import type { MoeWeights } from "../src/moe/layer.ts";
import type { Tensor } from "../src/tensor.ts";
import { tfjsForward, tfjsKernels, tfjsOps, type TfForward, type TfjsKernels, type TfValue } from "./tfjs-kernels.ts";

const PROJECTIONS = ["gate_proj", "up_proj", "down_proj"] as const;
const EXPERT = /^(model\.layers\.\d+\.mlp\.experts)\.\d+\.(gate_proj|up_proj|down_proj)\.weight$/;

export class Params {
  readonly variables = new Map<string, tf.Variable>();
  /** The host tensor's storage → its variable (what the kernels' `weight` answers). */
  readonly byData = new Map<Float32Array, tf.Variable>();
  readonly biases = new Map<number, Float32Array>(); // MoE layer → selection bias [E], the Model's own storage
  readonly kernels: TfjsKernels;
  readonly ops: Ops<TfValue>;

  constructor(readonly model: Model) {
    const { config, weights } = model;
    const add = (name: string, t: Tensor) => {
      let v = this.byData.get(t.data); // tied embeddings: one tensor, one variable
      if (!v) this.byData.set(t.data, (v = tf.variable(tf.tensor(t.data, [...t.shape]))));
      this.variables.set(name, v);
    };
    for (const [name, t] of modelParams(model)) {
      if (EXPERT.test(name) || name.endsWith("e_score_correction_bias")) continue;
      add(name, t);
    }
    weights.layers.forEach((layer, l) => {
      if (!isMoeLayer(config, l)) return;
      const mlp = layer.mlp as MoeWeights;
      const stacked = { gate_proj: mlp.experts.gate, up_proj: mlp.experts.up, down_proj: mlp.experts.down };
      for (const name of PROJECTIONS) add(`model.layers.${l}.mlp.experts.${name}`, stacked[name]);
      this.biases.set(l, mlp.gate.e_score_correction_bias!.data);
    });
    this.kernels = tfjsKernels(this.byData);
    this.ops = tfjsOps(this.kernels);
  }

  get(name: string): tf.Variable {
    const v = this.variables.get(name);
    if (!v) throw new Error(`no parameter named ${name}`);
    return v;
  }

  /** MoE layer l's selection bias: the Model's own storage, updated in place. */
  bias(layer: number): Float32Array {
    return this.biases.get(layer)!;
  }

  /** The one forward on these weights (inside tf.tidy or variableGrads: its tensors live in the caller's scope). */
  forward(sequences: readonly (readonly number[])[]): TfForward {
    return tfjsForward(this.ops, this.model, sequences);
  }

  /** The current values as a project Model (experts unstacked to their checkpoint names, the bias included). */
  toModel(): Model {
    const { config } = this.model;
    const params = new Map<string, Tensor>();
    for (const [name, v] of this.variables) {
      const data = v.dataSync() as Float32Array;
      const stackedExperts = /^(model\.layers\.\d+\.mlp\.experts)\.(gate_proj|up_proj|down_proj)$/.exec(name);
      if (!stackedExperts) {
        params.set(name, { shape: [...v.shape], data: Float32Array.from(data) });
        continue;
      }
      const [E, rows, cols] = v.shape as [number, number, number];
      for (let e = 0; e < E; e++) {
        const slice = Float32Array.from(data.subarray(e * rows * cols, (e + 1) * rows * cols));
        params.set(`${stackedExperts[1]}.${e}.${stackedExperts[2]}.weight`, { shape: [rows, cols], data: slice });
      }
    }
    for (const [l, bias] of this.biases) {
      params.set(`model.layers.${l}.mlp.gate.e_score_correction_bias`, { shape: [bias.length], data: Float32Array.from(bias) });
    }
    return modelFromParams(config, params);
  }

  /** Frees the variables (a test that makes several). */
  dispose(): void {
    for (const v of this.byData.values()) v.dispose();
  }
}
