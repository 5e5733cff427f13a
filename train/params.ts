// The model's weights as tfjs variables, under the checkpoint's names (src/model/weights.ts modelParams), with one
// change: a MoE layer's routed experts stay stacked, model.layers.N.mlp.experts.gate_proj [E, F, D], so that all
// experts run as one matmul. The selection bias (gate.e_score_correction_bias) is not a variable: no gradient
// reaches it; the balancing rule sets it (train.ts).

import * as tf from "@tensorflow/tfjs-core";
import { isMoeLayer } from "../src/model/config.ts";
import { modelFromParams, modelParams, type Model } from "../src/model/weights.ts";
import { type MoeWeights } from "../src/moe/layer.ts";
import { type Tensor } from "../src/tensor.ts";

const PROJECTIONS = ["gate_proj", "up_proj", "down_proj"] as const;
const EXPERT = /^(model\.layers\.\d+\.mlp\.experts)\.\d+\.(gate_proj|up_proj|down_proj)\.weight$/;

export class Params {
  readonly variables = new Map<string, tf.Variable>();
  readonly biases = new Map<number, Float32Array>(); // MoE layer → selection bias [E]

  constructor(readonly model: Model) {
    const { config, weights } = model;
    for (const [name, t] of modelParams(model)) {
      if (EXPERT.test(name) || name.endsWith("e_score_correction_bias")) continue;
      this.variables.set(name, tf.variable(tf.tensor(t.data, [...t.shape])));
    }
    weights.layers.forEach((layer, l) => {
      if (!isMoeLayer(config, l)) return;
      const mlp = layer.mlp as MoeWeights;
      const stacked = { gate_proj: mlp.experts.gate, up_proj: mlp.experts.up, down_proj: mlp.experts.down };
      for (const name of PROJECTIONS) {
        const key = `model.layers.${l}.mlp.experts.${name}`;
        this.variables.set(key, tf.variable(tf.tensor(stacked[name].data, [...stacked[name].shape])));
      }
      this.biases.set(l, Float32Array.from(mlp.gate.e_score_correction_bias!.data));
    });
  }

  get(name: string): tf.Variable {
    const v = this.variables.get(name);
    if (!v) throw new Error(`no parameter named ${name}`);
    return v;
  }

  bias(layer: number): Float32Array {
    return this.biases.get(layer)!;
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
}
