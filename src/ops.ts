// The basic operations, as plain loops: accumulate in float64 (JS numbers), round once on store into float32.
// Shapes follow PyTorch: a linear layer's weight is [out, in] and y = x·Wᵀ.

import { erfc } from "./erf.ts";
import { argError, checkNumber } from "./errors.ts";
import { expectShape, numel, shapeString, type Tensor } from "./tensor.ts";

/** C[M, N] = A[M, K]·B (B is [K, N], or [N, K] read transposed): the one matrix-product loop of the reference. */
export function gemm(
  M: number, N: number, K: number,
  a: Float32Array, aOffset: number,
  b: Float32Array, bOffset: number, bTransposed: boolean,
  out: Float32Array | Float64Array, outOffset: number,
): void {
  const [bRow, bCol] = bTransposed ? [1, K] : [N, 1];
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += a[aOffset + i * K + k]! * b[bOffset + k * bRow + j * bCol]!;
      out[outOffset + i * N + j] = sum;
    }
  }
}

/** a [..., M, K] · b [K, N] → [..., M, N]. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.shape.length < 2) throw argError("a", "shape [..., M, K]", shapeString(a.shape));
  const K = a.shape[a.shape.length - 1]!;
  const { N } = expectShape("b", b, ["K", "N"], { K });
  const M = numel(a.shape.slice(0, -1)); // not numel / K, which is NaN when K = 0
  const out = new Float32Array(M * N);
  gemm(M, N, K, a.data, 0, b.data, 0, false, out, 0);
  return { shape: [...a.shape.slice(0, -1), N], data: out };
}

/** Batched product: a [..., M, K] · b [..., K, N] with equal leading dimensions → [..., M, N]. */
export function bmm(a: Tensor, b: Tensor): Tensor {
  if (a.shape.length < 3) throw argError("a", "shape [batch..., M, K]", shapeString(a.shape));
  const lead = a.shape.slice(0, -2);
  const [M, K] = a.shape.slice(-2) as [number, number];
  const names = lead.map((_, i) => `b${i}`);
  const { N } = expectShape("b", b, [...names, "K", "N"], { ...Object.fromEntries(lead.map((d, i) => [`b${i}`, d])), K });
  const batches = numel(lead);
  const out = new Float32Array(batches * M * N);
  for (let i = 0; i < batches; i++) gemm(M, N, K, a.data, i * M * K, b.data, i * K * N, false, out, i * M * N);
  return { shape: [...lead, M, N], data: out };
}

/** A linear layer: x [..., in] · Wᵀ (+ bias), with W [out, in] as PyTorch stores it. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  if (x.shape.length < 1) throw argError("x", "shape [..., in]", shapeString(x.shape));
  const inDim = x.shape[x.shape.length - 1]!;
  const { out: outDim } = expectShape("weight", weight, ["out", "in"], { in: inDim });
  if (bias) expectShape("bias", bias, ["out"], { out: outDim });
  const rows = inDim === 0 ? numel(x.shape.slice(0, -1)) : x.data.length / inDim;
  const out = new Float32Array(rows * outDim);
  if (!bias) {
    gemm(rows, outDim, inDim, x.data, 0, weight.data, 0, true, out, 0);
  } else {
    const sums = new Float64Array(rows * outDim); // add the bias before the one rounding, not after
    gemm(rows, outDim, inDim, x.data, 0, weight.data, 0, true, sums, 0);
    for (let r = 0; r < rows; r++) for (let o = 0; o < outDim; o++) out[r * outDim + o] = sums[r * outDim + o]! + bias.data[o]!;
  }
  return { shape: [...x.shape.slice(0, -1), outDim], data: out };
}

/**
 * Softmax over the last axis. `visible` (same size as x, 1 = visible) hides entries: they get weight 0, and a row
 * with nothing visible is all zeros, never NaN. -Infinity entries in x are hidden the same way.
 */
export function softmax(x: Tensor, visible?: Uint8Array): Tensor {
  const N = x.shape[x.shape.length - 1] ?? 1;
  if (visible && visible.length !== x.data.length) throw argError("visible", `${x.data.length} flags`, visible.length);
  const out = new Float32Array(x.data.length);
  for (let row = 0; row * N < x.data.length; row++) {
    const base = row * N;
    const seen = (j: number) => (!visible || visible[base + j] !== 0) && x.data[base + j]! !== -Infinity;
    let max = -Infinity;
    for (let j = 0; j < N; j++) if (seen(j)) max = Math.max(max, x.data[base + j]!);
    if (max === -Infinity) continue; // fully masked row: zeros
    let sum = 0;
    for (let j = 0; j < N; j++) if (seen(j)) sum += Math.exp(x.data[base + j]! - max);
    for (let j = 0; j < N; j++) out[base + j] = seen(j) ? Math.exp(x.data[base + j]! - max) / sum : 0;
  }
  return { shape: [...x.shape], data: out };
}

/** log Σ exp(v) over `row`, max-subtracted so that it never overflows: max + ln Σ exp(v - max). */
export function logsumexp(row: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}

/** RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x²) + eps) · weight, over the last axis. */
export function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  if (x.shape.length < 1) throw argError("x", "shape [..., D]", shapeString(x.shape));
  const D = x.shape[x.shape.length - 1]!;
  expectShape("weight", weight, ["D"], { D });
  checkNumber("eps", eps, 0, 1);
  const out = new Float32Array(x.data.length);
  for (let base = 0; base < x.data.length; base += D) {
    let sumSquares = 0;
    for (let i = 0; i < D; i++) sumSquares += x.data[base + i]! ** 2;
    const inv = 1 / Math.sqrt(sumSquares / D + eps);
    for (let i = 0; i < D; i++) out[base + i] = x.data[base + i]! * inv * weight.data[i]!;
  }
  return { shape: [...x.shape], data: out };
}

/** LayerNorm (Ba et al. 2016): (x - mean) / sqrt(var + eps) · weight + bias, over the last axis. */
export function layernorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const D = x.shape[x.shape.length - 1]!;
  expectShape("weight", weight, ["D"], { D });
  expectShape("bias", bias, ["D"], { D });
  checkNumber("eps", eps, 0, 1);
  const out = new Float32Array(x.data.length);
  for (let base = 0; base < x.data.length; base += D) {
    let mean = 0;
    for (let i = 0; i < D; i++) mean += x.data[base + i]!;
    mean /= D;
    let variance = 0;
    for (let i = 0; i < D; i++) variance += (x.data[base + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(variance / D + eps);
    for (let i = 0; i < D; i++) out[base + i] = (x.data[base + i]! - mean) * inv * weight.data[i]! + bias.data[i]!;
  }
  return { shape: [...x.shape], data: out };
}

/** f on every element (a loop rather than Float32Array's map, which V8 runs several times slower on a small tensor). */
function map(x: Tensor, f: (v: number) => number): Tensor {
  const out = new Float32Array(x.data.length);
  for (let i = 0; i < out.length; i++) out[i] = f(x.data[i]!);
  return { shape: [...x.shape], data: out };
}

export const silu = (x: Tensor): Tensor => map(x, (v) => v / (1 + Math.exp(-v)));

/** The logistic function 1 / (1 + e^-x), element-wise (sigmoid router scores, NSA's gates). */
export const sigmoid = (x: Tensor): Tensor => map(x, (v) => 1 / (1 + Math.exp(-v)));

/**
 * GELU, the exact form (Hendrycks & Gimpel 2016; PyTorch's nn.GELU() default): x·Φ(x) = ½x·erfc(−x/√2), which is
 * ½x(1 + erf(x/√2)) written so that the negative tail keeps its digits instead of cancelling 1 − 0.99…; −∞ gives −0.
 */
export const gelu = (x: Tensor): Tensor =>
  map(x, (v) => (v === -Infinity ? -0 : 0.5 * v * erfc(-v * Math.SQRT1_2)));

/** SwiGLU's gating (Shazeer 2020): silu(gate) ⊙ up. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  expectShape("up", up, gate.shape.map((_, i) => `d${i}`), Object.fromEntries(gate.shape.map((d, i) => [`d${i}`, d])));
  const out = new Float32Array(gate.data.length);
  for (let i = 0; i < out.length; i++) {
    const g = gate.data[i]!;
    out[i] = (g / (1 + Math.exp(-g))) * up.data[i]!;
  }
  return { shape: [...gate.shape], data: out };
}

/** Rows of `table` [V, D] for each id: [ids.length, D]. */
export function embedding(table: Tensor, ids: ArrayLike<number>): Tensor {
  const { V, D } = expectShape("table", table, ["V", "D"]);
  const out = new Float32Array(ids.length * D);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (!Number.isInteger(id) || id < 0 || id >= V) throw argError(`ids[${t}]`, `an integer in [0, ${V - 1}]`, id);
    out.set(table.data.subarray(id * D, (id + 1) * D), t * D);
  }
  return { shape: [ids.length, D], data: out };
}

/** Round half to even, as WASM's f32.nearest and WGSL's round do (Math.round rounds half up: 2.5 → 3). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The index of the largest value, ties to the lower index. */
export function argmax(values: ArrayLike<number>): number {
  if (!values || values.length === 0) throw argError("values", "at least one value", values?.length);
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
