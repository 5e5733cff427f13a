// Golden cases for the whole model: a reduced config with the tiny model's structure (a dense layer, then a MoE
// layer with groups, a selection bias and a shared expert; MLA with YaRN) over a few tokens. Inputs: the token ids;
// params: every weight under its checkpoint name; outputs: the logits, the MoE layer's chosen experts (exact),
// with early exit on the layer each token exited at (exact), and for DSA the keys each layer's indexer selected
// (exact). Small on purpose: vocab 64, hidden 32.

import type { Backend } from "../backend.ts";
import { EXACT } from "../io/compare.ts";
import { type AttentionKind, layerKind, type ModelConfig } from "../model/config.ts";
import { forwardAsync } from "../model/forward.ts";
import { preset } from "../model/presets.ts";
import { initModel, modelFromParams, modelParams, type Model } from "../model/weights.ts";
import { Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { createTrace, TRACE_TOLERANCE, type Trace } from "../trace.ts";
import type { GoldenCase } from "./case.ts";

// Whole-model logits on a float32 backend: NMSE <= 1e-7 (spec/golden.md), per element well inside what flips a token.
const LOGITS = TRACE_TOLERANCE;

/** The golden model: the tiny model's structure at vocab 64, hidden 32, two layers. */
export function goldenConfig(attention: AttentionKind, overrides: Partial<ModelConfig> = {}): ModelConfig {
  return preset("tiny", {
    vocab_size: 64, bos_token_id: 0, eos_token_id: 1, hidden_size: 32, intermediate_size: 48, moe_intermediate_size: 16,
    num_hidden_layers: 2, num_attention_heads: 2, q_lora_rank: 16, kv_lora_rank: 16, qk_nope_head_dim: 8,
    qk_rope_head_dim: 8, v_head_dim: 8, n_routed_experts: 8, num_experts_per_tok: 2, n_group: 4, topk_group: 2,
    max_position_embeddings: 32, rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 8 },
    attention_kind: attention, init_std: 0.2, ...overrides,
  });
}

/** The DSA indexer's config fields: read only by a "dsa" layer. */
const DSA_FIELDS = ["index_n_heads", "index_head_dim", "index_topk"];

/** The config a case stores: every field the model reads, so the indexer's only where a layer is DSA (and the
 *  files written before DSA existed keep their bytes). */
function storedConfig(config: ModelConfig): Record<string, unknown> {
  const dsa = dsaLayers(config).length > 0;
  return Object.fromEntries(Object.entries(config).filter(([field]) => dsa || !DSA_FIELDS.includes(field)));
}

const dsaLayers = (config: ModelConfig): number[] =>
  Array.from({ length: config.num_hidden_layers }, (_, l) => l).filter((l) => layerKind(config, l) === "dsa");

function modelCase(name: string, config: ModelConfig, T: number, seed: number): GoldenCase {
  const dsa = dsaLayers(config);
  return {
    name,
    component: "model",
    config: { ...storedConfig(config), tokens: T },
    seed,
    build() {
      const rng = new Random(seed);
      const tokens = Int32Array.from({ length: T }, () => rng.int(config.vocab_size));
      const model = initModel({ ...config, init_seed: seed });
      return { inputs: { tokens: { shape: [T], data: tokens } }, params: Object.fromEntries(modelParams(model)) };
    },
    async run(backend: Backend, inputs, params) {
      const model = modelFromParams({ ...config, init_seed: seed }, new Map(Object.entries(params as Record<string, Tensor>)));
      const trace = createTrace(["layers.1.mlp.router.indices", ...dsa.map((l) => `layers.${l}.attn.selected`)]);
      const tokens = Array.from(inputs.tokens!.data);
      const result = await forwardAsync(model, tokens, { backend, trace }); // the one forward, on any backend
      const outputs: Record<string, { shape: readonly number[]; data: Float32Array | Int32Array }> = {
        logits: result.logits,
        "router.indices": trace.tensors.get("layers.1.mlp.router.indices") as { shape: number[]; data: Int32Array },
      };
      if (config.exit_threshold !== null) outputs.exit_layers = { shape: [T], data: result.exitLayers };
      // DSA: the keys each query attended; discrete, so exact (the seed leaves no near-tie at the top-k boundary).
      for (const l of dsa) outputs[`selected.${l}`] = trace.tensors.get(`layers.${l}.attn.selected`) as { shape: number[]; data: Int32Array };
      return outputs;
    },
    tolerance: { logits: LOGITS, "router.indices": EXACT, exit_layers: EXACT, ...Object.fromEntries(dsa.map((l) => [`selected.${l}`, EXACT])) },
  };
}

/** The model's golden cases: MLA (the default), plain MHA, MLA with early exit, and DSA selecting 3 of 7 keys. */
export function modelGoldenCases(): GoldenCase[] {
  return [
    modelCase("model.mla.forward", goldenConfig("mla"), 7, 500),
    modelCase("model.mha.forward", goldenConfig("mha"), 5, 501),
    modelCase("model.mla.early-exit", goldenConfig("mla", { exit_threshold: 0.02, exit_min_layers: 1 }), 6, 502),
    // Seed 504: in every row the k-th highest indexer score leads the (k+1)-th by at least 4 % of the largest score,
    // far above float32 error, so every backend must select the same keys.
    modelCase("model.dsa.forward", goldenConfig("dsa", { index_n_heads: 4, index_head_dim: 16, index_topk: 3 }), 7, 504),
  ];
}
