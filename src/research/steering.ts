// Activation steering (spec/research.md; Turner et al. 2023, "activation addition"): at layer l's output,
//   resid_post_l += α · v,   v = mean over positions of resid_post_l on prompt A − the same on prompt B.

import { argError, checkInteger } from "../errors.ts";
import type { Intervention } from "../model/interventions.ts";
import type { Model } from "../model/weights.ts";
import type { Tensor } from "../tensor.ts";
import { runWithCache, type RunOptions } from "./run.ts";

/** mean_t resid_post_layer(a) − mean_t resid_post_layer(b), [D]. */
export async function steeringVector(model: Model, a: readonly number[], b: readonly number[], layer: number, options: RunOptions = {}): Promise<Tensor> {
  checkInteger("layer", layer, 0, model.config.num_hidden_layers - 1);
  const name = `layers.${layer}.out`;
  const mean = async (tokens: readonly number[]) => {
    const h = (await runWithCache(model, tokens, { ...options, names: name })).activations.get(name)!;
    const [T, D] = h.shape as [number, number];
    const out = new Float64Array(D);
    for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) out[d] += h.data[t * D + d]! / T;
    return out;
  };
  const [ma, mb] = [await mean(a), await mean(b)];
  return { shape: [ma.length], data: Float32Array.from(ma, (v, d) => v - mb[d]!) };
}

/** Adds scale · vector to every position of layer `layer`'s output, as an intervention for `run` or `generate`. */
export function steer(model: Model, layer: number, vector: Tensor, scale = 1): Intervention {
  const D = model.config.hidden_size;
  checkInteger("layer", layer, 0, model.config.num_hidden_layers - 1);
  if (!vector || !(vector.data instanceof Float32Array) || vector.data.length !== D) throw argError("vector", `${D} values (hidden_size)`, vector?.data?.length ?? vector);
  if (!Number.isFinite(scale)) throw argError("scale", "a finite number", scale);
  const hook = (h: Tensor): Tensor => ({ shape: h.shape, data: h.data.map((v, i) => v + scale * vector.data[i % D]!) });
  return { label: `steer layer ${layer} by ${scale} × vector`, hooks: [[`layers.${layer}.out`, hook]] };
}
