// Golden cases for the multi-token-prediction module (src/model/mtp.ts) on the golden model's config with one MTP
// layer: tokens t_0 … t_T; the main model runs t_0 … t_(T-1), and the module runs on its RMSNorm(h) with the token
// after each position (t_1 … t_T), so position i predicts t_(i+2). Each backend computes both, the module's input
// included. Outputs: the main logits, the module's logits and its block's chosen experts (exact).

import type { Backend } from "../backend.ts";
import { EXACT } from "../io/compare.ts";
import type { ModelConfig } from "../model/config.ts";
import { forwardAsync } from "../model/forward.ts";
import { mtpForwardAsync } from "../model/mtp.ts";
import { initModel, modelFromParams, modelParams } from "../model/weights.ts";
import { Random, randn } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { createTrace, TRACE_TOLERANCE } from "../trace.ts";
import type { GoldenCase } from "./case.ts";
import { goldenConfig } from "./model-cases.ts";

/**
 * `ownCopies`: the checkpoint also stores the module's own embedding and head (model.layers.L.embed_tokens,
 * shared_head.head), as DeepSeek's release does; drawn apart from the main ones here, so the case shows they are used.
 */
function mtpCase(name: string, config: ModelConfig, T: number, seed: number, ownCopies: boolean): GoldenCase {
  const L = config.num_hidden_layers;
  return {
    name,
    component: "model.mtp",
    config: { ...config, tokens: T, own_copies: ownCopies },
    seed,
    build() {
      const rng = new Random(seed);
      const tokens = Int32Array.from({ length: T + 1 }, () => rng.int(config.vocab_size));
      const params = modelParams(initModel({ ...config, init_seed: seed }));
      if (ownCopies) {
        const [V, D] = [config.vocab_size, config.hidden_size];
        params.set(`model.layers.${L}.embed_tokens.weight`, randn(rng, [V, D], config.init_std));
        params.set(`model.layers.${L}.shared_head.head.weight`, randn(rng, [V, D], config.init_std));
      }
      return { inputs: { tokens: { shape: [T + 1], data: tokens } }, params: Object.fromEntries(params) };
    },
    async run(backend: Backend, inputs, params) {
      const model = modelFromParams({ ...config, init_seed: seed }, new Map(Object.entries(params as Record<string, Tensor>)));
      const tokens = Array.from(inputs.tokens!.data);
      const trace = createTrace("norm");
      const main = await forwardAsync(model, tokens.slice(0, T), { backend, trace });
      const hidden = trace.tensors.get("norm") as Tensor;
      const mtpTrace = createTrace(`layers.${L}.mlp.router.indices`);
      const mtp = await mtpForwardAsync(model, hidden, tokens.slice(1), { backend, trace: mtpTrace });
      return {
        logits: main.logits,
        "mtp.logits": mtp.logits,
        "mtp.router.indices": mtpTrace.tensors.get(`layers.${L}.mlp.router.indices`) as { shape: number[]; data: Int32Array },
      };
    },
    tolerance: { logits: TRACE_TOLERANCE, "mtp.logits": TRACE_TOLERANCE, "mtp.router.indices": EXACT },
  };
}

/** The module sharing the main model's embedding and head, and with its own copies of them. */
export function mtpGoldenCases(): GoldenCase[] {
  // One main layer (dense) keeps the files small; the module's block is then layer 1, a MoE layer.
  const config = goldenConfig("mla", { num_hidden_layers: 1, num_nextn_predict_layers: 1 });
  return [
    mtpCase("model.mtp.forward", config, 7, 510, false),
    mtpCase("model.mtp.own-copies", config, 6, 511, true),
  ];
}
