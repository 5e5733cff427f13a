import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Random, randBounded } from "../src/random.ts";
import { decode, encode, FORMATS, roundTo } from "../src/quant/minifloat.ts";
import { dequantizeInt, packInt4, quantizeInt, unpackInt4 } from "../src/quant/int.ts";
import { dequantizeFp8, quantizeFp8 } from "../src/quant/fp8.ts";
import { quantLinear, quantizeTokenInt8 } from "../src/quant/linear.ts";
import { linear } from "../src/ops.ts";
import { tensor } from "../src/tensor.ts";

const { fp16, bf16, e4m3, e5m2 } = FORMATS;

describe("minifloat formats", () => {
  it("have the published largest values", () => {
    expect([fp16.max, e5m2.max, e4m3.max]).toEqual([65504, 57344, 448]);
    expect(bf16.max).toBe(3.3895313892515355e38);
  });

  it("round ties to even", () => {
    // fp16 near 1 has a step of 2^-10: 1 + 2^-11 is halfway between 1 (even) and 1 + 2^-10 (odd).
    expect(roundTo(fp16, 1 + 2 ** -11)).toBe(1);
    expect(roundTo(fp16, 1 + 3 * 2 ** -11)).toBe(1 + 2 * 2 ** -10);
    // e4m3 between 1 and 2 has a step of 1/8: 1.0625 ties to 1, 1.1875 ties to 1.25.
    expect(roundTo(e4m3, 1.0625)).toBe(1);
    expect(roundTo(e4m3, 1.1875)).toBe(1.25);
    // bf16 keeps 8 significant bits: 257 is a tie between 256 and 258, 256 is even.
    expect(roundTo(bf16, 257)).toBe(256);
    expect(roundTo(bf16, 259)).toBe(260);
  });

  it("saturate by default and overflow as the format says otherwise", () => {
    expect(roundTo(e4m3, 1000)).toBe(448);
    expect(roundTo(e4m3, -1000)).toBe(-448);
    expect(roundTo(e4m3, 1000, { saturate: false })).toBeNaN(); // e4m3 has no infinity
    expect(roundTo(e5m2, 1e6, { saturate: false })).toBe(Infinity);
    expect(roundTo(fp16, 65519, { saturate: false })).toBe(65504); // below the halfway point to 65536
    expect(roundTo(fp16, 65520, { saturate: false })).toBe(Infinity); // the tie goes to the even neighbour, 2^16
    expect(roundTo(fp16, Infinity)).toBe(65504);
    expect(roundTo(fp16, -Infinity, { saturate: false })).toBe(-Infinity);
  });

  it("keep NaN, signed zero and subnormals", () => {
    expect(roundTo(bf16, NaN)).toBeNaN();
    expect(Object.is(roundTo(fp16, -0), -0)).toBe(true);
    expect(roundTo(fp16, 2 ** -24)).toBe(2 ** -24); // the smallest fp16 subnormal
    expect(roundTo(fp16, 2 ** -26)).toBe(0); // a quarter of it rounds to zero
    expect(roundTo(fp16, 3 * 2 ** -25)).toBe(2 ** -23); // 1.5 quanta: tie to even (2 quanta)
    expect(roundTo(e4m3, 2 ** -9)).toBe(2 ** -9); // the smallest e4m3 subnormal
  });

  it("encode to the standard bit patterns", () => {
    expect(encode(fp16, 1)).toBe(0x3c00);
    expect(encode(fp16, -2)).toBe(0xc000);
    expect(encode(fp16, 65504)).toBe(0x7bff);
    expect(encode(fp16, Infinity, { saturate: false })).toBe(0x7c00);
    expect(encode(fp16, -0)).toBe(0x8000);
    expect(encode(bf16, 1)).toBe(0x3f80);
    expect(encode(e4m3, 448)).toBe(0x7e);
    expect(encode(e4m3, NaN)).toBe(0x7f);
    expect(encode(e5m2, 57344)).toBe(0x7b);
    expect(encode(e5m2, -Infinity, { saturate: false })).toBe(0xfc);
  });

  it("decode every pattern back to itself (e4m3, e5m2 and all of fp16)", () => {
    for (const f of [e4m3, e5m2, fp16]) {
      for (let bits = 0; bits < 2 ** (1 + f.exponentBits + f.mantissaBits); bits++) {
        const v = decode(f, bits);
        if (Number.isNaN(v)) continue;
        expect(encode(f, v, { saturate: false })).toBe(bits);
      }
    }
  });

  it("round within half a step of the input (property)", () => {
    fc.assert(
      fc.property(fc.double({ min: -400, max: 400, noNaN: true }), fc.constantFrom(fp16, bf16, e4m3, e5m2), (x, f) => {
        const r = roundTo(f, x);
        const e = Math.max(Math.floor(Math.log2(Math.abs(x) || 1)), 1 - f.bias);
        expect(Math.abs(r - x)).toBeLessThanOrEqual(2 ** (e - f.mantissaBits) / 2 + 1e-300);
      }),
    );
  });
});

describe("per-group integer weights", () => {
  it("quantise a hand-worked int8 group", () => {
    // max |w| = 2.54 → scale = 0.02; 1.27 / 0.02 = 63.5 → 64 (even), -0.01 / 0.02 = -0.5 → -0 (even)
    const w = tensor([1, 32], [2.54, 1.27, -0.01, ...Array(29).fill(0.5)]);
    const q = quantizeInt(w, 8, 32);
    expect(q.scales[0]).toBeCloseTo(0.02, 7);
    expect([q.codes[0], q.codes[1], q.codes[2], q.codes[3]]).toEqual([127, 64, 0, 25]);
  });

  it("give a group of zeros scale 0 and codes 0", () => {
    const q = quantizeInt(tensor([2, 32]), 4, 32);
    expect([...q.scales]).toEqual([0, 0]);
    expect(q.codes.every((c) => c === 0)).toBe(true);
    expect(dequantizeInt(q).data.every((v) => v === 0)).toBe(true);
  });

  it("use a shorter last group when in is not a multiple of the group", () => {
    const q = quantizeInt(tensor([1, 40], Array.from({ length: 40 }, (_, i) => i + 1)), 8, 32);
    expect(q.scales.length).toBe(2);
    expect(q.scales[1]).toBeCloseTo(40 / 127, 6);
  });

  it("pack int4 low nibble first, offset binary", () => {
    expect([...packInt4(Int8Array.from([-7, 7, 0]))]).toEqual([0xf1, 0x88]);
    expect([...unpackInt4(Uint8Array.from([0xf1, 0x88]), 3)]).toEqual([-7, 7, 0]);
    expect(() => packInt4(Int8Array.from([8]))).toThrow(/codes\[0\]/);
  });

  it("round-trips int4 packing (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -7, max: 7 }), { maxLength: 65 }), (codes) => {
        const c = Int8Array.from(codes);
        expect([...unpackInt4(packInt4(c), c.length)]).toEqual([...c]);
      }),
    );
  });

  it("dequantise within half a step of every weight (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 140 }),
        fc.constantFrom(8 as const, 4 as const), fc.constantFrom(32, 64, 128),
        (seed, out, inDim, bits, group) => {
          const w = randBounded(new Random(seed), [out, inDim]);
          const q = quantizeInt(w, bits, group);
          const back = dequantizeInt(q);
          const groups = Math.ceil(inDim / group);
          for (let i = 0; i < w.data.length; i++) {
            const step = q.scales[Math.floor(i / inDim) * groups + Math.floor((i % inDim) / group)]!;
            expect(Math.abs(back.data[i]! - w.data[i]!)).toBeLessThanOrEqual(step / 2 + 1e-6 * step + 1e-7);
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it("rejects bad arguments by name", () => {
    expect(() => quantizeInt(tensor([2, 32]), 3 as 8, 32)).toThrow(/bits/);
    expect(() => quantizeInt(tensor([2, 32]), 8, 48)).toThrow(/groupSize/);
    expect(() => quantizeInt(tensor([2, 2], [1, NaN, 0, 0]), 8, 32)).toThrow(/weight\[0, 1\]/);
  });
});

describe("FP8 blocks (DeepSeek-V3)", () => {
  it("map each block's largest magnitude onto 448", () => {
    const w = randBounded(new Random(3), [130, 200]);
    const q = quantizeFp8(w);
    expect(q.scales.length).toBe(2 * 2);
    const back = dequantizeFp8(q);
    let worst = 0;
    for (let i = 0; i < w.data.length; i++) worst = Math.max(worst, Math.abs(back.data[i]! - w.data[i]!) / Math.max(Math.abs(w.data[i]!), 1e-3));
    expect(worst).toBeLessThan(2 ** -4 + 1e-6); // e4m3 keeps 3 mantissa bits: relative error <= 2^-4 for normals
  });
});

describe("quantised linear", () => {
  it("equals the float product of the dequantised weights", () => {
    const rng = new Random(11);
    const x = randBounded(rng, [3, 70]);
    const w = randBounded(rng, [5, 70]);
    for (const q of [quantizeInt(w, 8, 32), quantizeInt(w, 4, 64)]) {
      const want = linear(x, dequantizeInt(q));
      const got = quantLinear(x, q);
      for (let i = 0; i < want.data.length; i++) expect(got.data[i]).toBeCloseTo(want.data[i]!, 4);
    }
  });

  it("with per-token int8 activations stays close to the float product", () => {
    const rng = new Random(12);
    const x = randBounded(rng, [2, 64]);
    const w = randBounded(rng, [4, 64]);
    const q = quantizeInt(w, 8, 64);
    const exact = linear(x, w);
    const got = quantLinear(x, q, { activations: true });
    const err = Math.hypot(...got.data.map((v, i) => v - exact.data[i]!)) / Math.hypot(...exact.data);
    expect(err).toBeLessThan(0.02);
    expect(err).toBeGreaterThan(0); // it does quantise
  });

  it("quantises a token to int8 with the max on 127", () => {
    const { codes, scale } = quantizeTokenInt8(Float32Array.from([1.27, -0.635, 0.005]));
    expect(scale).toBeCloseTo(0.01, 7);
    expect([...codes]).toEqual([127, -64, 0]); // -63.5 → -64 (even); 0.5 → 0 (even)
  });
});

describe("minifloat decode: bit patterns only", () => {
  it("refuses a value that is not a bit pattern of the format, naming it", () => {
    expect(() => decode(FORMATS.e4m3, 256)).toThrow(/^bits: expected an integer in \[0, 255\] \(a e4m3 bit pattern\), got 256/);
    expect(() => decode(FORMATS.fp16, -1)).toThrow(/^bits: expected an integer in \[0, 65535\]/);
    expect(() => decode(FORMATS.e5m2, 1.5)).toThrow(/^bits: .*got 1\.5/);
    expect(decode(FORMATS.e4m3, 255)).toBeNaN();
  });
});
