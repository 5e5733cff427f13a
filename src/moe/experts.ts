// Routed experts: SwiGLU MLPs (Shazeer 2020), expert e computes down_e(silu(gate_e·x) ⊙ up_e·x).
// Dispatch gathers each expert's kept tokens, combine adds w_te·Expert_e(x_t) back into token t's row.
// Dropped assignments add nothing; kept weights are not renormalised (spec/moe.md).

import { argError } from "../errors.ts";
import { linear, swiglu } from "../ops.ts";
import { expectShape, type Tensor } from "../tensor.ts";

/** The router's decision for N tokens and k choices each, flattened as [N·k] in token-major order. */
export interface Routing {
  readonly k: number;
  readonly experts: Int32Array; // chosen expert of assignment (t, r) at t·k + r
  readonly weights: Float32Array; // its gate weight
  readonly kept: Uint8Array; // 1 if capacity kept it, 0 if it was dropped
}

/** Every expert's weights stacked: gate and up [E, F, D], down [E, D, F] (F = moe_intermediate_size). */
export interface ExpertWeights {
  readonly gate: Tensor;
  readonly up: Tensor;
  readonly down: Tensor;
}

/** One SwiGLU MLP: x [N, D] → [N, D], weights in PyTorch's [out, in] layout. */
export function swigluMlp(x: Tensor, gate: Tensor, up: Tensor, down: Tensor): Tensor {
  return linear(swiglu(linear(x, gate), linear(x, up)), down);
}

/** The weights of expert e as views into the stacked tensors (no copy). */
export function expert(weights: ExpertWeights, e: number): { gate: Tensor; up: Tensor; down: Tensor } {
  const view = (t: Tensor) => {
    const [, rows, cols] = t.shape as [number, number, number];
    return { shape: [rows, cols], data: t.data.subarray(e * rows * cols, (e + 1) * rows * cols) };
  };
  return { gate: view(weights.gate), up: view(weights.up), down: view(weights.down) };
}

/** y[t] = Σ over kept assignments (t, e) of w_te · Expert_e(x_t). x [N, D] → [N, D]. `runExpert` computes
 *  Expert_e on its gathered tokens (default: the reference SwiGLU on the stacked weights; quantised experts pass
 *  their own, src/model-adapters.ts). */
export function dispatchCombine(
  x: Tensor, routing: Routing, weights: ExpertWeights,
  runExpert: (tokens: Tensor, e: number) => Tensor = (tokens, e) => {
    const w = expert(weights, e);
    return swigluMlp(tokens, w.gate, w.up, w.down);
  },
): Tensor {
  const { N, D } = expectShape("x", x, ["N", "D"]);
  const { E, F } = expectShape("experts.gate", weights.gate, ["E", "F", "D"], { D });
  expectShape("experts.up", weights.up, ["E", "F", "D"], { E, F, D });
  expectShape("experts.down", weights.down, ["E", "D", "F"], { E, F, D });
  const { k } = routing;
  for (const [name, a] of [["experts", routing.experts], ["weights", routing.weights], ["kept", routing.kept]] as const) {
    if (a.length !== N * k) throw argError(`routing.${name}`, `${N * k} entries (N=${N} · k=${k})`, a.length);
  }
  const sum = new Float64Array(N * D); // float64 accumulation over a token's k experts, one rounding at the end
  for (let e = 0; e < E; e++) {
    const slots: number[] = []; // assignments t·k + r kept by expert e, in token order
    for (let a = 0; a < N * k; a++) {
      const chosen = routing.experts[a]!;
      if (!Number.isInteger(chosen) || chosen < 0 || chosen >= E) {
        throw argError(`routing.experts[${a}]`, `an expert in [0, ${E - 1}]`, chosen);
      }
      if (chosen === e && routing.kept[a]) slots.push(a);
    }
    if (slots.length === 0) continue;
    const tokens = new Float32Array(slots.length * D);
    slots.forEach((a, i) => tokens.set(x.data.subarray(Math.floor(a / k) * D, Math.floor(a / k) * D + D), i * D));
    const y = runExpert({ shape: [slots.length, D], data: tokens }, e);
    slots.forEach((a, i) => {
      const t = Math.floor(a / k);
      for (let d = 0; d < D; d++) sum[t * D + d] += routing.weights[a]! * y.data[i * D + d]!;
    });
  }
  return { shape: [N, D], data: Float32Array.from(sum) };
}
