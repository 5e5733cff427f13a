// DeepSeek-V3's FP8 scheme (V3 technical report, section 3.3): weights in e4m3 with one scale per 128×128 block,
// activations in e4m3 with one scale per 1×128 tile of each token, scale = amax / 448 so the block's largest value
// lands on e4m3's largest. The checkpoint ships the per-block multiplier as `weight_scale_inv`.

import { argError, checkInteger } from "../errors.ts";
import { expectShape, type Tensor } from "../tensor.ts";
import { encode, decode, FORMATS } from "./minifloat.ts";

const E4M3 = FORMATS.e4m3;

export interface Fp8Weight {
  readonly scheme: "fp8";
  readonly shape: readonly [number, number]; // [out, in]
  readonly block: number; // 128
  /** e4m3 bit patterns, row-major. */
  readonly bits: Uint8Array;
  /** [ceil(out / block), ceil(in / block)]: the multiplier that turns codes back into weights. */
  readonly scales: Float32Array;
}

/** The scale that maps a block's largest magnitude onto e4m3's largest value (0 for a block of zeros). */
const scaleFor = (absMax: number) => Math.fround(absMax / E4M3.max);

export function quantizeFp8(weight: Tensor, block = 128): Fp8Weight {
  const { out, in: inDim } = expectShape("weight", weight, ["out", "in"]);
  checkInteger("block", block, 1);
  const [rowBlocks, colBlocks] = [Math.ceil(out / block), Math.ceil(inDim / block)];
  const bits = new Uint8Array(out * inDim);
  const scales = new Float32Array(rowBlocks * colBlocks);
  for (let rb = 0; rb < rowBlocks; rb++) {
    for (let cb = 0; cb < colBlocks; cb++) {
      const rows = [rb * block, Math.min((rb + 1) * block, out)] as const;
      const cols = [cb * block, Math.min((cb + 1) * block, inDim)] as const;
      let absMax = 0;
      for (let r = rows[0]; r < rows[1]; r++) for (let c = cols[0]; c < cols[1]; c++) absMax = Math.max(absMax, Math.abs(weight.data[r * inDim + c]!));
      if (!Number.isFinite(absMax)) throw argError("weight", "finite values", absMax);
      const scale = scaleFor(absMax);
      scales[rb * colBlocks + cb] = scale;
      for (let r = rows[0]; r < rows[1]; r++) {
        for (let c = cols[0]; c < cols[1]; c++) bits[r * inDim + c] = scale === 0 ? 0 : encode(E4M3, weight.data[r * inDim + c]! / scale);
      }
    }
  }
  return { scheme: "fp8", shape: [out, inDim], block, bits, scales };
}

export function dequantizeFp8(w: Fp8Weight): Tensor {
  const [out, inDim] = w.shape;
  const colBlocks = Math.ceil(inDim / w.block);
  const data = new Float32Array(out * inDim);
  for (let r = 0; r < out; r++) {
    for (let c = 0; c < inDim; c++) {
      const scale = w.scales[Math.floor(r / w.block) * colBlocks + Math.floor(c / w.block)]!;
      data[r * inDim + c] = decode(E4M3, w.bits[r * inDim + c]!) * scale;
    }
  }
  return { shape: [out, inDim], data };
}

/** One token's activations as e4m3 values (decoded) with one scale per tile of `tile` features. */
export function quantizeActivationTiles(row: Float32Array, tile = 128): { values: Float64Array; scales: Float64Array } {
  const tiles = Math.ceil(row.length / tile);
  const values = new Float64Array(row.length);
  const scales = new Float64Array(tiles);
  for (let t = 0; t < tiles; t++) {
    const [start, end] = [t * tile, Math.min((t + 1) * tile, row.length)];
    let absMax = 0;
    for (let i = start; i < end; i++) absMax = Math.max(absMax, Math.abs(row[i]!));
    const scale = scaleFor(absMax);
    scales[t] = scale;
    for (let i = start; i < end; i++) values[i] = scale === 0 ? 0 : decode(E4M3, encode(E4M3, row[i]! / scale));
  }
  return { values, scales };
}
