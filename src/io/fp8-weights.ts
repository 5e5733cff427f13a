// DeepSeek-V3 ships its linear weights in FP8: `<name>` is F8_E4M3 [out, in] and `<name>_scale_inv` is F32
// [ceil(out/128), ceil(in/128)], the multiplier of each 128×128 block (weight = code · scale_inv). These read such a
// pair into the Fp8Weight that src/quant/ computes with, and write one back in the same layout.

import { type Fp8Weight } from "../quant/fp8.ts";
import { readTensor, SafetensorsError, type SafetensorsHeader, type TensorToWrite } from "./safetensors.ts";

export const SCALE_SUFFIX = "_scale_inv";

/** The FP8 weight `name` of a parsed checkpoint, with its block scales; the codes stay as stored bits. */
export function readFp8Weight(bytes: Uint8Array, header: SafetensorsHeader, name: string, block = 128): Fp8Weight {
  const fail = (message: string) => new SafetensorsError(`fp8 weight ${JSON.stringify(name)}: ${message}`);
  const entry = header.entries.get(name);
  if (!entry) throw fail("no such tensor");
  if (entry.dtype !== "F8_E4M3" || entry.shape.length !== 2) throw fail(`expected F8_E4M3 of shape [out, in], got ${entry.dtype} [${entry.shape.join(", ")}]`);
  const [out, inDim] = entry.shape as [number, number];
  const scaleEntry = header.entries.get(name + SCALE_SUFFIX);
  if (!scaleEntry) throw fail(`its block scales ${JSON.stringify(name + SCALE_SUFFIX)} are missing`);
  const expected = [Math.ceil(out / block), Math.ceil(inDim / block)];
  if (scaleEntry.dtype !== "F32" || scaleEntry.shape.length !== 2 || scaleEntry.shape.some((d, i) => d !== expected[i])) {
    throw fail(`expected ${name + SCALE_SUFFIX} as F32 [${expected.join(", ")}] (one per ${block}×${block} block), got ${scaleEntry.dtype} [${scaleEntry.shape.join(", ")}]`);
  }
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
