// Golden cases for the whole model: a reduced config with the tiny model's structure (a dense layer, then a MoE
// layer with groups, a selection bias and a shared expert; MLA with YaRN) over a few tokens. Inputs: the token ids;
// params: every weight under its checkpoint name; outputs: the logits, the MoE layer's chosen experts (exact) and,
// with early exit on, the layer each token exited at (exact). Small on purpose: vocab 64, hidden 32.

import { NotSupportedError, type Backend } from "../backend.ts";
import { type GoldenCase } from "../golden/case.ts";
import { EXACT } from "../io/compare.ts";
import { Random } from "../random.ts";
import { type Tensor } from "../tensor.ts";
import { createTrace, TRACE_TOLERANCE, type Trace } from "../trace.ts";
import { type AttentionKind, type ModelConfig } from "./config.ts";
import { forward } from "./model.ts";
import { preset } from "./presets.ts";
import { initModel, modelFromParams, modelParams, type Model } from "./weights.ts";

// Whole-model logits on a float32 backend: NMSE <= 1e-7 (golden.md), per element well inside what flips a token.
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

type DeviceForward = (model: Model, tokens: number[], options: { trace: Trace }) => Promise<{ logits: Tensor; exitLayers: Int32Array }>;

function modelCase(name: string, config: ModelConfig, T: number, seed: number): GoldenCase {
  return {
    name,
    component: "model",
    config: { ...config, tokens: T },
    seed,
    build() {
      const rng = new Random(seed);
      const tokens = Int32Array.from({ length: T }, () => rng.int(config.vocab_size));
      const model = initModel({ ...config, init_seed: seed });
      return { inputs: { tokens: { shape: [T], data: tokens } }, params: Object.fromEntries(modelParams(model)) };
    },
    async run(backend: Backend, inputs, params) {
      // A backend without synchronous kernels may keep the whole forward on its device (webgpu: gpu/model.ts).
      const onDevice = (backend as { forwardModel?: DeviceForward }).forwardModel;
      if (!backend.kernels && !onDevice) throw new NotSupportedError(`${backend.name} has no synchronous kernels for the whole model`);
      const model = modelFromParams({ ...config, init_seed: seed }, new Map(Object.entries(params as Record<string, Tensor>)));
      const trace = createTrace("layers.1.mlp.router.indices");
      const tokens = Array.from(inputs.tokens!.data);
      const result = backend.kernels
        ? forward(model, tokens, { kernels: backend.kernels, trace })
        : await onDevice!(model, tokens, { trace });
      const outputs: Record<string, { shape: readonly number[]; data: Float32Array | Int32Array }> = {
        logits: result.logits,
        "router.indices": trace.tensors.get("layers.1.mlp.router.indices") as { shape: number[]; data: Int32Array },
      };
      if (config.exit_threshold !== null) outputs.exit_layers = { shape: [T], data: result.exitLayers };
      return outputs;
    },
    tolerance: { logits: LOGITS, "router.indices": EXACT, exit_layers: EXACT },
  };
}

/** The model's golden cases: MLA (the default), plain MHA, and MLA with early exit. */
export function modelGoldenCases(): GoldenCase[] {
  return [
    modelCase("model.mla.forward", goldenConfig("mla"), 7, 500),
    modelCase("model.mha.forward", goldenConfig("mha"), 5, 501),
    modelCase("model.mla.early-exit", goldenConfig("mla", { exit_threshold: 0.02, exit_min_layers: 1 }), 6, 502),
  ];
}
