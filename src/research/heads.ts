// Head ablation (spec/research.md): head h of layer l silenced before the output projection, at the hook point
// layers.l.attn.heads [H, T, d_v]:
//   zero   z[h, t, :] = 0
//   mean   z[h, t, :] = the head's mean output over every position of a reference set of prompts (headMeans)
// Ablating every head of a layer zeroes its attention output (the output projection has no bias).

import { argError, checkInteger } from "../errors.ts";
import type { Intervention } from "../model/interventions.ts";
import type { Model } from "../model/weights.ts";
import type { Tensor } from "../tensor.ts";
import { runWithCache, type RunOptions } from "./run.ts";

/** Per layer: each head's mean output [H, d_v] over every position of the prompts. */
export type HeadMeans = ReadonlyMap<number, Tensor>;

export interface HeadAblation {
  layer: number;
  heads: readonly number[];
  /** Default "zero". */
  mode?: "zero" | "mean";
  /** Required for "mean": from headMeans. */
  means?: HeadMeans;
}

/** The layer exists (every kind has a heads point); every head exists. */
function checkHeads(model: Model, layer: number, heads: readonly number[]): void {
  const c = model.config;
  checkInteger("layer", layer, 0, c.num_hidden_layers - 1);
  if (!Array.isArray(heads) || heads.length === 0) throw argError("heads", "a non-empty list of head indices", heads);
  heads.forEach((h, i) => checkInteger(`heads[${i}]`, h, 0, c.num_attention_heads - 1));
}

/** Zero or mean ablation of some heads of one layer, as an intervention for `run` or `generate`. */
export function ablateHeads(model: Model, { layer, heads, mode = "zero", means }: HeadAblation): Intervention {
  checkHeads(model, layer, heads);
  if (mode !== "zero" && mode !== "mean") throw argError("mode", '"zero" or "mean"', mode);
  const mean = mode === "mean" ? means?.get(layer) : undefined;
  if (mode === "mean" && !mean) throw argError("means", `head means of layer ${layer} (from headMeans)`, means ? "none for that layer" : means);
  const hook = (z: Tensor): Tensor => {
    const [H, T, Dv] = z.shape as [number, number, number];
    const data = z.data.slice();
    for (const h of heads) {
      for (let t = 0; t < T; t++) {
        const row = data.subarray((h * T + t) * Dv, (h * T + t + 1) * Dv);
        if (mean) row.set(mean.data.subarray(h * Dv, (h + 1) * Dv));
        else row.fill(0);
      }
    }
    return { shape: [H, T, Dv], data };
  };
  return { label: `${mode}-ablate head${heads.length > 1 ? "s" : ""} ${heads.join(", ")} of layer ${layer}`, hooks: [[`layers.${layer}.attn.heads`, hook]] };
}

/** Each head's mean output over every position of `prompts` (token lists), for the given layers (default all). */
export async function headMeans(model: Model, prompts: readonly (readonly number[])[], options: RunOptions & { layers?: readonly number[] } = {}): Promise<HeadMeans> {
  const c = model.config;
  const { layers = Array.from({ length: c.num_hidden_layers }, (_, l) => l), ...run } = options;
  for (const l of layers) checkHeads(model, l, [0]);
  if (prompts.length === 0) throw argError("prompts", "at least one prompt", 0);
  const sums = new Map<number, { sum: Float64Array; count: number; H: number; Dv: number }>();
  for (const prompt of prompts) {
    const { activations } = await runWithCache(model, prompt, { ...run, names: layers.map((l) => `layers.${l}.attn.heads`) });
    for (const l of layers) {
      const z = activations.get(`layers.${l}.attn.heads`)!;
      const [H, T, Dv] = z.shape as [number, number, number];
      const acc = sums.get(l) ?? { sum: new Float64Array(H * Dv), count: 0, H, Dv };
      for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) for (let d = 0; d < Dv; d++) acc.sum[h * Dv + d] += z.data[(h * T + t) * Dv + d]!;
      acc.count += T;
      sums.set(l, acc);
    }
  }
  return new Map([...sums].map(([l, { sum, count, H, Dv }]) => [l, { shape: [H, Dv], data: Float32Array.from(sum, (v) => v / count) }]));
}
