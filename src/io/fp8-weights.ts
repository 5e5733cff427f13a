// DeepSeek-V3 ships its linear weights in FP8: `<name>` is F8_E4M3 [out, in] and `<name>_scale_inv` is F32
// [ceil(out/128), ceil(in/128)], the multiplier of each 128×128 block (weight = code · scale_inv). These read such a
// pair into the Fp8Weight that src/quant/ computes with, and write one back in the same layout.

import type { Fp8Weight } from "../quant/fp8.ts";
import { decode, FORMATS } from "../quant/minifloat.ts";
import { readTensor, SafetensorsError, type HeaderEntry, type SafetensorsHeader, type TensorToWrite } from "./safetensors.ts";

export const SCALE_SUFFIX = "_scale_inv";

/** The FP8 weight `name` of a parsed checkpoint, with its block scales; the codes stay as stored bits. */
export function readFp8Weight(bytes: Uint8Array, header: SafetensorsHeader, name: string, block = 128): Fp8Weight {
  const fail = (message: string) => new SafetensorsError(`fp8 weight ${JSON.stringify(name)}: ${message}`);
  const entry = header.entries.get(name);
  if (!entry) throw fail("no such tensor");
  if (entry.dtype !== "F8_E4M3" || entry.shape.length !== 2) throw fail(`expected F8_E4M3 of shape [out, in], got ${entry.dtype} [${entry.shape.join(", ")}]`);
  const [out, inDim] = entry.shape as [number, number];
  const problem = fp8ScalesProblem(name, entry, header.entries.get(name + SCALE_SUFFIX), block);
  if (problem) throw fail(problem);
  const bits = readTensor(bytes, header, name, { raw: true }).data as Uint8Array;
  const scales = readTensor(bytes, header, name + SCALE_SUFFIX).data as Float32Array;
  return { scheme: "fp8", shape: [out, inDim], block, bits, scales };
}

/** The two tensors that store `w` as DeepSeek's checkpoints do, ready for writeSafetensors. */
export function fp8WeightTensors(name: string, w: Fp8Weight): Record<string, TensorToWrite> {
  const [out, inDim] = w.shape;
  return {
    [name]: { dtype: "F8_E4M3", shape: [out, inDim], raw: w.bits },
    [name + SCALE_SUFFIX]: { dtype: "F32", shape: [Math.ceil(out / w.block), Math.ceil(inDim / w.block)], data: w.scales },
  };
}

/** Why the block scales of the FP8 weight `name` [out, in] do not fit it, or null: F32 [ceil(out/block), ceil(in/block)]. */
export function fp8ScalesProblem(name: string, weight: HeaderEntry, scales: HeaderEntry | undefined, block = 128): string | null {
  if (!scales) return `its block scales ${JSON.stringify(name + SCALE_SUFFIX)} are missing (an F8_E4M3 weight needs its ${SCALE_SUFFIX})`;
  const [out, inDim] = weight.shape as [number, number];
  const expected = [Math.ceil(out / block), Math.ceil(inDim / block)];
  if (scales.dtype !== "F32" || scales.shape.length !== 2 || scales.shape.some((d, i) => d !== expected[i])) {
    return `expected ${name + SCALE_SUFFIX} as F32 [${expected.join(", ")}] (one per ${block}×${block} block), got ${scales.dtype} [${scales.shape.join(", ")}]`;
  }
  return null;
}

/** e4m3's 256 codes as float32 values (NaN for S.1111.111), built on first use. */
let e4m3Table: Float32Array | undefined;
const e4m3Values = () => (e4m3Table ??= Float32Array.from({ length: 256 }, (_, bits) => decode(FORMATS.e4m3, bits)));

/**
 * The float32 weight of an FP8 pair, as DeepSeek's `weight_dequant` computes it: each code's e4m3 value times the
 * scale of its block, one float32 rounding (exact whenever the product fits float32's 24 bits, as it does for a
 * power-of-two scale). A NaN code (S.1111.111) is refused, naming the weight and the element: a checkpoint never
 * holds one, and it would turn the whole forward into NaN. Writes into `into` when given (a stacked expert's slice).
 */
export function dequantizeFp8Codes(name: string, bits: Uint8Array, [out, inDim]: readonly [number, number], scales: Float32Array, block = 128, into = new Float32Array(out * inDim)): Float32Array {
  const values = e4m3Values();
  const colBlocks = Math.ceil(inDim / block);
  for (let r = 0; r < out; r++) {
    const scaleRow = Math.floor(r / block) * colBlocks;
    for (let cb = 0; cb < colBlocks; cb++) {
      const scale = scales[scaleRow + cb]!;
      const end = r * inDim + Math.min((cb + 1) * block, inDim);
      for (let i = r * inDim + cb * block; i < end; i++) {
        const code = bits[i]!;
        if ((code & 0x7f) === 0x7f) throw new SafetensorsError(`fp8 weight ${JSON.stringify(name)}: element ${i} ([${r}, ${i - r * inDim}]) is the NaN code 0x${code.toString(16)}`);
        into[i] = values[code]! * scale;
      }
    }
  }
  return into;
}
