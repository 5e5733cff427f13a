import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { attention } from "../src/attention/attention.ts";
import { decayAttention, decayBias, retnetGammas } from "../src/attention/decay.ts";
import { reference } from "../src/kernels.ts";
import { causal, slidingWindow } from "../src/masks.ts";
import { randBounded, Random } from "../src/random.ts";
import { tensor } from "../src/tensor.ts";
import { thrown, seed } from "./helpers.ts";

const size = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 16);
const lastRow = (probs: Float32Array, T: number) => [...probs.subarray((T - 1) * T, T * T)];

describe("decay: relative fades old tokens, as-written does not", () => {
  // Four identical keys (q·k = 2 before scaling, Dh = 1) and γ = 1/2; look at the last query, i = 3.
  const T = 4;
  const k = tensor([1, 1, T, 1], [2, 2, 2, 2]);
  const v = tensor([1, 1, T, 1], [0, 1, 2, 3]);
  const query = (sign: number) => tensor([1, 1, T, 1], [sign, sign, sign, sign]);
  const normalise = (w: number[]) => w.map((x) => x / w.reduce((a, b) => a + b, 0));

  it("relative: equal scores get weights ∝ γ^(i-j), the newest key most", () => {
    const { probs } = decayAttention(query(1), k, v, { gamma: 0.5 });
    const expected = [1 / 15, 2 / 15, 4 / 15, 8 / 15]; // γ^3, γ^2, γ, 1 over their sum 15/8
    lastRow(probs.data, T).forEach((p, j) => expect(p).toBeCloseTo(expected[j]!, 7));
    // The same holds whatever the sign of q·k: the decay is added to the score, not multiplied into the key.
    lastRow(decayAttention(query(-1), k, v, { gamma: 0.5 }).probs.data, T).forEach((p, j) => expect(p).toBeCloseTo(expected[j]!, 7));
  });

  it("as-written: γ^j shrinks the newest keys, so with q·k > 0 the oldest key gets the most weight", () => {
    const { probs } = decayAttention(query(1), k, v, { gamma: 0.5, mode: "as-written" });
    // scores q·(γ^j k_j) = 2·γ^j = [2, 1, 0.5, 0.25]
    const expected = normalise([2, 1, 0.5, 0.25].map(Math.exp));
    const row = lastRow(probs.data, T);
    row.forEach((p, j) => expect(p).toBeCloseTo(expected[j]!, 7));
    expect(row[0]).toBeGreaterThan(row[3]!); // old tokens are not faded: the flaw
  });

  it("as-written: with q·k < 0 the effect flips, and the newest key wins", () => {
    const row = lastRow(decayAttention(query(-1), k, v, { gamma: 0.5, mode: "as-written" }).probs.data, T);
    const expected = normalise([-2, -1, -0.5, -0.25].map(Math.exp));
    row.forEach((p, j) => expect(p).toBeCloseTo(expected[j]!, 7));
    expect(row[3]).toBeGreaterThan(row[0]!);
  });

  it("decayBias is (offset + i - j)·ln γ_h", () => {
    const bias = decayBias([Math.log(0.5)], 2, 3, 1);
    const expected = [1, 0, -1, 2, 1, 0].map((d) => d * Math.log(0.5));
    bias.data.forEach((b, n) => expect(b).toBeCloseTo(expected[n]!, 6));
  });

  it("RetNet's per-head gammas are 1 - 2^(-5-h)", () => {
    expect(retnetGammas(3)).toEqual([0.96875, 0.984375, 0.9921875]);
  });
});

describe("decay properties", () => {
  it("γ = 1 equals plain causal attention in both modes, exactly", () => {
    fc.assert(
      fc.property(seed, size, fc.constantFrom(1, 2, 4), (s, T, H) => {
        const rng = new Random(s);
        const q = randBounded(rng, [2, H, T, 4]);
        const k = randBounded(rng, [2, H, T, 4]);
        const v = randBounded(rng, [2, H, T, 3]);
        const plain = attention(q, k, v, { mask: causal(T) }).out.data;
        expect(decayAttention(q, k, v, { gamma: 1 }).out.data).toEqual(plain);
        expect(decayAttention(q, k, v, { gamma: 1, mode: "as-written" }).out.data).toEqual(plain);
      }),
      { numRuns: 40 },
    );
  });

  it("relative equals causal attention plus the decay bias, per head, and the fused kernel agrees", () => {
    fc.assert(
      fc.property(seed, size, fc.constantFrom(1, 2, 3), (s, T, H) => {
        const rng = new Random(s);
        const q = randBounded(rng, [1, H, T, 4]);
        const k = randBounded(rng, [1, 1, T, 4]);
        const v = randBounded(rng, [1, 1, T, 2]);
        const gammas = retnetGammas(H).map((g) => g ** 8); // strong enough decays to matter at these lengths
        const decayed = decayAttention(q, k, v, { gamma: gammas });
        const logGammas = gammas.map(Math.log);
        const biased = attention(q, k, v, { mask: causal(T), bias: decayBias(logGammas, T, T) });
        // The bias tensor is rounded to float32; the decay path adds (i - j)·ln γ in float64.
        decayed.out.data.forEach((x, n) => expect(Math.abs(x - biased.out.data[n]!)).toBeLessThanOrEqual(1e-5));
        expect(reference.attention(q, k, v, { mask: { causal: true }, logGammas }).data).toEqual(decayed.out.data);
      }),
      { numRuns: 40 },
    );
  });

  it("decoding one token at offset T - 1 equals the last row of the whole sequence, in both modes", () => {
    fc.assert(
      fc.property(seed, size, fc.constantFrom("relative", "as-written") as fc.Arbitrary<"relative" | "as-written">, (s, T, mode) => {
        const rng = new Random(s);
        const q = randBounded(rng, [1, 1, T, 4]);
        const k = randBounded(rng, [1, 1, T, 4]);
        const v = randBounded(rng, [1, 1, T, 2]);
        const full = decayAttention(q, k, v, { gamma: 0.9, mode }).out.data;
        const last = tensor([1, 1, 1, 4], q.data.subarray((T - 1) * 4));
        const step = decayAttention(last, k, v, { gamma: 0.9, mode, offset: T - 1 }).out.data;
        expect([...step]).toEqual([...full.subarray((T - 1) * 2)]);
      }),
      { numRuns: 30 },
    );
  });

  it("an extra mask is ANDed with causal", () => {
    const rng = new Random(4);
    const q = randBounded(rng, [1, 1, 5, 2]);
    const k = randBounded(rng, [1, 1, 5, 2]);
    const v = randBounded(rng, [1, 1, 5, 2]);
    const { probs } = decayAttention(q, k, v, { gamma: 0.8, mask: slidingWindow(5, 2) });
    const window = slidingWindow(5, 2).data;
    probs.data.forEach((p, n) => (window[n] ? expect(p).toBeGreaterThan(0) : expect(p).toBe(0)));
  });
});

describe("decay errors name the argument", () => {
  const q = tensor([1, 2, 3, 4]);
  const k = tensor([1, 2, 3, 4]);
  const v = tensor([1, 2, 3, 4]);
  it("rejects γ of 0 or above 1, wrong counts, unknown modes and shared kv heads with per-head γ", () => {
    expect(thrown(() => decayAttention(q, k, v, { gamma: 0 }))).toMatch(/^gamma\[0\]: expected a finite number in .*\(0 excluded\), got 0/);
    expect(thrown(() => decayAttention(q, k, v, { gamma: 1.5 }))).toMatch(/^gamma\[0\]:.* got 1\.5/);
    expect(thrown(() => decayAttention(q, k, v, { gamma: [0.9, 0.9, 0.9] }))).toMatch(/^gamma: expected one gamma or 2 \(one per head\), got "3 values"/);
    expect(thrown(() => decayAttention(q, k, v, { gamma: 0.9, mode: "absolute" as never }))).toMatch(/^mode: expected one of "relative", "as-written"/);
    expect(thrown(() => decayAttention(q, k, v, { gamma: 0.9, offset: -1 }))).toMatch(/^offset:/);
    const shared = tensor([1, 1, 3, 4]);
    expect(thrown(() => decayAttention(q, shared, tensor([1, 1, 3, 4]), { gamma: [0.9, 0.8], mode: "as-written" }))).toMatch(/^gamma: expected a single gamma when kv heads are shared/);
    expect(thrown(() => decayAttention(tensor([2, 3, 4]), k, v, { gamma: 0.9 }))).toMatch(/^q:/);
    expect(thrown(() => decayBias([0.5], 2, 2))).toMatch(/^logGammas\[0\]:/);
    expect(thrown(() => decayBias([-0.1], 3, 2))).toMatch(/^offset: expected an integer >= 0, got -1/);
  });
});

describe("retnetGammas arguments", () => {
  it("refuses a head count that is not an integer >= 1 instead of returning no gammas", () => {
    expect(retnetGammas(3)).toEqual([0.96875, 0.984375, 0.9921875]);
    expect(thrown(() => retnetGammas(0))).toMatch(/^H: expected an integer >= 1, got 0/);
    expect(thrown(() => retnetGammas(NaN))).toMatch(/^H: expected an integer >= 1, got NaN/);
  });
});
