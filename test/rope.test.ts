import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { randBounded, Random } from "../src/random.ts";
import { applyRope, ropeFrequencies, yarnSoftmaxFactor, type YarnOptions } from "../src/rope.ts";
import { tensor } from "../src/tensor.ts";
import { thrown, seed } from "./helpers.ts";


describe("rope by hand", () => {
  it("frequencies are θ^(-2i/dim)", () => {
    expect([...ropeFrequencies({ dim: 4, theta: 100 })]).toEqual([1, 0.1]);
    const f = ropeFrequencies({ dim: 8 });
    [1, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75].forEach((v, i) => expect(f[i]).toBeCloseTo(v, 15));
  });

  it("turns the pair (1, 0) by 90° into (0, 1), and the pair is adjacent elements", () => {
    const freqs = Float64Array.of(Math.PI / 2, Math.PI); // pair 0 turns 90° a position, pair 1 turns 180°
    const y = applyRope(tensor([1, 4], [1, 0, 1, 0]), [1], freqs);
    const expected = [0, 1, -1, 0];
    expected.forEach((v, i) => expect(y.data[i]).toBeCloseTo(v, 7));
    // (a, b) turned by 90° is (-b, a)
    const z = applyRope(tensor([1, 2], [2, 3]), [1], Float64Array.of(Math.PI / 2));
    [-3, 2].forEach((v, i) => expect(z.data[i]).toBeCloseTo(v, 6));
  });

  it("rotates each row by its own absolute position; position 0 is exactly the identity", () => {
    const freqs = ropeFrequencies({ dim: 4, theta: 100 }); // [1, 0.1]
    const x = tensor([2, 4], [1, 2, 3, 4, 1, 0, 1, 0]);
    const y = applyRope(x, [0, 5], freqs);
    expect([...y.data.subarray(0, 4)]).toEqual([1, 2, 3, 4]);
    const expected = [Math.cos(5), Math.sin(5), Math.cos(0.5), Math.sin(0.5)];
    expected.forEach((v, i) => expect(y.data[4 + i]).toBeCloseTo(v, 7));
  });

  it("rotates every leading slice the same way ([B, H, T, dim])", () => {
    const freqs = ropeFrequencies({ dim: 2 });
    const y = applyRope(tensor([2, 1, 1, 2], [1, 0, 0, 1]), [Math.PI / 2], freqs);
    [0, 1, -1, 0].forEach((v, i) => expect(y.data[i]).toBeCloseTo(v, 7));
  });
});

describe("YaRN (DeepSeek-V3 precompute_freqs_cis)", () => {
  // tiny's rope: dim 16, θ 10000, factor 4 over 256 tokens, β_fast 32, β_slow 1.
  // correction_dim(r) = dim·ln(256 / (2πr)) / (2 ln θ): r = 32 gives 0.2098 (floor 0), r = 1 gives 3.2200 (ceil 4),
  // so pairs 0..7 get ramp = clamp(i / 4, 0, 1) and frequency f·(1 - ramp) + (f / 4)·ramp.
  const yarn: YarnOptions = { factor: 4, originalMaxPosition: 256, maxPosition: 1024 };

  it("blends pairs between the fast and slow corrections, by hand", () => {
    const plain = ropeFrequencies({ dim: 16 });
    const scaled = ropeFrequencies({ dim: 16, yarn });
    for (let i = 0; i < 8; i++) {
      const ramp = Math.min(i / 4, 1);
      expect(scaled[i]).toBeCloseTo(plain[i]! * (1 - ramp) + (plain[i]! / 4) * ramp, 15);
    }
    expect(scaled[0]).toBe(plain[0]); // the fastest pair keeps its frequency
    expect(scaled[7]).toBeCloseTo(plain[7]! / 4, 15); // the slowest ones are interpolated by 1/factor
  });

  it("is off unless the configured maximum exceeds the original length", () => {
    const plain = ropeFrequencies({ dim: 16 });
    expect(ropeFrequencies({ dim: 16, yarn: { ...yarn, maxPosition: 256 } })).toEqual(plain);
    expect(yarnSoftmaxFactor({ ...yarn, maxPosition: 256 })).toBe(1);
    expect(yarnSoftmaxFactor(undefined)).toBe(1);
  });

  it("mscale² = (0.1·mscale·ln factor + 1)², from the configuration alone", () => {
    // V3: factor 40, mscale 1: (0.1·ln 40 + 1)² = 1.3688879² = 1.8738542
    expect(yarnSoftmaxFactor({ factor: 40, originalMaxPosition: 4096, maxPosition: 163840 })).toBeCloseTo(1.8738542, 6);
    expect(yarnSoftmaxFactor({ ...yarn, mscale: 0.5 })).toBeCloseTo((0.05 * Math.log(4) + 1) ** 2, 14);
  });
});

describe("rope properties", () => {
  const dims = fc.constantFrom(2, 4, 6, 8, 16, 18, 32);
  const lengths = fc.constantFrom(1, 2, 3, 5, 8, 9);

  it("preserves the norm of every pair", () => {
    fc.assert(
      fc.property(seed, dims, lengths, fc.integer({ min: 0, max: 5000 }), (s, dim, T, start) => {
        const x = randBounded(new Random(s), [2, T, dim]);
        const positions = Array.from({ length: T }, (_, t) => start + 7 * t);
        const y = applyRope(x, positions, ropeFrequencies({ dim }));
        for (let i = 0; i < x.data.length; i += 2) {
          const before = Math.hypot(x.data[i]!, x.data[i + 1]!);
          expect(Math.abs(Math.hypot(y.data[i]!, y.data[i + 1]!) - before)).toBeLessThanOrEqual(1e-6 * before);
        }
      }),
      { numRuns: 50 },
    );
  });

  it("rope(x, p + q) = rope(rope(x, p), q), with or without YaRN", () => {
    fc.assert(
      fc.property(seed, dims, lengths, fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 }), fc.boolean(),
        (s, dim, T, p, q, extended) => {
          const freqs = ropeFrequencies({ dim, yarn: extended ? { factor: 8, originalMaxPosition: 64, maxPosition: 512 } : undefined });
          const x = randBounded(new Random(s), [T, dim]);
          const at = (base: number) => Array.from({ length: T }, (_, t) => base + t);
          const once = applyRope(x, at(p + q), freqs);
          const twice = applyRope(applyRope(x, at(p), freqs), Array(T).fill(q), freqs);
          // Two roundings to float32 against one: a few float32 ulps of |x| <= 3.
          once.data.forEach((v, i) => expect(Math.abs(v - twice.data[i]!)).toBeLessThanOrEqual(2e-6));
        }),
      { numRuns: 50 },
    );
  });
});

describe("rope errors name the argument", () => {
  it("rejects odd or tiny dims, bad θ, bad YaRN settings, shapes and positions", () => {
    expect(thrown(() => ropeFrequencies({ dim: 5 }))).toMatch(/^dim: expected an even number, got 5/);
    expect(thrown(() => ropeFrequencies({ dim: 0 }))).toMatch(/^dim: expected an integer >= 2, got 0/);
    expect(thrown(() => ropeFrequencies({ dim: 4, theta: 0.5 }))).toMatch(/^theta:/);
    const yarn = { factor: 4, originalMaxPosition: 256, maxPosition: 1024 };
    expect(thrown(() => ropeFrequencies({ dim: 4, yarn: { ...yarn, factor: 0.5 } }))).toMatch(/^yarn\.factor:/);
    expect(thrown(() => ropeFrequencies({ dim: 4, yarn: { ...yarn, originalMaxPosition: 0 } }))).toMatch(/^yarn\.originalMaxPosition:/);
    expect(thrown(() => ropeFrequencies({ dim: 4, yarn: { ...yarn, betaFast: 0 } }))).toMatch(/^yarn\.betaFast:/);
    expect(thrown(() => ropeFrequencies({ dim: 4, theta: 1, yarn }))).toMatch(/^theta:/);
    const freqs = ropeFrequencies({ dim: 4 });
    expect(thrown(() => applyRope(tensor([2, 6]), [0, 1], freqs))).toMatch(/^x: expected shape \[\.\.\., T=2, 4\], got \[2, 6\]/);
    expect(thrown(() => applyRope(tensor([3, 4]), [0, 1], freqs))).toMatch(/^x:/);
    expect(thrown(() => applyRope(tensor([2, 4]), [0, NaN], freqs))).toMatch(/^positions\[1\]: expected a finite number, got NaN/);
  });
});

describe("yarnSoftmaxFactor arguments", () => {
  it("refuses a NaN factor or a negative mscale instead of returning NaN", () => {
    const yarn: YarnOptions = { factor: 40, mscale: 1, originalMaxPosition: 4096, maxPosition: 163840 };
    expect(yarnSoftmaxFactor(yarn)).toBeCloseTo(1.8738542, 7);
    expect(thrown(() => yarnSoftmaxFactor({ ...yarn, factor: NaN }))).toMatch(/^yarn.factor: expected a finite number in \[1, Infinity\], got NaN/);
    expect(thrown(() => yarnSoftmaxFactor({ ...yarn, mscale: -1 }))).toMatch(/^yarn.mscale: expected a finite number in \[0, Infinity\], got -1/);
  });
});
