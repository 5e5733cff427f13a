// Rotary position embedding (Su et al. 2021) with DeepSeek-V3's YaRN extension (Peng et al. 2023), as in
// deepseek-ai/DeepSeek-V3 inference/model.py (precompute_freqs_cis, apply_rotary_emb). Pairs are adjacent
// elements (2i, 2i+1), which is what the reference's complex view of the last axis makes them.

import { argError, checkInteger, checkNumber } from "./errors.ts";
import type { Tensor } from "./tensor.ts";

export interface YarnOptions {
  /** Context extension factor (V3: 40). */
  factor: number;
  /** Length the model was trained at before extension (V3: 4096). */
  originalMaxPosition: number;
  /** Maximum length after extension; YaRN switches on only when it exceeds originalMaxPosition. */
  maxPosition: number;
  betaFast?: number; // V3: 32
  betaSlow?: number; // V3: 1
  mscale?: number; // V3: 1.0
}

export interface RopeOptions {
  /** Rotated dimension (qk_rope_head_dim); even. */
  dim: number;
  theta?: number; // rope_theta, V3: 10000
  yarn?: YarnOptions;
}

/** The rotation frequency of each pair i < dim/2, after YaRN's blend when it is on. */
export function ropeFrequencies({ dim, theta = 10000, yarn }: RopeOptions): Float64Array {
  checkInteger("dim", dim, 2);
  if (dim % 2 !== 0) throw argError("dim", "an even number", dim);
  checkNumber("theta", theta, 1, Infinity);
  const half = dim / 2;
  const freqs = new Float64Array(half);
  for (let i = 0; i < half; i++) freqs[i] = 1 / theta ** ((2 * i) / dim);
  if (!yarnActive(yarn)) return freqs;
  const { factor, originalMaxPosition, betaFast = 32, betaSlow = 1 } = yarn;
  checkNumber("yarn.factor", factor, 1, Infinity);
  checkNumber("yarn.betaFast", betaFast, Number.MIN_VALUE, Infinity);
  checkNumber("yarn.betaSlow", betaSlow, Number.MIN_VALUE, Infinity);
  if (theta === 1) throw argError("theta", "a number > 1 with YaRN (its ramp divides by ln θ)", theta);
  // Pairs that turn more than betaFast times over the original length keep their frequency; fewer than betaSlow
  // turns are interpolated by 1/factor; a linear ramp blends the ones between.
  const correctionDim = (rotations: number) =>
    (dim * Math.log(originalMaxPosition / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  const low = Math.max(Math.floor(correctionDim(betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(betaSlow)), dim - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    const smooth = 1 - ramp;
    freqs[i] = (freqs[i]! / factor) * (1 - smooth) + freqs[i]! * smooth;
  }
  return freqs;
}

function yarnActive(yarn: YarnOptions | undefined): yarn is YarnOptions {
  if (!yarn) return false;
  checkInteger("yarn.originalMaxPosition", yarn.originalMaxPosition, 1);
  checkInteger("yarn.maxPosition", yarn.maxPosition, 1);
  return yarn.maxPosition > yarn.originalMaxPosition;
}

/** Dh = hidden_size / H for a layer that rotates whole heads: H must divide hidden_size and Dh be even (rotary pairs). */
export function rotaryHeadSize(hiddenSize: number, heads: number): number {
  checkInteger("hidden_size", hiddenSize, 1);
  checkInteger("num_attention_heads", heads, 1);
  if (hiddenSize % heads !== 0) throw argError("num_attention_heads", `a divisor of hidden_size=${hiddenSize}`, heads);
  const Dh = hiddenSize / heads;
  if (Dh % 2 !== 0) throw argError("num_attention_heads", "a head size hidden_size/H that is even (rotary pairs)", `H=${heads}, head size ${Dh}`);
  return Dh;
}

/**
 * YaRN's attention-scale factor: the softmax scale is multiplied by mscale² = (0.1·mscale·ln(factor) + 1)².
 * It depends on the configuration (maxPosition beyond the original), not on the current sequence length.
 */
export function yarnSoftmaxFactor(yarn: YarnOptions | undefined): number {
  if (!yarnActive(yarn)) return 1;
  checkNumber("yarn.factor", yarn.factor, 1, Infinity);
  checkNumber("yarn.mscale", yarn.mscale ?? 1, 0, Infinity);
  const m = 0.1 * (yarn.mscale ?? 1) * Math.log(yarn.factor) + 1;
  return m * m;
}

/**
 * Rotates x [..., T, dim] pair by pair: position p turns pair i by the angle p·freqs[i]. The pairs are adjacent
 * features (2i, 2i + 1) when interleaved (DeepSeek-V3's layout, the default), the two halves (i, i + dim/2) when not
 * (DeepSeek-V3.2's indexer, and the "rotate half" layout of many other models).
 * `positions` gives the absolute position of each of the T rows (a cache offset makes them start above 0).
 */
export function applyRope(x: Tensor, positions: ArrayLike<number>, freqs: Float64Array, interleaved = true): Tensor {
  const { dim, T } = ropeSizes(x, positions, freqs);
  const [first, second] = interleaved ? [2, 1] : [1, dim / 2]; // pair i: features first·i and first·i + second
  const out = new Float32Array(x.data.length);
  for (let base = 0; base < x.data.length; base += T * dim) {
    for (let t = 0; t < T; t++) {
      const p = positions[t]!;
      for (let i = 0; i < dim / 2; i++) {
        const angle = p * freqs[i]!;
        const [c, s] = [Math.cos(angle), Math.sin(angle)];
        const at = base + t * dim + first * i;
        const [re, im] = [x.data[at]!, x.data[at + second]!];
        out[at] = re * c - im * s;
        out[at + second] = re * s + im * c;
      }
    }
  }
  return { shape: [...x.shape], data: out };
}

/** Checks a rotary call (x [..., T, dim] with dim = 2·freqs.length, finite positions) for every backend. */
export function ropeSizes(x: Tensor, positions: ArrayLike<number>, freqs: Float64Array): { dim: number; T: number } {
  const dim = freqs.length * 2;
  const T = positions.length;
  if (x.shape.length < 2 || x.shape[x.shape.length - 1] !== dim || x.shape[x.shape.length - 2] !== T) {
    throw argError("x", `shape [..., T=${T}, ${dim}]`, `[${x.shape.join(", ")}]`);
  }
  for (let t = 0; t < T; t++) {
    if (!Number.isFinite(positions[t])) throw argError(`positions[${t}]`, "a finite number", positions[t]);
  }
  return { dim, T };
}

/**
 * The one rotary angle table of the float32 backends (WASM, WebGPU, tfjs): cos and sin of position·frequency for
 * each of the T positions and dim/2 pairs, [T, dim/2] each, rounded to float32 once. (The reference's applyRope
 * computes each angle in float64 where it uses it.)
 */
export function rotaryTable(positions: ArrayLike<number>, freqs: Float64Array): { cos: Float32Array; sin: Float32Array } {
  const half = freqs.length;
  const cos = new Float32Array(positions.length * half);
  const sin = new Float32Array(positions.length * half);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[t]! * freqs[i]!;
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
