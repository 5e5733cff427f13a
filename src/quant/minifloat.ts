// Narrow floating-point formats, emulated exactly: fp16, bf16 and the two FP8 formats (OCP 8-bit floating point
// spec, 2023; NVIDIA/Arm/Intel "FP8 Formats for Deep Learning", Micikevicius et al. 2022). Rounding is to nearest,
// ties to even, done once from the float64 value. JavaScript has no Float16Array in Node 20 and no bfloat16 or
// fp8 arrays anywhere, so these conversions are ours, and they are tested on every special value.

import { argError, checkOneOf } from "../errors.ts";
import { roundHalfEven } from "../ops.ts";

export interface MiniFloat {
  readonly name: FormatName;
  readonly exponentBits: number;
  readonly mantissaBits: number;
  readonly bias: number;
  /** IEEE-style formats reserve the top exponent for Inf/NaN; e4m3 ("FN") has no Inf and one NaN mantissa. */
  readonly hasInfinity: boolean;
  /** The largest finite value. */
  readonly max: number;
}

export type FormatName = "fp16" | "bf16" | "e4m3" | "e5m2";

function ieee(name: FormatName, exponentBits: number, mantissaBits: number): MiniFloat {
  const bias = 2 ** (exponentBits - 1) - 1;
  const max = (2 - 2 ** -mantissaBits) * 2 ** (2 ** exponentBits - 2 - bias);
  return { name, exponentBits, mantissaBits, bias, hasInfinity: true, max };
}

export const FORMATS: Record<FormatName, MiniFloat> = {
  fp16: ieee("fp16", 5, 10),
  bf16: ieee("bf16", 8, 7),
  e5m2: ieee("e5m2", 5, 2),
  // e4m3fn: exponent 15 is an ordinary binade except mantissa 111, the only NaN; max = 1.75·2^8 = 448.
  e4m3: { name: "e4m3", exponentBits: 4, mantissaBits: 3, bias: 7, hasInfinity: false, max: 448 },
};

export function format(name: string): MiniFloat {
  checkOneOf("format", name as FormatName, Object.keys(FORMATS) as FormatName[]);
  return FORMATS[name as FormatName];
}

export interface RoundOptions {
  /** Clamp out-of-range values to ±max (the emulation default, as DeepSeek-V3 clamps before casting to FP8).
   *  Without it, overflow gives ±Inf, or NaN for e4m3, which has no infinity. */
  saturate?: boolean;
}

/** x rounded to the nearest value of format `f`, ties to even. NaN stays NaN; ±Inf saturates to ±max if asked. */
export function roundTo(f: MiniFloat, x: number, { saturate = true }: RoundOptions = {}): number {
  if (Number.isNaN(x)) return NaN;
  const sign = x < 0 || Object.is(x, -0) ? -1 : 1;
  const magnitude = Math.abs(x);
  const overflow = () => (saturate ? sign * f.max : f.hasInfinity ? sign * Infinity : NaN);
  if (magnitude === Infinity) return overflow();
  if (magnitude === 0) return sign * 0;
  // The quantum of magnitude's binade, or of the subnormal range below the smallest normal exponent.
  const exponent = Math.max(binade(magnitude), 1 - f.bias);
  const quantum = 2 ** (exponent - f.mantissaBits);
  const rounded = roundHalfEven(magnitude / quantum) * quantum; // both steps exact in float64
  return rounded > f.max ? overflow() : sign * rounded;
}

/** floor(log2(x)) for finite x > 0, exactly (Math.log2 can be off by one next to powers of two). */
function binade(x: number): number {
  let e = Math.floor(Math.log2(x));
  if (2 ** e > x) e--;
  if (2 ** (e + 1) <= x) e++;
  return e;
}

/** The bit pattern of roundTo(f, x): sign | exponent | mantissa, as stored in a file. */
export function encode(f: MiniFloat, x: number, options: RoundOptions = {}): number {
  const { exponentBits: eb, mantissaBits: mb, bias } = f;
  const v = roundTo(f, x, options);
  const topExponent = 2 ** eb - 1;
  if (Number.isNaN(v)) return f.hasInfinity ? (topExponent << mb) | (1 << (mb - 1)) : (topExponent << mb) | (2 ** mb - 1);
  const signBit = v < 0 || Object.is(v, -0) ? 1 << (eb + mb) : 0;
  const magnitude = Math.abs(v);
  if (magnitude === Infinity) return signBit | (topExponent << mb);
  if (magnitude === 0) return signBit;
  const e = binade(magnitude);
  if (e < 1 - bias) return signBit | (magnitude / 2 ** (1 - bias - mb)); // subnormal: exponent field 0
  return signBit | ((e + bias) << mb) | (magnitude / 2 ** (e - mb) - 2 ** mb);
}

/** The value of a bit pattern of format `f`. */
export function decode(f: MiniFloat, bits: number): number {
  const { exponentBits: eb, mantissaBits: mb, bias } = f;
  const top = 2 ** (1 + eb + mb) - 1;
  if (!Number.isInteger(bits) || bits < 0 || bits > top) throw argError("bits", `an integer in [0, ${top}] (a ${f.name} bit pattern)`, bits);
  const sign = (bits >> (eb + mb)) & 1 ? -1 : 1;
  const exponentField = (bits >> mb) & (2 ** eb - 1);
  const mantissa = bits & (2 ** mb - 1);
  const topExponent = 2 ** eb - 1;
  if (f.hasInfinity && exponentField === topExponent) return mantissa === 0 ? sign * Infinity : NaN;
  if (!f.hasInfinity && exponentField === topExponent && mantissa === 2 ** mb - 1) return NaN;
  if (exponentField === 0) return sign * mantissa * 2 ** (1 - bias - mb);
  return sign * (1 + mantissa / 2 ** mb) * 2 ** (exponentField - bias);
}

/** Every element rounded through format `f` (the error a reader sees when a tensor is stored in it). */
export function roundArray(f: MiniFloat, values: Float32Array, options: RoundOptions = {}): Float32Array {
  return values.map((v) => roundTo(f, v, options));
}
