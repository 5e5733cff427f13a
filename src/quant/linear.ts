// Linear layers on quantised weights: y = x·Wᵀ with W held as codes and scales. Each group's (or block's) dot
// product of codes is taken first and scaled once, the way an integer or FP8 kernel computes it; the reference
// does it in float64, so the only error is the quantisation itself.

import { argError } from "../errors.ts";
import { roundHalfEven } from "../ops.ts";
import type { Tensor } from "../tensor.ts";
import { quantizeActivationTiles, type Fp8Weight } from "./fp8.ts";
import type { IntWeight } from "./int.ts";
import { decode, FORMATS } from "./minifloat.ts";

export type QuantWeight = IntWeight | Fp8Weight;

export interface QuantLinearOptions {
  /** Quantise activations too: per-token int8 for int schemes ("dynamic quantisation"), 1×128 e4m3 tiles for fp8
   *  (always on for fp8, as in DeepSeek-V3). */
  activations?: boolean;
}

/** Per-token symmetric int8: scale = max|x_t| / 127, codes = roundHalfEven(x / scale). */
export function quantizeTokenInt8(row: Float32Array): { codes: Float64Array; scale: number } {
  let absMax = 0;
  for (const v of row) absMax = Math.max(absMax, Math.abs(v));
  const scale = Math.fround(absMax / 127);
  const codes = row.length === 0 ? new Float64Array(0) : Float64Array.from(row, (v) => (scale === 0 ? 0 : Math.min(127, Math.max(-127, roundHalfEven(v / scale)))));
  return { codes, scale };
}

export function quantLinear(x: Tensor, w: QuantWeight, options: QuantLinearOptions = {}): Tensor {
  const [out, inDim] = w.shape;
  if (x.shape[x.shape.length - 1] !== inDim) throw argError("x", `shape [..., ${inDim}]`, `[${x.shape.join(", ")}]`);
  const rows = x.data.length / inDim;
  const y = new Float32Array(rows * out);
  for (let r = 0; r < rows; r++) {
    const row = x.data.subarray(r * inDim, (r + 1) * inDim);
    const dot = w.scheme === "fp8" ? fp8Row(row, w) : intRow(row, w, options.activations ?? false);
    for (let o = 0; o < out; o++) y[r * out + o] = dot(o);
  }
  return { shape: [...x.shape.slice(0, -1), out], data: y };
}

/** Σ over groups of scale_g · (x · codes) for output o; activations quantised once per row when asked. */
function intRow(row: Float32Array, w: IntWeight, quantiseActivations: boolean): (o: number) => number {
  const inDim = w.shape[1];
  const groups = Math.ceil(inDim / w.groupSize);
  const { codes: xs, scale: xScale } = quantiseActivations ? quantizeTokenInt8(row) : { codes: row, scale: 1 };
  return (o) => {
    let sum = 0;
    for (let g = 0; g < groups; g++) {
      let dot = 0;
      for (let i = g * w.groupSize; i < Math.min((g + 1) * w.groupSize, inDim); i++) dot += xs[i]! * w.codes[o * inDim + i]!;
      sum += dot * w.scales[o * groups + g]!;
    }
    return sum * xScale;
  };
}

/** Σ over 128-wide tiles of (x-tile scale · weight-block scale) · (e4m3 x · e4m3 w) for output o. */
function fp8Row(row: Float32Array, w: Fp8Weight): (o: number) => number {
  const inDim = w.shape[1];
  const { values, scales: xScales } = quantizeActivationTiles(row, w.block);
  const colBlocks = Math.ceil(inDim / w.block);
  return (o) => {
    let sum = 0;
    for (let cb = 0; cb < colBlocks; cb++) {
      let dot = 0;
      for (let i = cb * w.block; i < Math.min((cb + 1) * w.block, inDim); i++) dot += values[i]! * E4M3_VALUES[w.bits[o * inDim + i]!]!;
      sum += dot * xScales[cb]! * w.scales[Math.floor(o / w.block) * colBlocks + cb]!;
    }
    return sum;
  };
}

/** The value of every e4m3 bit pattern, so the inner loop is a table lookup. */
const E4M3_VALUES = Float64Array.from({ length: 256 }, (_, bits) => decode(FORMATS.e4m3, bits));
