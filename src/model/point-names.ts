// The hook points of a model, in forward order: what `hooks` and `runWithCache` can name (spec/research.md lists
// each with its shape). NSA's selection and gates (sparse) and DSA's indexer trace their own tensors, which are
// recorded but not hook points.

import { isMoeLayer, layerKind, type ModelConfig } from "./config.ts";

export function hookPoints(config: ModelConfig): string[] {
  const names = ["embed"];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `layers.${l}`;
    names.push(`${p}.in`, `${p}.attn.in`);
    const kind = layerKind(config, l);
    if (kind === "mla" || kind === "dsa") names.push(`${p}.attn.latent`, `${p}.attn.k_pe`);
    // Only the dense kinds have [H, T, Tk] scores and probabilities to show or replace: DSA attends each token's
    // selected keys only.
    if (kind === "mla" || kind === "mha" || kind === "decay") names.push(`${p}.attn.scores`, `${p}.attn.probs`);
    names.push(`${p}.attn.heads`);
    names.push(`${p}.attn.out`, `${p}.attn.residual`, `${p}.mlp.in`);
    if (isMoeLayer(config, l)) {
      names.push(...["logits", "scores", "indices", "weights", "kept"].map((n) => `${p}.mlp.router.${n}`), `${p}.mlp.experts`, `${p}.mlp.routed`);
      if (config.n_shared_experts > 0) names.push(`${p}.mlp.shared`);
    }
    names.push(`${p}.mlp.out`, `${p}.out`);
  }
  names.push("norm", "logits");
  return names;
}
