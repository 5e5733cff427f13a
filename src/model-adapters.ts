// What can hang on a model's weights without changing the model's code: quantised codes, an unmerged LoRA,
// a bottleneck adapter after a sublayer. A hooked weight is still a Tensor whose `data` is the weight it stands
// for (the dequantised values, or W + ΔW), so any code that reads the matrix directly (MLA's absorbed path folds
// kv_b_proj into the query, as DeepSeek-V3's inference/model.py dequantises wkv_b for it) or runs its own forward
// still computes the same model. The hooks only change how a linear layer is applied: `linearOf` sends a
// quantised weight through kernels.quantLinear and a LoRA through base + (alpha/r)·B·A, and `hookedKernels`
// gives host-tensor code a Kernels value whose linear and moe do that (the layers the forward runs on the host,
// src/model/layers.ts; the forward's own linear applies hooked weights in src/device/ops.ts).

import { loraLinear, type BottleneckAdapter, type Lora } from "./adapters.ts";
import { NotSupportedError } from "./backend.ts";
import { argError } from "./errors.ts";
import type { Kernels } from "./kernels.ts";
import { modelFromParams, modelParams, type LayerWeights, type Model } from "./model/weights.ts";
import { dispatchCombine, expert, type ExpertWeights, type Routing } from "./moe/experts.ts";
import type { QuantWeight } from "./quant/linear.ts";
import type { Tensor } from "./tensor.ts";

export interface HookedWeight extends Tensor {
  /** Applied through kernels.quantLinear on these codes; `data` holds their dequantised values. */
  readonly quant?: { readonly weight: QuantWeight; readonly activations: boolean };
  /** Applied unmerged: base (itself possibly quantised) plus the LoRA; `data` holds base + ΔW. */
  readonly lora?: { readonly base: Tensor; readonly lora: Lora };
  /** Stacked routed experts [E, rows, cols]: expert e's own (hooked) weight. */
  readonly experts?: readonly Tensor[];
}

/** Bottleneck adapters after a layer's attention and after its feed-forward, before each residual add. */
export interface LayerAdapters {
  readonly attn?: BottleneckAdapter;
  readonly mlp?: BottleneckAdapter;
}

/** x·Wᵀ, the way W asks to be applied. */
export function linearOf(kernels: Kernels, x: Tensor, w: Tensor): Tensor {
  const { quant, lora } = w as HookedWeight;
  if (lora) return loraLinear(x, lora.base, lora.lora, (a, b) => linearOf(kernels, a, b));
  if (quant) {
    if (!kernels.quantLinear) throw new NotSupportedError(`${kernels.name} has no quantLinear kernel (a quantised model needs one)`);
    return kernels.quantLinear(x, quant.weight, { activations: quant.activations });
  }
  return kernels.linear(x, w);
}

/** The routed experts on hooked weights: each expert's SwiGLU through linearOf, dispatch and combine shared. */
function hookedMoe(kernels: Kernels, x: Tensor, routing: Routing, experts: ExpertWeights): Tensor {
  const own = (stacked: Tensor, view: Tensor, e: number) => (stacked as HookedWeight).experts?.[e] ?? view;
  return dispatchCombine(x, routing, experts, (tokens, e) => {
    const views = expert(experts, e);
    const [gate, up, down] = [own(experts.gate, views.gate, e), own(experts.up, views.up, e), own(experts.down, views.down, e)];
    return linearOf(kernels, kernels.swiglu(linearOf(kernels, tokens, gate), linearOf(kernels, tokens, up)), down);
  });
}

const hasExperts = (e: ExpertWeights) => [e.gate, e.up, e.down].some((t) => (t as HookedWeight).experts !== undefined);

/** `kernels` with linear and moe honouring hooked weights; everything else is the backend's own. */
export function hookedKernels(kernels: Kernels): Kernels {
  return {
    ...kernels,
    linear: (x, w) => linearOf(kernels, x, w),
    moe: (x, routing, experts) => (hasExperts(experts) ? hookedMoe(kernels, x, routing, experts) : kernels.moe(x, routing, experts)),
  };
}

const isHooked = (t: Tensor) => "quant" in t || "lora" in t;

/** Every weight by checkpoint name (modelParams), routed experts as their hooked selves where they have one. */
export function namedWeights(model: Model): Map<string, Tensor> {
  const params = modelParams(model);
  model.weights.layers.forEach((layer, l) => {
    if (!("experts" in layer.mlp)) return;
    for (const [name, stacked] of [["gate_proj", layer.mlp.experts.gate], ["up_proj", layer.mlp.experts.up], ["down_proj", layer.mlp.experts.down]] as const) {
      (stacked as HookedWeight).experts?.forEach((t, e) => params.set(`model.layers.${l}.mlp.experts.${e}.${name}.weight`, t));
    }
  });
  return params;
}

/** The model with some weights replaced by name (same shapes); hooked routed experts stay hooked, adapters stay. */
export function replaceWeights(model: Model, replaced: ReadonlyMap<string, Tensor>): Model {
  const params = namedWeights(model);
  for (const [name, t] of replaced) {
    if (!params.has(name)) throw argError("weights", "checkpoint names of the model's weights", name);
    params.set(name, t);
  }
  const rebuilt = modelFromParams(model.config, params); // stacks each MoE layer's experts again (their data)
  const layers = rebuilt.weights.layers.map((layer, l): LayerWeights => {
    const adapters = model.weights.layers[l]!.adapters;
    let mlp = layer.mlp;
    if ("experts" in mlp) {
      const withExperts = (stacked: Tensor, name: string): Tensor => {
        const experts = Array.from({ length: stacked.shape[0]! }, (_, e) => params.get(`model.layers.${l}.mlp.experts.${e}.${name}.weight`)!);
        return experts.some(isHooked) ? ({ ...stacked, experts } as HookedWeight) : stacked;
      };
      const { gate, up, down } = mlp.experts;
      mlp = { ...mlp, experts: { gate: withExperts(gate, "gate_proj"), up: withExperts(up, "up_proj"), down: withExperts(down, "down_proj") } };
    }
    return { ...layer, mlp, ...(adapters ? { adapters } : {}) };
  });
  return { config: model.config, weights: { ...rebuilt.weights, layers } };
}
