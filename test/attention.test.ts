import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { attention } from "../src/attention/attention.ts";
import { decayAttention } from "../src/attention/decay.ts";
import { referenceBackend } from "../src/backend.ts";
import { coreGoldenCases } from "../src/golden/core-cases.ts";
import { reference } from "../src/kernels.ts";
import { causal, combine, maskFromSpec, padding, slidingWindow, toBias, type MaskSpec } from "../src/masks.ts";
import { randBounded, Random } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";
import { thrown, seed } from "./helpers.ts";

const size = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 16, 17);
const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(tol * (1 + Math.abs(b[i]!)));
};

/** Copies kv head g of [B, Hkv, T, D] into heads g·r … g·r + r - 1: what GQA means. */
function repeatKv(t: Tensor, r: number): Tensor {
  const [B, Hkv, T, D] = t.shape as [number, number, number, number];
  const out = new Float32Array(B * Hkv * r * T * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hkv * r; h++) {
      const from = ((b * Hkv + Math.floor(h / r)) * T) * D;
      out.set(t.data.subarray(from, from + T * D), ((b * Hkv * r + h) * T) * D);
    }
  }
  return { shape: [B, Hkv * r, T, D], data: out };
}

describe("attention by hand", () => {
  it("one query over two keys", () => {
    // q = [1, 0], k0 = [1, 0], k1 = [0, 1], Dh = 2: scores [1/√2, 0]; p0 = 1/(1 + e^(-1/√2)) = 0.6697615.
    // out = p0·[1, 2] + (1 - p0)·[3, 4] = [1.6604770, 2.6604770].
    const q = tensor([1, 1, 1, 2], [1, 0]);
    const k = tensor([1, 1, 2, 2], [1, 0, 0, 1]);
    const v = tensor([1, 1, 2, 2], [1, 2, 3, 4]);
    const { out, probs } = attention(q, k, v);
    [0.6697615, 0.3302385].forEach((p, i) => expect(probs.data[i]).toBeCloseTo(p, 7));
    [1.660477, 2.660477].forEach((o, i) => expect(out.data[i]).toBeCloseTo(o, 6));
  });

  it("a mask hides a key; a row with no visible key outputs zeros, never NaN", () => {
    const q = tensor([1, 1, 2, 2], [1, 0, 1, 0]);
    const k = tensor([1, 1, 2, 2], [1, 0, 0, 1]);
    const v = tensor([1, 1, 2, 2], [1, 2, 3, 4]);
    const mask = { shape: [2, 2], data: Uint8Array.of(0, 1, 0, 0) };
    const { out, probs } = attention(q, k, v, { mask });
    expect([...probs.data]).toEqual([0, 1, 0, 0]);
    expect([...out.data]).toEqual([3, 4, 0, 0]);
  });

  it("a bias of -Infinity hides like a mask; a finite bias shifts the scores", () => {
    const q = tensor([1, 1, 1, 2], [0, 0]);
    const k = tensor([1, 1, 2, 2], [1, 0, 0, 1]);
    const v = tensor([1, 1, 2, 1], [10, 20]);
    expect([...attention(q, k, v, { bias: tensor([1, 2], [-Infinity, 0]) }).out.data]).toEqual([20]);
    // Equal scores plus bias [ln 3, 0]: weights 3/4 and 1/4.
    const { probs } = attention(q, k, v, { bias: tensor([1, 2], [Math.log(3), 0]) });
    [0.75, 0.25].forEach((p, i) => expect(probs.data[i]).toBeCloseTo(p, 7));
  });

  it("scores that overflow to +Infinity share all the weight, never NaN; a -Infinity bias still hides its key", () => {
    // Dh = 1, scale 1e308: scores 2e308 → +∞, 2e308 → +∞, 1e308 (finite), 3e308 → +∞ but hidden by its bias.
    const q = tensor([1, 1, 1, 1], [1]);
    const k = tensor([1, 1, 4, 1], [2, 2, 1, 3]);
    const v = tensor([1, 1, 4, 1], [10, 30, 1000, 7]);
    const { probs, out, scores } = attention(q, k, v, { scale: 1e308, bias: tensor([1, 4], [0, 0, 0, -Infinity]), withScores: true });
    expect([...probs.data]).toEqual([0.5, 0.5, 0, 0]);
    expect([...out.data]).toEqual([20]);
    expect([...scores!.data]).toEqual([Infinity, Infinity, 1e308 as number, -Infinity].map(Math.fround));
  });

  it("uses 1/√Dh by default and an explicit scale when given", () => {
    const q = tensor([1, 1, 1, 4], [1, 1, 1, 1]);
    const k = tensor([1, 1, 2, 4], [1, 1, 1, 1, 0, 0, 0, 0]);
    const v = tensor([1, 1, 2, 1], [1, 0]);
    // Scores [4/2, 0] by default: p0 = 1/(1 + e^-2) = 0.8807971; scale 0.5·ln(3)/2 gives [ln 3, 0]: p0 = 0.75.
    expect(attention(q, k, v).out.data[0]).toBeCloseTo(0.8807971, 7);
    expect(attention(q, k, v, { scale: Math.log(3) / 4 }).out.data[0]).toBeCloseTo(0.75, 7);
  });
});

describe("attention properties", () => {
  const setup = (s: number, B: number, H: number, Hkv: number, Tq: number, Tk: number, Dh: number, Dv = Dh) => {
    const rng = new Random(s);
    return { q: randBounded(rng, [B, H, Tq, Dh]), k: randBounded(rng, [B, Hkv, Tk, Dh]), v: randBounded(rng, [B, Hkv, Tk, Dv]), rng };
  };

  it("masked keys get exactly zero weight; rows sum to 1 or are all zero", () => {
    fc.assert(
      fc.property(seed, size, size, fc.constantFrom(1, 2, 3), (s, Tq, Tk, H) => {
        const { q, k, v, rng } = setup(s, 2, H, H, Tq, Tk, 4);
        const mask = { shape: [2, Tq, Tk], data: Uint8Array.from({ length: 2 * Tq * Tk }, () => rng.int(2)) };
        const { out, probs } = attention(q, k, v, { mask });
        for (let b = 0; b < 2; b++) {
          for (let h = 0; h < H; h++) {
            for (let i = 0; i < Tq; i++) {
              let sum = 0, any = false;
              for (let j = 0; j < Tk; j++) {
                const p = probs.data[((b * H + h) * Tq + i) * Tk + j]!;
                const visible = mask.data[(b * Tq + i) * Tk + j] === 1;
                any ||= visible;
                if (!visible) expect(p).toBe(0);
                sum += p;
              }
              if (any) expect(Math.abs(sum - 1)).toBeLessThan(1e-6);
              else expect(sum).toBe(0);
            }
          }
        }
        out.data.forEach((x) => expect(Number.isNaN(x)).toBe(false));
      }),
      { numRuns: 40 },
    );
  });

  it("permuting keys together with their values changes nothing when no mask is set", () => {
    fc.assert(
      fc.property(seed, size, size, (s, Tq, Tk) => {
        const { q, k, v, rng } = setup(s, 1, 2, 2, Tq, Tk, 3, 5);
        const order = Array.from({ length: Tk }, (_, j) => j);
        for (let j = Tk - 1; j > 0; j--) {
          const r = rng.int(j + 1);
          [order[j], order[r]] = [order[r]!, order[j]!];
        }
        const permute = (t: Tensor, D: number) => {
          const out = new Float32Array(t.data.length);
          for (let h = 0; h < 2; h++) {
            for (let j = 0; j < Tk; j++) out.set(t.data.subarray((h * Tk + order[j]!) * D, (h * Tk + order[j]! + 1) * D), (h * Tk + j) * D);
          }
          return { shape: t.shape, data: out };
        };
        near(attention(q, permute(k, 3), permute(v, 5)).out.data, attention(q, k, v).out.data, 1e-6);
      }),
      { numRuns: 40 },
    );
  });

  it("GQA equals MHA with each kv head repeated over its group (groups of 1 are MHA itself)", () => {
    fc.assert(
      fc.property(seed, size, fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 4), (s, T, Hkv, group) => {
        const H = Hkv * group;
        const { q, k, v } = setup(s, 2, H, Hkv, T, T, 4, 3);
        const mask = causal(T);
        const gqa = attention(q, k, v, { mask });
        const mha = attention(q, repeatKv(k, group), repeatKv(v, group), { mask });
        expect(gqa.out.data).toEqual(mha.out.data);
        expect(gqa.probs.data).toEqual(mha.probs.data);
      }),
      { numRuns: 40 },
    );
  });

  it("the Kernels reference with a MaskSpec equals attention with the mask built from it", () => {
    fc.assert(
      fc.property(seed, size, fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.boolean(), fc.boolean(), fc.boolean(),
        (s, Tq, offset, w, useWindow, useSegment, useLengths) => {
          const Tk = Tq + offset;
          const { q, k, v, rng } = setup(s, 2, 2, 1, Tq, Tk, 4);
          const spec: MaskSpec = {
            causal: true, offset,
            window: useWindow ? w : undefined,
            segment: useSegment ? { size: w, overlap: 1 } : undefined,
            lengths: useLengths ? [rng.int(Tk + 1), Tk] : undefined,
          };
          const fused = reference.attention(q, k, v, { mask: spec });
          expect(fused.data).toEqual(attention(q, k, v, { mask: maskFromSpec(spec, 2, Tq, Tk) }).out.data);
        }),
      { numRuns: 60 },
    );
  });

  it("a boolean mask and its additive bias give the same output", () => {
    fc.assert(
      fc.property(seed, size, fc.integer({ min: 1, max: 6 }), (s, T, w) => {
        const { q, k, v } = setup(s, 1, 2, 2, T, T, 4);
        const mask = slidingWindow(T, w);
        expect(attention(q, k, v, { bias: toBias(mask) }).out.data).toEqual(attention(q, k, v, { mask }).out.data);
      }),
      { numRuns: 30 },
    );
  });

  it("padded query rows output zeros and padded keys are ignored", () => {
    const { q, k, v } = setup(11, 2, 2, 2, 4, 4, 3);
    const mask = combine(causal(4), padding([2, 4], 4));
    const { out } = attention(q, k, v, { mask });
    for (let h = 0; h < 2; h++) for (let i = 2; i < 4; i++) for (let d = 0; d < 3; d++) expect(out.data[((0 * 2 + h) * 4 + i) * 3 + d]).toBe(0);
    // Batch row 0 over its 2 valid tokens equals attention on the truncated sequence.
    const cut = (t: Tensor) => tensor([1, 2, 2, 3], [...t.data.subarray(0, 6), ...t.data.subarray(12, 18)]);
    const short = attention(cut(q), cut(k), cut(v), { mask: causal(2) }).out.data;
    expect([...out.data.subarray(0, 6), ...out.data.subarray(12, 18)]).toEqual([...short]);
  });

  it("T = 1 decoding over a cache equals the last row of a full causal pass", () => {
    const { q, k, v } = setup(5, 1, 2, 1, 6, 6, 4);
    const full = attention(q, k, v, { mask: causal(6) }).out.data;
    const lastQ = tensor([1, 2, 1, 4], [...q.data.subarray(20, 24), ...q.data.subarray(44, 48)]);
    const step = reference.attention(lastQ, k, v, { mask: { causal: true, offset: 5 } }).data;
    expect([...step]).toEqual([...full.subarray(20, 24), ...full.subarray(44, 48)]);
  });
});

describe("attention errors name the argument", () => {
  const q = tensor([1, 4, 2, 3]);
  const k = tensor([1, 2, 2, 3]);
  const v = tensor([1, 2, 2, 5]);
  it("rejects bad shapes, heads, masks, biases and scales", () => {
    expect(thrown(() => attention(tensor([4, 2, 3]), k, v))).toMatch(/^q: expected shape \[B, H, Tq, Dh\]/);
    expect(thrown(() => attention(q, tensor([1, 2, 2, 4]), v))).toMatch(/^k: expected shape \[B=1, Hkv=2, Tk=2, Dh=3\]/);
    expect(thrown(() => attention(q, k, tensor([1, 2, 3, 5])))).toMatch(/^v: expected shape \[B=1, Hkv=2, Tk=2, Dv\]/);
    expect(thrown(() => attention(q, tensor([1, 3, 2, 3]), tensor([1, 3, 2, 5])))).toMatch(/^k: expected a number of kv heads that divides H=4, got 3/);
    expect(thrown(() => attention(q, k, v, { mask: causal(3) }))).toMatch(/^mask: expected shape \[2, 2\] or \[1, 2, 2\]/);
    expect(thrown(() => attention(q, k, v, { bias: tensor([3, 2, 2]) }))).toMatch(/^bias: expected shape \[2, 2\], \[4, 2, 2\] or \[1, 4, 2, 2\]/);
    expect(thrown(() => attention(q, k, v, { bias: tensor([2, 2], [0, -Infinity, Infinity, 0]) }))).toBe("bias[2]: expected a finite number, or -Infinity to hide a key, got Infinity");
    expect(thrown(() => attention(q, k, v, { bias: tensor([2, 2], [NaN, 0, 0, 0]) }))).toBe("bias[0]: expected a finite number, or -Infinity to hide a key, got NaN");
    expect(thrown(() => attention(q, k, v, { scale: NaN }))).toMatch(/^scale: expected a finite number, got NaN/);
    expect(thrown(() => attention(q, k, v, { logGammas: [0] }))).toMatch(/^logGammas: expected 4 values/);
    expect(thrown(() => attention(q, k, v, { logGammas: [0.1, 0, 0, 0] }))).toMatch(/^logGammas\[0\]:/);
    expect(thrown(() => reference.attention(q, k, v, { mask: { window: -1 } }))).toMatch(/^mask\.window:/);
  });
});

describe("core golden cases (src/golden/core-cases.ts)", () => {
  const cases = coreGoldenCases();
  const byName = (name: string) => cases.find((c) => c.name === name)!;
  const runOn = async (name: string) => {
    const c = byName(name);
    const { inputs, params } = c.build();
    return { inputs, outputs: await c.run(referenceBackend, inputs, params) };
  };

  it("have unique file-safe names, a tolerance for every output and small tensors", async () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    for (const c of cases) {
      expect(c.name).toMatch(/^core\.[a-z0-9.-]+$/);
      const { inputs, params } = c.build();
      const outputs = await c.run(referenceBackend, inputs, params);
      for (const [name, t] of Object.entries({ ...inputs, ...params, ...outputs })) {
        expect(t.data.length, `${c.name} ${name}`).toBeLessThanOrEqual(4096);
      }
      for (const name of Object.keys(outputs)) expect(c.tolerance?.[name], `${c.name} ${name}`).toBeDefined();
    }
  });

  it("cover the edge cases they name: a fully hidden softmax row, padded queries, T = 1", async () => {
    const softmaxRow0 = (await runOn("core.softmax.masked.6x9")).outputs.y!.data.subarray(0, 9);
    expect([...softmaxRow0]).toEqual(Array(9).fill(0));
    const padded = (await runOn("core.attention.mha.padding")).outputs.y!.data; // [2, 2, 8, 8], row 0 valid length 3
    for (let h = 0; h < 2; h++) expect([...padded.subarray((h * 8 + 3) * 8, (h * 8 + 8) * 8)].every((x) => x === 0)).toBe(true);
    expect((await runOn("core.attention.gqa.decode-t1")).outputs.y!.shape).toEqual([1, 4, 1, 5]);
  });

  it("the decay cases equal decayAttention, the component they stand for", async () => {
    const asWritten = await runOn("core.decay.as-written");
    const [q, k, v] = ["q", "k", "v"].map((n) => asWritten.inputs[n] as Tensor) as [Tensor, Tensor, Tensor];
    expect(asWritten.outputs.y!.data).toEqual(decayAttention(q, k, v, { gamma: 0.8, mode: "as-written" }).out.data);
    const decode = await runOn("core.decay.relative.decode");
    const [q2, k2, v2] = ["q", "k", "v"].map((n) => decode.inputs[n] as Tensor) as [Tensor, Tensor, Tensor];
    expect(decode.outputs.y!.data).toEqual(decayAttention(q2, k2, v2, { gamma: [0.8, 0.9], offset: 8 }).out.data);
  });
});
