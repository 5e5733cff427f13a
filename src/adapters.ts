// Parameter-efficient adapters (spec/adapters.md).
//   LoRA (Hu et al. 2021): W' = W + (alpha / r)·B·A with A [r, in] random and B [out, r] zero, so a fresh LoRA
//   changes nothing; merge folds the product into W, unmerge takes it out again.
//   Bottleneck adapter (Houlsby et al. 2019): x + up(act(down(x))), with up zero so a fresh adapter is the identity.
// On MLA the material's q_proj and v_proj become the query projection (q_b_proj, or q_proj when q_lora_rank = 0)
// and the value half of kv_b_proj: a LoRA may be restricted to some output rows.

import { argError, checkInteger, checkNumber, checkOneOf } from "./errors.ts";
import { gelu, linear, silu } from "./ops.ts";
import { Random } from "./random.ts";
import { add, expectShape, type Tensor } from "./tensor.ts";

export interface Lora {
  readonly rank: number;
  readonly alpha: number;
  readonly A: Tensor; // [r, in]
  readonly B: Tensor; // [rows.length or out, r]
  /** The output rows the update writes (absent: all of them), e.g. the value half of kv_b_proj. */
  readonly rows?: Int32Array;
}

/** A fresh LoRA for a weight of shape [out, in]: A uniform in ±1/√in (PEFT's Kaiming default), B zero. */
export function initLora(rng: Random, shape: readonly [number, number], rank: number, alpha = 16, rows?: Int32Array): Lora {
  if (!Array.isArray(shape) || shape.length !== 2) throw argError("shape", "the weight's [out, in]", shape);
  const [out, inDim] = shape;
  checkInteger("shape[0]", out, 1);
  checkInteger("shape[1]", inDim, 1);
  checkInteger("rank", rank, 1, Math.min(out, inDim));
  checkNumber("alpha", alpha, Number.MIN_VALUE, Infinity, " (above 0)");
  rows?.forEach((r, i) => checkInteger(`rows[${i}]`, r, 0, out - 1));
  const bound = 1 / Math.sqrt(inDim);
  const A = { shape: [rank, inDim], data: Float32Array.from({ length: rank * inDim }, () => (2 * rng.uniform() - 1) * bound) };
  return { rank, alpha, A, B: { shape: [rows?.length ?? out, rank], data: new Float32Array((rows?.length ?? out) * rank) }, rows };
}

/** (alpha / r)·B·A scattered into the rows it writes: the [out, in] update that merge adds. */
export function loraDelta(lora: Lora, out: number): Tensor {
  const { A, B, rank, alpha, rows } = lora;
  const inDim = A.shape[1]!;
  const scale = alpha / rank;
  const delta = new Float32Array(out * inDim);
  for (let b = 0; b < B.shape[0]!; b++) {
    const row = rows ? rows[b]! : b;
    for (let i = 0; i < inDim; i++) {
      let sum = 0;
      for (let k = 0; k < rank; k++) sum += B.data[b * rank + k]! * A.data[k * inDim + i]!;
      delta[row * inDim + i] = scale * sum;
    }
  }
  return { shape: [out, inDim], data: delta };
}

/** W + ΔW. */
export function mergeLora(weight: Tensor, lora: Lora): Tensor {
  checkLora(weight, lora);
  return add(weight, loraDelta(lora, weight.shape[0]!));
}

/** W' - ΔW: the inverse of merge up to float32 rounding (each element is rounded once by each step). */
export function unmergeLora(merged: Tensor, lora: Lora): Tensor {
  checkLora(merged, lora);
  const delta = loraDelta(lora, merged.shape[0]!);
  return { shape: [...merged.shape], data: merged.data.map((w, i) => w - delta.data[i]!) };
}

/** x·Wᵀ + (alpha / r)·(x·Aᵀ)·Bᵀ without touching W: the unmerged path. `project` does each x·Wᵀ (default: the
 *  reference; the model passes its backend's, which may also apply a quantised W: QLoRA). */
export function loraLinear(x: Tensor, weight: Tensor, lora: Lora, project: (x: Tensor, w: Tensor) => Tensor = linear): Tensor {
  checkLora(weight, lora);
  const base = project(x, weight);
  const update = project(project(x, lora.A), lora.B); // [..., rows]
  const out = weight.shape[0]!;
  const scale = lora.alpha / lora.rank;
  const data = Float32Array.from(base.data);
  const width = lora.B.shape[0]!;
  for (let r = 0; r < data.length / out; r++) {
    for (let b = 0; b < width; b++) data[r * out + (lora.rows ? lora.rows[b]! : b)]! += scale * update.data[r * width + b]!;
  }
  return { shape: base.shape, data };
}

function checkLora(weight: Tensor, lora: Lora): void {
  const { out } = expectShape("weight", weight, ["out", "in"], { in: lora.A.shape[1]! });
  expectShape("lora.B", lora.B, [lora.rows?.length ?? out, lora.rank]);
  if (!lora.rows && lora.B.shape[0] !== out) throw argError("lora.B", `${out} rows`, lora.B.shape[0]);
}

/** gelu is the exact x·Φ(x) (src/ops.ts), PyTorch's nn.GELU() default, which bottleneck adapters use. */
export type AdapterActivation = "gelu" | "silu" | "relu";

export interface BottleneckAdapter {
  readonly down: Tensor; // [bottleneck, D]
  readonly up: Tensor; // [D, bottleneck], zero when fresh
  readonly activation: AdapterActivation;
}

export function initBottleneck(rng: Random, D: number, bottleneck: number, activation: AdapterActivation = "gelu"): BottleneckAdapter {
  checkInteger("bottleneck", bottleneck, 1);
  checkInteger("D", D, 1);
  checkOneOf("activation", activation, ["gelu", "silu", "relu"]);
  const std = 1 / Math.sqrt(D);
  const down = { shape: [bottleneck, D], data: Float32Array.from({ length: bottleneck * D }, () => rng.normal() * std) };
  return { down, up: { shape: [D, bottleneck], data: new Float32Array(D * bottleneck) }, activation };
}

/** x + up(act(down(x))). */
export function bottleneck(x: Tensor, adapter: BottleneckAdapter): Tensor {
  const hidden = linear(x, adapter.down);
  const act = adapter.activation === "gelu" ? gelu(hidden) : adapter.activation === "silu" ? silu(hidden)
    : { shape: hidden.shape, data: hidden.data.map((v) => Math.max(v, 0)) };
  return add(x, linear(act, adapter.up));
}
