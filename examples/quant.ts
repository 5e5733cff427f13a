// Lesson 6: quantisation formats and their error (src/quant/: minifloat.ts, int.ts, fp8.ts).
import { dequantizeFp8, quantizeFp8 } from "../src/quant/fp8.ts";
import { dequantizeInt, quantizeInt, type IntBits } from "../src/quant/int.ts";
import { decode, FORMATS, roundArray, roundTo, type FormatName } from "../src/quant/minifloat.ts";
import { randn, Random } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";

const NAMES: FormatName[] = ["fp16", "bf16", "e5m2", "e4m3"];

/** Each float format's layout and range. */
export function formatTable() {
  return NAMES.map((name) => {
    const f = FORMATS[name];
    return {
      format: name, bits: 1 + f.exponentBits + f.mantissaBits, exponent: f.exponentBits, mantissa: f.mantissaBits,
      max: f.max, smallestNormal: 2 ** (1 - f.bias), smallestSubnormal: 2 ** (1 - f.bias - f.mantissaBits),
      relativeStep: 2 ** -f.mantissaBits, infinity: f.hasInfinity,
    };
  });
}

/** A few numbers rounded into every format: what each one stores. */
export function roundingExamples(values: readonly number[] = [0.1, 1 / 3, 3.14159, 300, 1000, 1e-5]) {
  return values.map((x) => Object.fromEntries([["x", x], ...NAMES.map((n) => [n, roundTo(FORMATS[n], x)])]));
}

/** Every positive finite value of an 8-bit format (for a number-line picture). */
export function positiveValues(name: "e4m3" | "e5m2"): number[] {
  const f = FORMATS[name];
  const values: number[] = [];
  for (let bits = 1; bits < 2 ** (f.exponentBits + f.mantissaBits); bits++) {
    const v = decode(f, bits);
    if (Number.isFinite(v) && v > 0) values.push(v);
  }
  return values;
}

/** Seeded weights like a trained layer's: N(0, 0.02²), [out, in]. */
export const seededWeights = (out = 128, inDim = 256, seed = 9): Tensor => randn(new Random(seed), [out, inDim], 0.02);

/** ||ŵ - w|| / ||w||. */
export function relativeError(w: Tensor, approx: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < w.data.length; i++) {
    num += (approx[i]! - w.data[i]!) ** 2;
    den += w.data[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

export interface ErrorRow {
  scheme: string;
  family: string;
  /** Storage per weight, scales (float32) included. */
  bitsPerWeight: number;
  relError: number;
}

/** Every scheme on the same weights: bits per weight against relative error. */
export function errorVersusBits(w: Tensor = seededWeights()): ErrorRow[] {
  const rows: ErrorRow[] = [];
  for (const name of NAMES) {
    const f = FORMATS[name];
    rows.push({ scheme: `${name} (cast)`, family: "float cast", bitsPerWeight: 1 + f.exponentBits + f.mantissaBits, relError: relativeError(w, roundArray(f, w.data)) });
  }
  const fp8 = quantizeFp8(w, 128);
  rows.push({ scheme: "e4m3, 128×128 blocks", family: "fp8 scaled", bitsPerWeight: 8 + 32 / (128 * 128), relError: relativeError(w, dequantizeFp8(fp8).data) });
  for (const bits of [8, 4] as IntBits[]) {
    for (const g of [32, 64, 128]) {
      const q = quantizeInt(w, bits, g);
      rows.push({ scheme: `int${bits}, groups of ${g}`, family: `int${bits}`, bitsPerWeight: bits + 32 / g, relError: relativeError(w, dequantizeInt(q).data) });
    }
  }
  return rows;
}

/** Weights at several scales cast to e4m3 with no scaling: the error explodes below e4m3's normal range. */
export function castErrorByScale(scales: readonly number[] = [1e-4, 1e-3, 0.01, 0.1, 1, 10, 100]) {
  const base = randn(new Random(4), [4096], 1);
  return scales.flatMap((s) => {
    const w = { shape: [4096], data: base.data.map((v) => v * s) };
    return (["e4m3", "e5m2", "bf16"] as FormatName[]).map((name) => ({ std: s, format: name, relError: relativeError(w, roundArray(FORMATS[name], w.data)) }));
  });
}
