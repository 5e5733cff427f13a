// Symmetric per-group integer weights (spec/quant.md): along the input dimension, each group of `groupSize`
// weights shares scale = max|w| / qmax, and q = roundHalfEven(w / scale) clamped to [-qmax, qmax] (127 for int8,
// 7 for int4). A group of zeros has scale 0 and codes 0: never a division by zero. int4 is stored offset-binary
// (q + 8) and packed two to a byte, low nibble first. The last group of a row may be shorter when `in` is not a
// multiple of the group size.

import { argError } from "../errors.ts";
import { roundHalfEven } from "../ops.ts";
import { expectShape, type Tensor } from "../tensor.ts";

export type IntBits = 8 | 4;
export const GROUP_SIZES = [32, 64, 128] as const;

export interface IntWeight {
  readonly scheme: "int8" | "int4";
  readonly shape: readonly [number, number]; // [out, in]
  readonly groupSize: number;
  /** One code per weight, row-major, in [-qmax, qmax]. */
  readonly codes: Int8Array;
  /** [out, ceil(in / groupSize)], float32 as stored. */
  readonly scales: Float32Array;
}

const qmaxOf = (bits: IntBits) => 2 ** (bits - 1) - 1;

export function quantizeInt(weight: Tensor, bits: IntBits, groupSize: number): IntWeight {
  const { out, in: inDim } = expectShape("weight", weight, ["out", "in"]);
  if (bits !== 8 && bits !== 4) throw argError("bits", "8 or 4", bits);
  if (!(GROUP_SIZES as readonly number[]).includes(groupSize)) throw argError("groupSize", "32, 64 or 128", groupSize);
  const qmax = qmaxOf(bits);
  const groups = Math.ceil(inDim / groupSize);
  const codes = new Int8Array(out * inDim);
  const scales = new Float32Array(out * groups);
  for (let o = 0; o < out; o++) {
    for (let g = 0; g < groups; g++) {
      const [start, end] = [o * inDim + g * groupSize, o * inDim + Math.min((g + 1) * groupSize, inDim)];
      let absMax = 0;
      for (let i = start; i < end; i++) {
        const w = weight.data[i]!;
        if (!Number.isFinite(w)) throw argError(`weight[${o}, ${i - o * inDim}]`, "a finite value", w);
        absMax = Math.max(absMax, Math.abs(w));
      }
      const scale = Math.fround(absMax / qmax);
      scales[o * groups + g] = scale;
      if (scale === 0) continue;
      for (let i = start; i < end; i++) codes[i] = Math.min(qmax, Math.max(-qmax, roundHalfEven(weight.data[i]! / scale)));
    }
  }
  return { scheme: bits === 8 ? "int8" : "int4", shape: [out, inDim], groupSize, codes, scales };
}

/** code · scale for every weight. */
export function dequantizeInt(w: IntWeight): Tensor {
  const [out, inDim] = w.shape;
  const groups = Math.ceil(inDim / w.groupSize);
  const data = new Float32Array(out * inDim);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inDim; i++) data[o * inDim + i] = w.codes[o * inDim + i]! * w.scales[o * groups + Math.floor(i / w.groupSize)]!;
  }
  return { shape: [out, inDim], data };
}

/** int4 codes in [-7, 7] → bytes of two offset-binary nibbles, low nibble first; an odd tail is padded with 8 (0). */
export function packInt4(codes: Int8Array): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) {
    const q = codes[i]!;
    if (q < -7 || q > 7) throw argError(`codes[${i}]`, "an int4 code in [-7, 7]", q);
    bytes[i >> 1]! |= (q + 8) << (i & 1 ? 4 : 0);
  }
  if (codes.length % 2 === 1) bytes[bytes.length - 1]! |= 8 << 4;
  return bytes;
}

export function unpackInt4(bytes: Uint8Array, count: number): Int8Array {
  if (Math.ceil(count / 2) !== bytes.length) throw argError("bytes", `${Math.ceil(count / 2)} bytes for ${count} codes`, bytes.length);
  const codes = new Int8Array(count);
  for (let i = 0; i < count; i++) codes[i] = ((bytes[i >> 1]! >> (i & 1 ? 4 : 0)) & 15) - 8;
  return codes;
}
