// A seeded PRNG that gives the same bits on every machine: xoshiro128** (Blackman & Vigna 2018) on 32-bit integer
// arithmetic, seeded through splitmix32. Normal samples use Marsaglia's polar method with our own natural log made
// of + - * / only, so no Math.log/Math.cos of any engine can change a sample. Never Math.random.

import { argError, checkInteger, checkNumber } from "./errors.ts";
import { numel, type Tensor } from "./tensor.ts";

export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spareNormal: number | null = null;

  constructor(seed: number) {
    checkInteger("seed", seed, 0, 2 ** 32 - 1);
    let x = seed >>> 0;
    const splitmix32 = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = splitmix32();
    this.s1 = splitmix32();
    this.s2 = splitmix32();
    this.s3 = splitmix32();
  }

  /** The next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** An integer uniform in [0, n). */
  int(n: number): number {
    checkInteger("n", n, 1);
    return Math.floor(this.uniform() * n);
  }

  /** A standard normal sample (polar method: two per accepted pair, the second kept for the next call). */
  normal(): number {
    if (this.spareNormal !== null) {
      const spare = this.spareNormal;
      this.spareNormal = null;
      return spare;
    }
    for (;;) {
      const u = 2 * this.uniform() - 1;
      const v = 2 * this.uniform() - 1;
      const s = u * u + v * v;
      if (s === 0 || s >= 1) continue;
      const f = Math.sqrt((-2 * ln(s)) / s); // sqrt is correctly rounded by IEEE 754, so it is the same everywhere
      this.spareNormal = v * f;
      return u * f;
    }
  }

  /** A normal sample of mean 0 and the given std, redrawn until it lies within ±bound·std. */
  boundedNormal(std = 1, bound = 3): number {
    checkNumber("std", std, 0, Infinity);
    checkNumber("bound", bound, 0.5, Infinity, " (a smaller bound rejects almost every draw)");
    for (;;) {
      const z = this.normal();
      if (Math.abs(z) <= bound) return z * std;
    }
  }
}

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));

/**
 * Natural log from arithmetic alone: x = m·2^e with m in [√½, √2), ln m = 2·atanh(s), s = (m - 1)/(m + 1),
 * |s| < 0.172, so the odd series to s^27 is below one ulp. Only for x > 0 and finite.
 */
export function ln(x: number): number {
  if (!(x > 0 && x < Infinity)) throw argError("x", "a finite number > 0", x);
  let e = 0;
  while (x >= Math.SQRT2) {
    x /= 2;
    e++;
  }
  while (x < Math.SQRT1_2) {
    x *= 2;
    e--;
  }
  const s = (x - 1) / (x + 1);
  const s2 = s * s;
  let term = s;
  let sum = 0;
  for (let k = 1; k <= 27; k += 2) {
    sum += term / k;
    term *= s2;
  }
  return 2 * sum + e * Math.LN2;
}

/** A tensor of normal samples with the given std (default init for weights is std 0.02, as in GPT-2 and V3). */
export function randn(rng: Random, shape: readonly number[], std = 1): Tensor {
  checkNumber("std", std, 0, Infinity);
  const data = new Float32Array(numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
  return { shape: [...shape], data };
}

/** Normal samples within ±bound·std and never exactly zero: the values property tests draw. */
export function randBounded(rng: Random, shape: readonly number[], std = 1, bound = 3): Tensor {
  if (!(std > 0)) throw argError("std", "a number > 0 (the values must never be zero)", std);
  const data = new Float32Array(numel(shape));
  for (let i = 0; i < data.length; i++) {
    let v = 0;
    while (v === 0) v = Math.fround(rng.boundedNormal(std, bound));
    data[i] = v;
  }
  return { shape: [...shape], data };
}
