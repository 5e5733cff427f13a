// The hot operations a backend may replace. Model-level code never calls ops.ts directly for these: it calls the
// Kernels value it is given, so the same forward pass runs on the reference, on WASM or on anything that
// implements this interface, and every backend is checked against `reference` below (test/kernels.property.ts).
//
// The interface is synchronous over host tensors. WebGPU's kernels are asynchronous (gpu/backend.ts) and keep a
// whole forward pass device-resident through their own runner; they are checked case by case against these.

import { attention as sdpa } from "./attention/attention.ts";
import { maskFromSpec, type MaskSpec } from "./masks.ts";
import { dispatchCombine, type ExpertWeights, type Routing } from "./moe/experts.ts";
import * as ops from "./ops.ts";
import { quantLinear, type QuantLinearOptions, type QuantWeight } from "./quant/linear.ts";
import { applyRope } from "./rope.ts";
import { expectShape, type Tensor } from "./tensor.ts";

export interface FusedAttentionOptions {
  /** Which keys each query sees (causal, window, segment, padding lengths); absent: all. */
  mask?: MaskSpec;
  /** Relative time decay: ln γ_h per query head, added as (offset + i - j)·ln γ_h to the scores
   *  (spec/attention.md), with offset = mask.offset ?? Tk - Tq, in float64 on the reference. */
  logGammas?: readonly number[];
  /** Default 1/sqrt(Dh). */
  scale?: number;
}

export interface Kernels {
  readonly name: string;
  /** a [..., M, K] · b [K, N]. */
  matmul(a: Tensor, b: Tensor): Tensor;
  /** a [..., M, K] · b [..., K, N] with equal batch dimensions. */
  bmm(a: Tensor, b: Tensor): Tensor;
  /** x [..., in] · Wᵀ with W [out, in]. */
  linear(x: Tensor, weight: Tensor): Tensor;
  /** Softmax over the last axis; hidden entries (visible = 0) get 0, a row with none visible is zeros. */
  softmax(x: Tensor, visible?: Uint8Array): Tensor;
  rmsnorm(x: Tensor, weight: Tensor, eps: number): Tensor;
  /** x [..., T, dim] rotated at the given absolute positions (adjacent pairs). */
  rope(x: Tensor, positions: ArrayLike<number>, freqs: Float64Array): Tensor;
  silu(x: Tensor): Tensor;
  swiglu(gate: Tensor, up: Tensor): Tensor;
  /** Fused attention: q [B, H, Tq, Dh], k [B, Hkv, Tk, Dh], v [B, Hkv, Tk, Dv] → [B, H, Tq, Dv]. */
  attention(q: Tensor, k: Tensor, v: Tensor, options?: FusedAttentionOptions): Tensor;
  /** MoE dispatch and combine: x [N, D] → Σ over kept assignments of w · SwiGLU expert (x). */
  moe(x: Tensor, routing: Routing, experts: ExpertWeights): Tensor;
  /** x [..., in] · Wᵀ with W quantised (int8/int4 groups or FP8 blocks, src/quant/). Optional: a backend without
   *  it reports the quantised cases as not supported. */
  quantLinear?(x: Tensor, weight: QuantWeight, options?: QuantLinearOptions): Tensor;
}

export const reference: Kernels = {
  name: "reference",
  matmul: ops.matmul,
  bmm: ops.bmm,
  linear: (x, weight) => ops.linear(x, weight),
  softmax: ops.softmax,
  rmsnorm: ops.rmsnorm,
  rope: applyRope,
  silu: ops.silu,
  swiglu: ops.swiglu,
  attention(q, k, v, options = {}) {
    const { B, Tq } = expectShape("q", q, ["B", "H", "Tq", "Dh"]);
    const { Tk } = expectShape("k", k, ["B", "Hkv", "Tk", "Dh"], { B });
    const mask = options.mask ? maskFromSpec(options.mask, B, Tq, Tk) : undefined;
    const { logGammas, scale } = options;
    return sdpa(q, k, v, { mask, logGammas, offset: options.mask?.offset, scale }).out;
  },
  moe: dispatchCombine,
  quantLinear,
};
