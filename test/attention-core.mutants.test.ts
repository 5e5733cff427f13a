// Cases that kill mutants of src/attention/ (masked, heads, attention, decay, patch, crossmodal, video) that the
// component suites let live (test/README.md, mutation testing): argument checks with their whole messages, index
// arithmetic on shapes the suites do not draw (several batches and kv groups, heads wider than 64 numbers), and
// answers worked by hand.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { attendWith, attention } from "../src/attention/attention.ts";
import { decayAttention, decayBias } from "../src/attention/decay.ts";
import {
  checkCrossModalConfig, crossModalAttention, earlyFusion, initCrossModal, type CrossAttentionWeights, type EarlyFusionWeights,
} from "../src/attention/crossmodal.ts";
import { appendTime, concatLast, concatTime, mergeHeads, splitHeads } from "../src/attention/heads.ts";
import { maskedAttention, sliceTime, transposed } from "../src/attention/masked.ts";
import { checkPatchConfig, initPatchEmbedding, patchEmbed, patchify, positions2d, readPpm, writePpm } from "../src/attention/patch.ts";
import {
  checkVideoConfig, initVideoAttention, spaceChannelTimeAttention, spatialAttention, squeezeExcite, temporalAttention, type VideoAttentionWeights,
} from "../src/attention/video.ts";
import { reference } from "../src/kernels.ts";
import * as ops from "../src/ops.ts";
import { Random, randBounded } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";
import { seed, thrown } from "./helpers.ts";

const iota = (shape: number[], from = 0) => tensor(shape, Array.from({ length: shape.reduce((a, n) => a * n, 1) }, (_, i) => from + i));
const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `at ${i}: ${a[i]} vs ${b[i]}`).toBeLessThanOrEqual(tol * (1 + Math.abs(b[i]!)));
};

describe("maskedAttention (src/attention/masked.ts)", () => {
  it("equals attention with a per-head -Infinity bias on the hidden keys, over batches, kv groups and hidden rows", () => {
    fc.assert(
      fc.property(seed, fc.constantFrom(1, 2), fc.constantFrom(1, 2), fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 4), fc.constantFrom(1, 3), fc.constantFrom(1, 2),
        (s, B, Hkv, group, Tq, Tk, Dh, Dv) => {
          const rng = new Random(s);
          const H = Hkv * group;
          const q = randBounded(rng, [B, H, Tq, Dh]), k = randBounded(rng, [B, Hkv, Tk, Dh]), v = randBounded(rng, [B, Hkv, Tk, Dv]);
          const visible = Uint8Array.from({ length: B * H * Tq * Tk }, () => (rng.uniform() < 0.6 ? 1 : 0));
          const bias = tensor([B, H, Tq, Tk], [...visible].map((f) => (f ? 0 : -Infinity)));
          const scale = 0.7;
          const got = maskedAttention(q, k, v, visible, scale, reference);
          const want = attention(q, k, v, { bias, scale });
          expect(got.out.shape).toEqual([B, H, Tq, Dv]);
          expect(got.probs.shape).toEqual([B, H, Tq, Tk]);
          near(got.probs.data, want.probs.data);
          near(got.out.data, want.out.data);
        }),
      { numRuns: 40 },
    );
  });

  it("by hand: two query heads share one kv head; the second hides a key", () => {
    // scale ln 3, keys (1, 0), values (10, 20). Head 0, q = 1: scores (ln 3, 0), weights (3/4, 1/4), out 12.5.
    // Head 1, q = -1, key 1 hidden: weight 1 on key 0, out 10.
    const q = tensor([1, 2, 1, 1], [1, -1]);
    const k = tensor([1, 1, 2, 1], [1, 0]);
    const v = tensor([1, 1, 2, 1], [10, 20]);
    const { out, probs } = maskedAttention(q, k, v, Uint8Array.of(1, 1, 1, 0), Math.log(3), reference);
    near(probs.data, [0.75, 0.25, 1, 0], 1e-7);
    near(out.data, [12.5, 10], 1e-7);
  });

  it("checks its arguments, with the whole message", () => {
    const q = tensor([1, 3, 1, 2]), k2 = tensor([1, 2, 1, 2]), v2 = tensor([1, 2, 1, 1]);
    expect(thrown(() => maskedAttention(q, k2, v2, new Uint8Array(3), 1, reference))).toBe("k: expected a number of kv heads that divides H=3, got 2");
    const q2 = tensor([1, 2, 1, 2]), k = tensor([1, 1, 3, 2]), v = tensor([1, 1, 3, 1]);
    expect(thrown(() => maskedAttention(q2, k, v, new Uint8Array(5), 1, reference))).toBe("visible: expected 6 flags [B, H, Tq, Tk], got 5");
    expect(thrown(() => maskedAttention(q2, k, v, new Uint8Array(7), 1, reference))).toBe("visible: expected 6 flags [B, H, Tq, Tk], got 7");
    expect(thrown(() => maskedAttention(tensor([1, 1, 2, 1]), tensor([1, 1, 3, 1]), tensor([1, 1, 3, 1]), new Uint8Array(5), 1, reference)))
      .toBe("visible: expected 6 flags [B, H, Tq, Tk], got 5");
    expect(thrown(() => maskedAttention(q2, k, v, new Uint8Array(6), NaN, reference))).toBe("scale: expected a finite number, got NaN");
    expect(thrown(() => maskedAttention(q2, k, v, new Uint8Array(6), Infinity, reference))).toBe("scale: expected a finite number, got Infinity");
    expect(thrown(() => maskedAttention(tensor([1, 2, 1]), k, v, new Uint8Array(6), 1, reference))).toBe("q: expected shape [B, H, Tq, Dh], got [1, 2, 1]");
    expect(thrown(() => maskedAttention(q2, tensor([2, 1, 3, 2]), v, new Uint8Array(6), 1, reference))).toBe("k: expected shape [B=1, Hkv, Tk, Dh=2], got [2, 1, 3, 2]");
    expect(thrown(() => maskedAttention(q2, tensor([1, 1, 3, 3]), v, new Uint8Array(6), 1, reference))).toBe("k: expected shape [B=1, Hkv=1, Tk=3, Dh=2], got [1, 1, 3, 3]");
    expect(thrown(() => maskedAttention(q2, k, tensor([2, 1, 3, 1]), new Uint8Array(6), 1, reference))).toBe("v: expected shape [B=1, Hkv=1, Tk=3, Dv], got [2, 1, 3, 1]");
    expect(thrown(() => maskedAttention(q2, k, tensor([1, 2, 3, 1]), new Uint8Array(6), 1, reference))).toBe("v: expected shape [B=1, Hkv=1, Tk=3, Dv], got [1, 2, 3, 1]");
    expect(thrown(() => maskedAttention(q2, k, tensor([1, 1, 2, 1]), new Uint8Array(6), 1, reference))).toBe("v: expected shape [B=1, Hkv=1, Tk=3, Dv], got [1, 1, 2, 1]");
  });

  it("transposed: [R, C] → [C, R]", () => {
    const t = transposed(iota([2, 3]));
    expect(t.shape).toEqual([3, 2]);
    expect([...t.data]).toEqual([0, 3, 1, 4, 2, 5]);
  });
});

describe("sliceTime (src/attention/masked.ts)", () => {
  const x = iota([2, 4, 1]); // two planes of four positions

  it("copies positions [start, end) of every plane", () => {
    const s = sliceTime(x, 1, 3);
    expect(s.shape).toEqual([2, 2, 1]);
    expect([...s.data]).toEqual([1, 2, 5, 6]);
    expect([...sliceTime(x, 0, 4).data]).toEqual([...x.data]);
    expect(sliceTime(x, 2, 2).shape).toEqual([2, 0, 1]);
    expect([...sliceTime(iota([3, 2]), 1, 3).data]).toEqual([2, 3, 4, 5]); // rank 2: one plane
    const copy = sliceTime(x, 0, 4);
    copy.data[0] = 99;
    expect(x.data[0]).toBe(0); // a copy, not a view
  });

  it("refuses positions outside 0 <= start <= end <= L and tensors of rank < 2", () => {
    expect(thrown(() => sliceTime(tensor([3]), 0, 1))).toBe("x: expected shape [..., L, d], got [3]");
    expect(thrown(() => sliceTime(x, 3, 2))).toBe("positions: expected 0 <= start <= end <= 4, got [3, 2)");
    expect(thrown(() => sliceTime(x, 0, 5))).toBe("positions: expected 0 <= start <= end <= 4, got [0, 5)");
    expect(thrown(() => sliceTime(x, -1, 2))).toBe("positions: expected 0 <= start <= end <= 4, got [-1, 2)");
    expect(thrown(() => sliceTime(x, 0.5, 2))).toBe("positions: expected 0 <= start <= end <= 4, got [0.5, 2)");
    expect(thrown(() => sliceTime(x, 0, 1.5))).toBe("positions: expected 0 <= start <= end <= 4, got [0, 1.5)");
  });
});

describe("head layout (src/attention/heads.ts)", () => {
  // Element (b, t, h, i) of x [B, T, H·per] is ((b·T + t)·H + h)·per + i; element (b, h, t, i) of a part of width w
  // is ((b·H + h)·T + t)·w + i. Widths above 64 take copy()'s other path (subarray + set).
  const [B, T, H] = [2, 3, 2];

  it("splitHeads and mergeHeads place every number, with heads narrower and wider than 64", () => {
    const widths = [65, 2, 70];
    const per = 137;
    const x = iota([B, T, H * per]);
    const parts = splitHeads(x, H, widths);
    let offset = 0;
    widths.forEach((w, p) => {
      const part = parts[p]!;
      expect(part.shape).toEqual([B, H, T, w]);
      const want = new Float32Array(B * H * T * w);
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < w; i++) {
        want[((b * H + h) * T + t) * w + i] = ((b * T + t) * H + h) * per + offset + i;
      }
      expect(part.data).toEqual(want);
      offset += w;
      const merged = mergeHeads(part);
      expect(merged.shape).toEqual([B, T, H * w]);
      const back = new Float32Array(B * T * H * w);
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < w; i++) {
        back[((b * T + t) * H + h) * w + i] = part.data[((b * H + h) * T + t) * w + i]!;
      }
      expect(merged.data).toEqual(back);
    });
    expect(mergeHeads(splitHeads(iota([B, T, H * 65]), H, [65])[0]!).data).toEqual(iota([B, T, H * 65]).data);
  });

  it("splitHeads and mergeHeads name a wrong shape", () => {
    expect(thrown(() => splitHeads(tensor([1, 2, 5]), 2, [1, 2]))).toBe("x: expected shape [B=1, T=2, 6], got [1, 2, 5]");
    expect(thrown(() => mergeHeads(tensor([2, 2, 2])))).toBe("x: expected shape [B, H, T, d], got [2, 2, 2]");
  });

  it("concatLast over two batches repeats a one-head part for every head, with parts wider than 64", () => {
    const A = 3;
    const perHead = iota([B, A, T, 66]);
    const shared = iota([B, 1, T, 65], 1000);
    const narrow = iota([B, A, T, 2], 5000);
    const out = concatLast([perHead, shared, narrow]);
    const width = 66 + 65 + 2;
    expect(out.shape).toEqual([B, A, T, width]);
    const want = new Float32Array(B * A * T * width);
    for (let b = 0; b < B; b++) for (let a = 0; a < A; a++) for (let t = 0; t < T; t++) {
      const row = ((b * A + a) * T + t) * width;
      for (let i = 0; i < 66; i++) want[row + i] = ((b * A + a) * T + t) * 66 + i;
      for (let i = 0; i < 65; i++) want[row + 66 + i] = 1000 + (b * T + t) * 65 + i;
      for (let i = 0; i < 2; i++) want[row + 131 + i] = 5000 + ((b * A + a) * T + t) * 2 + i;
    }
    expect(out.data).toEqual(want);
    // The repeated part may come first: axis 1 is the largest over all parts.
    expect(concatLast([shared, perHead]).shape).toEqual([B, A, T, 131]);
  });

  it("concatLast repeats a one-head part of rank 3 too, whichever part comes first", () => {
    // [B, A, w]: B = 2, A = 3; the shared part [2, 1, 2] first, then a per-head part [2, 3, 1].
    const joined = concatLast([iota([2, 1, 2]), iota([2, 3, 1], 100)]);
    expect(joined.shape).toEqual([2, 3, 3]);
    expect([...joined.data]).toEqual([0, 1, 100, 0, 1, 101, 0, 1, 102, 2, 3, 103, 2, 3, 104, 2, 3, 105]);
  });

  it("concatLast joins tensors of rank 1 and 2 along their last axis", () => {
    expect([...concatLast([tensor([1], [1]), tensor([2], [2, 3])]).data]).toEqual([1, 2, 3]);
    const joined = concatLast([iota([2, 1]), iota([2, 2], 10)]);
    expect(joined.shape).toEqual([2, 3]);
    expect([...joined.data]).toEqual([0, 10, 11, 1, 12, 13]);
  });

  it("concatLast names the part that does not fit, with the shape it expected", () => {
    const perHead = tensor([1, 2, 2, 1]);
    expect(thrown(() => concatLast([]))).toBe("parts: expected at least one tensor, got 0");
    expect(thrown(() => concatLast([perHead, tensor([1, 2, 3, 1])]))).toBe("parts[1]: expected shape [1, 2, 2, *] (axis 1 may be 1), got [1, 2, 3, 1]");
    expect(thrown(() => concatLast([perHead, tensor([2, 2, 2, 1])]))).toBe("parts[1]: expected shape [1, 2, 2, *] (axis 1 may be 1), got [2, 2, 2, 1]");
    // A part of another rank is refused, and its axis 1 does not enlarge the expected shape.
    expect(thrown(() => concatLast([perHead, tensor([1, 5, 2])]))).toBe("parts[1]: expected shape [1, 2, 2, *] (axis 1 may be 1), got [1, 5, 2]");
    expect(thrown(() => concatLast([perHead, tensor([1, 2, 2, 1, 1])]))).toBe("parts[1]: expected shape [1, 2, 2, *] (axis 1 may be 1), got [1, 2, 2, 1, 1]");
    // Axis 1 must be the largest or 1: 2 beside 3 is refused.
    expect(thrown(() => concatLast([perHead, tensor([1, 3, 2, 1])]))).toBe("parts[0]: expected shape [1, 3, 2, *] (axis 1 may be 1), got [1, 2, 2, 1]");
    // Only axis 1 may be 1: a part with 1 on axis 2 is refused.
    expect(thrown(() => concatLast([tensor([1, 2, 2, 1]), tensor([1, 2, 1, 1])]))).toBe("parts[1]: expected shape [1, 2, 2, *] (axis 1 may be 1), got [1, 2, 1, 1]");
  });

  it("concatTime and appendTime name a misfit b", () => {
    const a = tensor([2, 1, 1], [1, 2]);
    expect(thrown(() => concatTime(tensor([3]), a))).toBe("a: expected shape [..., L, d], got [3]");
    expect(thrown(() => concatTime(a, tensor([2, 2, 2])))).toBe("b: expected shape [n0=2, L=2, 1], got [2, 2, 2]");
    expect(thrown(() => concatTime(a, tensor([3, 1, 1])))).toBe("b: expected shape [n0=2, L, 1], got [3, 1, 1]");
    expect(thrown(() => concatTime(a, tensor([2, 1])))).toBe("b: expected shape [n0=2, L, 1], got [2, 1]");
    expect(thrown(() => concatTime(a, tensor([2, 1, 1, 1])))).toBe("b: expected shape [n0=2, L, 1], got [2, 1, 1, 1]");
    expect(thrown(() => concatTime(a, {} as never))).toBe('b: expected a tensor of shape [n0, L, 1], got "object"');
    expect(thrown(() => concatTime(a, undefined as never))).toBe('b: expected a tensor of shape [n0, L, 1], got "undefined"');
    expect(thrown(() => appendTime(a, { shape: [2, 1, 1], data: new Float32Array(3) }))).toBe("b: expected 2 values for its shape [2, 1, 1], got 3");
    expect(thrown(() => appendTime(tensor([1, 1]), { shape: [1, 1], data: [1] as never }))).toBe('b: expected a tensor of shape [L, 1], got "object"');
    expect([...concatTime(tensor([1, 2], [5, 6]), tensor([2, 2], [1, 2, 3, 4])).data]).toEqual([5, 6, 1, 2, 3, 4]); // rank 2: one plane
  });

  it("appendTime grows one plane in place up to its buffer's end, then copies; older tensors keep their values", () => {
    const first = appendTime(tensor([1, 0, 1]), iota([1, 100, 1])); // a buffer for 200 numbers
    expect([...first.data]).toEqual([...iota([100]).data]);
    const second = appendTime(first, iota([1, 100, 1], 100)); // exactly fills it
    expect(second.data.buffer).toBe(first.data.buffer);
    expect([...second.data]).toEqual([...iota([200]).data]);
    const third = appendTime(second, tensor([1, 1, 1], [200])); // no room left
    expect(third.data.buffer).not.toBe(second.data.buffer);
    expect([...third.data]).toEqual([...iota([201]).data]);
    expect([...first.data]).toEqual([...iota([100]).data]);
    expect([...second.data]).toEqual([...iota([200]).data]);
  });

  it("appendTime of a view that starts inside a buffer appends after the view's own values", () => {
    const grown = appendTime(tensor([1, 0, 1]), tensor([1, 4, 1], [1, 2, 3, 4])); // 4 numbers at the buffer's start
    const view = { shape: [1, 4, 1], data: new Float32Array(grown.data.buffer, 4, 4) }; // numbers 2, 3, 4 and the spare 0
    expect([...appendTime(view, tensor([1, 1, 1], [9])).data]).toEqual([2, 3, 4, 0, 9]);
    expect([...grown.data]).toEqual([1, 2, 3, 4]);
  });
});

describe("attention (src/attention/attention.ts)", () => {
  const zeros = (shape: number[]) => tensor(shape);
  const mask = (shape: number[], bits: number[]) => ({ shape, data: Uint8Array.from(bits) });

  it("returns the scores with withScores: scale·q·k + bias, -Infinity where hidden; none without it", () => {
    // q (1, 2), k (1, 3), scale 1, bias [[0.5, 0], [0, -1]], key 1 hidden from query 0.
    const q = tensor([1, 1, 2, 1], [1, 2]), k = tensor([1, 1, 2, 1], [1, 3]), v = tensor([1, 1, 2, 1], [0, 1]);
    const options = { scale: 1, bias: tensor([2, 2], [0.5, 0, 0, -1]), mask: mask([2, 2], [1, 0, 1, 1]) };
    const r = attention(q, k, v, { ...options, withScores: true });
    expect([...r.scores!.data]).toEqual([1.5, -Infinity, 2, 5]);
    expect(r.scores!.shape).toEqual([1, 1, 2, 2]);
    near(r.probs.data, [1, 0, 1 / (1 + Math.exp(3)), 1 / (1 + Math.exp(-3))], 1e-7);
    expect(attention(q, k, v, options).scores).toBeUndefined();
    // Two batch rows: q = k = 0, so the scores are the bias [B, H, Tq, Tk] itself.
    const bias = tensor([2, 2, 1, 2], [1, 0, 0, 1, 2, 0, -Infinity, 3]);
    expect([...attention(tensor([2, 2, 1, 1]), tensor([2, 1, 2, 1]), tensor([2, 1, 2, 1]), { bias, withScores: true }).scores!.data]).toEqual([...bias.data]);
  });

  it("the decay term in the scores is (offset + i - j)·ln γ_h, offset Tk - Tq by default", () => {
    // q = k = 0, so the scores are the decay alone; Tq = 2, Tk = 3: offset 1. Within a row the offset is a constant
    // the softmax ignores, so the weights are ∝ (1/γ)^j: (1, 2, 4)/7 for γ = 1/2 and (1, 4, 16)/21 for γ = 1/4.
    const [a, b] = [Math.log(0.5), Math.log(0.25)];
    const v = tensor([1, 1, 3, 1], [0, 1, 2]);
    const r = attention(zeros([1, 2, 2, 1]), zeros([1, 1, 3, 1]), v, { logGammas: [a, b], withScores: true });
    const want = [0, 1].flatMap((h) => [0, 1].flatMap((i) => [0, 1, 2].map((j) => (1 + i - j) * [a, b][h]!)));
    near(r.scores!.data, want, 1e-7);
    near(r.out.data, [10 / 7, 10 / 7, 12 / 7, 12 / 7], 1e-6);
    const at3 = attention(zeros([1, 2, 2, 1]), zeros([1, 1, 3, 1]), v, { logGammas: [a, b], offset: 3, withScores: true });
    near(at3.scores!.data, want.map((s, n) => s + 2 * [a, b][Math.floor(n / 6)]!), 1e-7);
  });

  it("a hidden key's score, however large, does not enter the softmax", () => {
    // Key 0 scores 1000 but is hidden; were it the row's max, exp(0 - 1000) would leave a sum of 0.
    const r = attention(tensor([1, 1, 1, 1], [1]), tensor([1, 1, 2, 1], [1000, 0]), tensor([1, 1, 2, 1], [5, 7]), { scale: 1, mask: mask([1, 2], [0, 1]) });
    expect([...r.probs.data]).toEqual([0, 1]);
    expect([...r.out.data]).toEqual([7]);
  });

  it("a mask [B, Tq, Tk] and a bias [B, H, Tq, Tk] apply per batch row and head; [H, Tq, Tk] per head", () => {
    // q = k = 0: the weights come from the bias and mask alone. Values (0, 1), so out = weight of key 1.
    const [q, k, v] = [zeros([2, 2, 1, 1]), zeros([2, 1, 2, 1]), tensor([2, 1, 2, 1], [0, 1, 0, 1])];
    const L = Math.log(3);
    const batched = tensor([2, 2, 1, 2], [L, 0, 0, L, 0, 0, -Infinity, 0]);
    near(attention(q, k, v, { bias: batched }).out.data, [0.25, 0.75, 0.5, 1], 1e-7);
    near(attention(q, k, v, { bias: tensor([2, 1, 2], [L, 0, 0, L]) }).out.data, [0.25, 0.75, 0.25, 0.75], 1e-7);
    near(attention(q, k, v, { bias: tensor([1, 2], [L, 0]) }).out.data, [0.25, 0.25, 0.25, 0.25], 1e-7);
    expect([...attention(q, k, v, { mask: mask([2, 1, 2], [1, 0, 0, 1]) }).out.data]).toEqual([0, 0, 1, 1]);
    expect([...attention(q, k, v, { mask: mask([1, 2], [0, 1]) }).out.data]).toEqual([1, 1, 1, 1]);
  });

  it("refuses masks and biases of another shape or length, naming every shape it accepts", () => {
    const [q, k, v] = [zeros([2, 2, 1, 1]), zeros([2, 1, 2, 1]), zeros([2, 1, 2, 1])];
    const maskMessage = (got: string) => `mask: expected shape [1, 2] or [2, 1, 2], got ${got}`;
    for (const shape of [[1, 1, 2], [3, 1, 2], [2, 2, 2], [2, 1, 3], [2, 2], [1, 3], [1, 2, 1, 2], [2]]) {
      const n = shape.reduce((a, d) => a * d, 1);
      expect(thrown(() => attention(q, k, v, { mask: mask(shape, Array(n).fill(1)) }))).toBe(maskMessage(`[${shape.join(", ")}]`));
    }
    expect(thrown(() => attention(q, k, v, { mask: mask([1, 2], [1, 1, 1]) }))).toBe(maskMessage("[1, 2]"));
    expect(thrown(() => attention(q, k, v, { mask: mask([2, 1, 2], [1, 1, 1]) }))).toBe(maskMessage("[2, 1, 2]"));
    expect(thrown(() => attention(q, k, v, { mask: mask([1, 1, 2], [1, 1, 1, 1]) }))).toBe(maskMessage("[1, 1, 2]")); // values enough for B = 2
    // No key, or no query: every mask holds zero values, and its shape must still match.
    expect(thrown(() => attention(zeros([1, 1, 1, 1]), zeros([1, 1, 0, 1]), zeros([1, 1, 0, 1]), { mask: mask([5, 0], []) }))).toBe("mask: expected shape [1, 0] or [1, 1, 0], got [5, 0]");
    expect(thrown(() => attention(zeros([1, 1, 0, 1]), zeros([1, 1, 2, 1]), zeros([1, 1, 2, 1]), { mask: mask([0, 7], []) }))).toBe("mask: expected shape [0, 2] or [1, 0, 2], got [0, 7]");
    const biasMessage = (got: string) => `bias: expected shape [1, 2], [2, 1, 2] or [2, 2, 1, 2], got ${got}`;
    for (const shape of [[3, 1, 2], [1, 2, 1, 2], [2, 3, 1, 2], [3, 2, 1, 2], [2, 2, 2, 1, 2], [2, 2], [1, 3], [2], [2, 1, 1]]) {
      expect(thrown(() => attention(q, k, v, { bias: zeros(shape) }))).toBe(biasMessage(`[${shape.join(", ")}]`));
    }
    expect(thrown(() => attention(q, k, v, { bias: { shape: [1, 2], data: new Float32Array(3) } }))).toBe(biasMessage("[1, 2]"));
  });

  it("checks the decay's gammas and offset, with the whole message", () => {
    const [q, k, v] = [zeros([1, 2, 1, 1]), zeros([1, 1, 2, 1]), zeros([1, 1, 2, 1])];
    expect(thrown(() => attention(q, k, v, { logGammas: [0] }))).toBe("logGammas: expected 2 values (one per query head), got 1");
    expect(thrown(() => attention(q, k, v, { logGammas: [0, 0.1] })))
      .toBe("logGammas[1]: expected a finite number in [-1.7976931348623157e+308, 0] (ln γ with γ in (0, 1]), got 0.1");
    expect(thrown(() => attention(q, k, v, { logGammas: [0, 0], offset: -1 }))).toBe("offset: expected an integer >= 0, got -1");
    expect(thrown(() => attention(q, k, v, { logGammas: [0, 0], offset: 0.5 }))).toBe("offset: expected an integer >= 0, got 0.5");
    expect(attention(q, k, v, { logGammas: [0, 0], offset: 0 }).out.shape).toEqual([1, 2, 1, 1]);
  });

  it("attendWith(probs, v) is the weighted sum attention makes with those probabilities", () => {
    fc.assert(
      fc.property(seed, fc.constantFrom(1, 2), fc.constantFrom(1, 2), fc.constantFrom(1, 2, 3), fc.constantFrom(1, 3), fc.constantFrom(1, 2, 5), fc.constantFrom(1, 3),
        (s, B, Hkv, group, Tq, Tk, Dv) => {
          const rng = new Random(s);
          const H = Hkv * group;
          const q = randBounded(rng, [B, H, Tq, 2]), k = randBounded(rng, [B, Hkv, Tk, 2]), v = randBounded(rng, [B, Hkv, Tk, Dv]);
          const r = attention(q, k, v);
          const out = attendWith(r.probs, v);
          expect(out.shape).toEqual([B, H, Tq, Dv]);
          near(out.data, r.out.data, 1e-6);
        }),
      { numRuns: 30 },
    );
  });

  it("attendWith names a misfit probs or v", () => {
    expect(thrown(() => attendWith(zeros([1, 3, 1, 2]), zeros([1, 2, 2, 1])))).toBe("v: expected a number of kv heads that divides H=3, got 2");
    expect(thrown(() => attendWith(zeros([1, 2, 1, 2]), zeros([1, 0, 2, 1])))).toBe("v: expected a number of kv heads that divides H=2, got 0");
    expect(thrown(() => attendWith(zeros([3, 1, 2]), zeros([1, 1, 2, 1])))).toBe("probs: expected shape [B, H, Tq, Tk], got [3, 1, 2]");
    expect(thrown(() => attendWith(zeros([1, 1, 1, 2]), zeros([1, 1, 3, 1])))).toBe("v: expected shape [B=1, Hkv=1, Tk=2, Dv], got [1, 1, 3, 1]");
  });
});

describe("decay (src/attention/decay.ts)", () => {
  it("as-written with shared kv heads and one gamma scales each kv head's keys by γ^j", () => {
    // H = 4 over Hkv = 2, Tq = 1, Tk = 2, Dh = 1, γ = 1/2: kv head 0 keys (1, 1) → (1, 0.5), kv head 1 (2, 2) → (2, 1).
    // q = (1, -1, 1, -1), values (0, 1): out = weight of key 1 = 1/(1 + e^(s0 - s1)).
    const q = tensor([1, 4, 1, 1], [1, -1, 1, -1]);
    const k = tensor([1, 2, 2, 1], [1, 1, 2, 2]);
    const v = tensor([1, 2, 2, 1], [0, 1, 0, 1]);
    const w = (d: number) => 1 / (1 + Math.exp(d));
    near(decayAttention(q, k, v, { gamma: 0.5, mode: "as-written" }).out.data, [w(0.5), w(-0.5), w(1), w(-1)], 1e-6);
  });

  it("as-written with one gamma per head (kv heads not shared)", () => {
    // Keys (1, 1), q = 1: head 0 (γ = 1/2) scores (1, 0.5), head 1 (γ = 1/4) scores (1, 0.25).
    const q = tensor([1, 2, 1, 1], [1, 1]);
    const k = tensor([1, 2, 2, 1], [1, 1, 1, 1]);
    const v = tensor([1, 2, 2, 1], [0, 1, 0, 1]);
    near(decayAttention(q, k, v, { gamma: [0.5, 0.25], mode: "as-written" }).out.data, [1 / (1 + Math.exp(0.5)), 1 / (1 + Math.exp(0.75))], 1e-6);
  });

  it("checks gamma and mode with the whole message", () => {
    const [q, k, v] = [tensor([1, 2, 3, 4]), tensor([1, 2, 3, 4]), tensor([1, 2, 3, 4])];
    expect(thrown(() => decayAttention(q, k, v, { gamma: 0 }))).toBe("gamma[0]: expected a finite number in [5e-324, 1] (0 excluded), got 0");
    expect(thrown(() => decayAttention(q, k, v, { gamma: [0.5, 2] }))).toBe("gamma[1]: expected a finite number in [5e-324, 1] (0 excluded), got 2");
    expect(thrown(() => decayAttention(q, k, v, { gamma: 0.9, mode: "absolute" as never }))).toBe('mode: expected one of "relative", "as-written", got "absolute"');
    expect(thrown(() => decayAttention(q, tensor([1, 1, 3, 4]), tensor([1, 1, 3, 4]), { gamma: [0.9, 0.8], mode: "as-written" })))
      .toBe("gamma: expected a single gamma when kv heads are shared, got [0.9, 0.8]");
    expect(thrown(() => decayAttention(tensor([2, 3, 4]), k, v, { gamma: 0.9 }))).toBe("q: expected shape [B, H, Tq, Dh], got [2, 3, 4]");
    expect(thrown(() => decayAttention(q, tensor([1, 2, 3, 5]), v, { gamma: 0.9 }))).toBe("k: expected shape [B=1, Hkv=2, Tk=3, Dh=4], got [1, 2, 3, 5]");
  });

  it("decayBias: offset Tk - Tq by default, one plane per head, and its checks", () => {
    const a = Math.log(0.5), b = Math.log(0.25);
    const bias = decayBias([a, b], 2, 3);
    expect(bias.shape).toEqual([2, 2, 3]);
    near(bias.data, [1, 0, -1, 2, 1, 0].map((d) => d * a).concat([1, 0, -1, 2, 1, 0].map((d) => d * b)), 1e-7);
    expect(thrown(() => decayBias([a], -1, 2))).toBe("Tq: expected an integer >= 0, got -1");
    expect(thrown(() => decayBias([a], 1, 1.5))).toBe("Tk: expected an integer >= 0, got 1.5");
    expect(thrown(() => decayBias([a], 2, 2, -1))).toBe("offset: expected an integer >= 0, got -1");
    expect(thrown(() => decayBias([a, 0.5], 2, 2))).toBe("logGammas[1]: expected a finite number in [-1.7976931348623157e+308, 0], got 0.5");
    expect(decayBias([], 2, 2).shape).toEqual([0, 2, 2]);
  });
});

describe("patch embedding and PPM files (src/attention/patch.ts)", () => {
  const ascii = (text: string, body: number[] = []) => Uint8Array.from([...new TextEncoder().encode(text), ...body]);

  it("positions2d by hand: rows in the first half, columns in the second, ω_k = 10000^(-k/(E/4))", () => {
    // E = 8: quarter 2, ω = (1, 0.01). Patch (i, j) = (1, 2) of a 2 × 3 grid is token 5.
    const pos = positions2d(2, 3, 8);
    expect(pos.shape).toEqual([6, 8]);
    near(pos.data.subarray(5 * 8, 6 * 8), [Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01), Math.sin(2), Math.sin(0.02), Math.cos(2), Math.cos(0.02)], 1e-7);
    near(pos.data.subarray(1 * 8, 2 * 8), [0, 0, 1, 1, Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01)], 1e-7);
  });

  it("patchEmbed adds the bias and the position of every patch of a 2 × 2 grid", () => {
    // Zero projection: token (i, j) = bias + (sin i, cos i, sin j, cos j).
    const out = patchEmbed(iota([1, 4, 4]), { patch_proj: tensor([4, 4]), patch_proj_bias: tensor([4], [1, 2, 3, 4]) }, { channels: 1, patch_size: 2, embed_dim: 4 });
    expect(out.shape).toEqual([4, 4]);
    const want = [[0, 0], [0, 1], [1, 0], [1, 1]].flatMap(([i, j]) => [1 + Math.sin(i!), 2 + Math.cos(i!), 3 + Math.sin(j!), 4 + Math.cos(j!)]);
    near(out.data, want, 1e-7);
  });

  it("initPatchEmbedding: a projection [E, C·p·p] and a zero bias [E]", () => {
    const w = initPatchEmbedding(new Random(1), { channels: 2, patch_size: 3, embed_dim: 8 });
    expect(w.patch_proj.shape).toEqual([8, 18]);
    expect(w.patch_proj.data.some((x) => x !== 0)).toBe(true);
    expect(w.patch_proj_bias.shape).toEqual([8]);
    expect([...w.patch_proj_bias.data]).toEqual(Array(8).fill(0));
  });

  it("configs, images and weights are checked, with the whole message", () => {
    const cfg = { channels: 1, patch_size: 2, embed_dim: 4 };
    expect(thrown(() => checkPatchConfig({ ...cfg, channels: 0 }))).toBe("config.channels: expected an integer >= 1, got 0");
    expect(thrown(() => checkPatchConfig({ ...cfg, patch_size: 0 }))).toBe("config.patch_size: expected an integer >= 1, got 0");
    expect(thrown(() => checkPatchConfig({ ...cfg, embed_dim: 2 }))).toBe("config.embed_dim: expected an integer >= 4, got 2");
    expect(thrown(() => checkPatchConfig({ ...cfg, embed_dim: 6 }))).toBe("config.embed_dim: expected a multiple of 4, got 6");
    expect(thrown(() => initPatchEmbedding(new Random(1), { ...cfg, embed_dim: 6 }))).toBe("config.embed_dim: expected a multiple of 4, got 6");
    expect(thrown(() => patchify(tensor([1, 2, 2]), 0))).toBe("p: expected an integer >= 1, got 0");
    const multiples = (shape: string) => `image: expected height and width that are positive multiples of the patch size 2, got ${shape}`;
    expect(thrown(() => patchify(tensor([3, 5, 4]), 2))).toBe(multiples("[3, 5, 4]"));
    expect(thrown(() => patchify(tensor([3, 4, 5]), 2))).toBe(multiples("[3, 4, 5]"));
    expect(thrown(() => patchify(tensor([3, 0, 4]), 2))).toBe(multiples("[3, 0, 4]"));
    expect(thrown(() => patchify(tensor([3, 4, 0]), 2))).toBe(multiples("[3, 4, 0]"));
    expect(thrown(() => patchify(tensor([4, 4]), 2))).toBe("image: expected shape [C, H, W], got [4, 4]");
    expect(thrown(() => positions2d(0, 1, 4))).toBe("rows: expected an integer >= 1, got 0");
    expect(thrown(() => positions2d(1, 0, 4))).toBe("cols: expected an integer >= 1, got 0");
    expect(thrown(() => positions2d(1, 1, 2))).toBe("E: expected an integer >= 4, got 2");
    expect(thrown(() => positions2d(1, 1, 6))).toBe("E: expected a multiple of 4, got 6");
    const w = { patch_proj: tensor([4, 4]), patch_proj_bias: tensor([4]) };
    expect(thrown(() => patchEmbed(tensor([2, 4, 4]), w, cfg))).toBe("image: expected shape [1, H, W], got [2, 4, 4]");
    expect(thrown(() => patchEmbed(tensor([1, 4, 4]), { ...w, patch_proj: tensor([4, 5]) }, cfg))).toBe("weights.patch_proj: expected shape [4, 4], got [4, 5]");
    expect(thrown(() => patchEmbed(tensor([1, 4, 4]), { ...w, patch_proj_bias: tensor([5]) }, cfg))).toBe("weights.patch_proj_bias: expected shape [4], got [5]");
    expect(thrown(() => patchEmbed(tensor([1, 4, 4]), undefined as never, cfg))).toBe('weights.patch_proj: expected a tensor of shape [4, 4], got "undefined"');
    expect(thrown(() => patchEmbed(tensor([1, 4, 4]), w, { ...cfg, embed_dim: 6 }))).toBe("config.embed_dim: expected a multiple of 4, got 6");
  });

  it("readPpm reads pixels channel-major, skips comments and any whitespace, and keeps a body that starts with whitespace", () => {
    // 2 × 1 pixels: (255, 0, 51) and (32, 10, 9): the second pixel's bytes are whitespace characters.
    const image = readPpm(ascii("P6 # a comment\n2\t# another\n 1\r255\n", [255, 0, 51, 32, 10, 9]));
    expect(image.shape).toEqual([3, 1, 2]);
    near(image.data, [1, 32 / 255, 0, 10 / 255, 0.2, 9 / 255], 1e-7);
    const tall = readPpm(ascii("P6\n1 2\n255\n", [1, 2, 3, 4, 5, 6]));
    expect(tall.shape).toEqual([3, 2, 1]);
    near(tall.data, [1, 4, 2, 5, 3, 6].map((b) => b / 255), 1e-7);
  });

  it("readPpm refuses a bad header or body, with the whole message", () => {
    expect(thrown(() => readPpm(ascii("")))).toBe("ppm: expected a header of 4 fields, got 0");
    expect(thrown(() => readPpm(ascii("P6\n1 1\n")))).toBe("ppm: expected a header of 4 fields, got 3");
    expect(thrown(() => readPpm(ascii("P6\n1 1 # 255\n")))).toBe("ppm: expected a header of 4 fields, got 3");
    expect(thrown(() => readPpm(ascii("P6 1 1 #")))).toBe("ppm: expected a header of 4 fields, got 3"); // a comment up to the end
    expect(thrown(() => readPpm(ascii("P6 1 1 255")))).toBe("ppm: expected one whitespace byte and 3 bytes of body after the header, got the end of the file"); // no byte ends the header
    expect(thrown(() => readPpm(ascii("P6\n1 2\n255\n", [0, 0, 0])))).toBe("ppm body: expected 6 bytes, got 3");
    expect(thrown(() => readPpm(ascii("P3\n1 1\n255\n", [0, 0, 0])))).toBe('ppm magic: expected "P6", got "P3"');
    expect(thrown(() => readPpm(ascii("P6\n0 1\n255\n")))).toBe("ppm width: expected an integer >= 1, got 0");
    expect(thrown(() => readPpm(ascii("P6\nx 1\n255\n")))).toBe("ppm width: expected an integer >= 1, got NaN");
    expect(thrown(() => readPpm(ascii("P6\n1 0\n255\n")))).toBe("ppm height: expected an integer >= 1, got 0");
    expect(thrown(() => readPpm(ascii("P6\n1 1\n65535\n", [0, 0, 0, 0, 0, 0])))).toBe("ppm maxval: expected 255, got 65535");
    expect(thrown(() => readPpm(ascii("P6\n2 1\n255\n", [0, 0, 0])))).toBe("ppm body: expected 6 bytes, got 3");
    expect(thrown(() => readPpm(ascii("P6\n1 1\n255\n", [0, 0, 0, 0])))).toBe("ppm body: expected 3 bytes, got 4");
  });

  it("writePpm writes the header and rounds each value to the nearest of 256 levels, clamped to [0, 1]", () => {
    // One row of 2 pixels: (-0.5, 0.5, 1.5) and (0.2, 1, 0); 0.5·255 = 127.5 rounds half to even, 128.
    const bytes = writePpm(tensor([3, 1, 2], [-0.5, 0.2, 0.5, 1, 1.5, 0]));
    expect([...bytes]).toEqual([...ascii("P6\n2 1\n255\n", [0, 128, 255, 51, 255, 0])]);
    expect(thrown(() => writePpm(tensor([2, 1, 1])))).toBe("image: expected shape [3, H, W], got [2, 1, 1]");
  });
});

describe("cross-modal attention and early fusion (src/attention/crossmodal.ts)", () => {
  const config = { text_dim: 2, vision_dim: 3 };

  it("fills the config's defaults and checks it, with the whole message", () => {
    expect(checkCrossModalConfig(config)).toEqual({ text_dim: 2, vision_dim: 3, num_heads: 1, fusion: "cross" });
    expect(checkCrossModalConfig({ text_dim: 4, vision_dim: 6, num_heads: 2, fusion: "early" })).toEqual({ text_dim: 4, vision_dim: 6, num_heads: 2, fusion: "early" });
    expect(thrown(() => checkCrossModalConfig(null as never))).toBe("config: expected a cross-modal config object, got null");
    expect(thrown(() => checkCrossModalConfig(7 as never))).toBe("config: expected a cross-modal config object, got 7");
    expect(thrown(() => checkCrossModalConfig({ text_dim: 0, vision_dim: 2 }))).toBe("config.text_dim: expected an integer >= 1, got 0");
    expect(thrown(() => checkCrossModalConfig({ text_dim: 2, vision_dim: 0 }))).toBe("config.vision_dim: expected an integer >= 1, got 0");
    expect(thrown(() => checkCrossModalConfig({ text_dim: 2, vision_dim: 2, num_heads: 0 }))).toBe("config.num_heads: expected an integer >= 1, got 0");
    expect(thrown(() => checkCrossModalConfig({ text_dim: 4, vision_dim: 6, num_heads: 3 }))).toBe("config.num_heads: expected a divisor of text_dim 4, got 3");
    expect(thrown(() => checkCrossModalConfig({ text_dim: 4, vision_dim: 6, num_heads: 4 }))).toBe("config.num_heads: expected a divisor of vision_dim 6, got 4");
    expect(thrown(() => checkCrossModalConfig({ text_dim: 2, vision_dim: 2, fusion: "late" as never }))).toBe('config.fusion: expected one of "cross", "early", got "late"');
  });

  it("initCrossModal gives each fusion its weights: projections of the right shape, zero biases and gates", () => {
    const cross = initCrossModal(new Random(1), config) as unknown as Record<string, Tensor>;
    const shapes = (w: Record<string, Tensor>) => Object.fromEntries(Object.entries(w).map(([n, t]) => [n, t.shape]));
    expect(shapes(cross)).toEqual({ text_proj: [3, 2], text_proj_bias: [3], vision_proj: [2, 3], vision_proj_bias: [2], gate_text: [1], gate_vision: [1] });
    const early = initCrossModal(new Random(1), { ...config, fusion: "early" }) as unknown as Record<string, Tensor>;
    expect(shapes(early)).toEqual({ projector_fc1: [2, 3], projector_fc1_bias: [2], projector_fc2: [2, 2], projector_fc2_bias: [2] });
    for (const w of [cross, early]) {
      for (const [name, t] of Object.entries(w)) expect(t.data.every((x) => x === 0), name).toBe(name.includes("bias") || name.startsWith("gate"));
    }
  });

  it("keeps the inputs' shapes: [N, d] in, [N, d] out; [B, N, d] in, [B, N, d] out", () => {
    const w = initCrossModal(new Random(2), config) as CrossAttentionWeights;
    const flat = crossModalAttention(iota([4, 2]), iota([5, 3]), w, config);
    expect(flat.text.shape).toEqual([4, 2]);
    expect(flat.vision.shape).toEqual([5, 3]);
    expect(flat.probsTv.shape).toEqual([1, 1, 4, 5]);
    const batched = crossModalAttention(iota([2, 4, 2]), iota([2, 5, 3]), w, config);
    expect(batched.text.shape).toEqual([2, 4, 2]);
    expect(batched.vision.shape).toEqual([2, 5, 3]);
  });

  it("with H heads, head h of each score product uses feature slice h and divides by √(d/H)", () => {
    // dt = 4, dv = 2, H = 2: S_tv divides by √1, S_vt by √2.
    const cfg = { text_dim: 4, vision_dim: 2, num_heads: 2 };
    const rng = new Random(4);
    const w = initCrossModal(rng, cfg) as unknown as Record<string, Tensor>;
    const weights = Object.fromEntries(Object.entries(w).map(([n, t]) => [n, randBounded(rng, t.shape, 0.7)])) as unknown as CrossAttentionWeights;
    const [text, vision] = [randBounded(rng, [2, 3, 4]), randBounded(rng, [2, 2, 2])];
    const r = crossModalAttention(text, vision, weights, cfg);
    for (let b = 0; b < 2; b++) for (let h = 0; h < 2; h++) {
      for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) {
        let tv = 0;
        for (let d = h; d < h + 1; d++) tv += r.textProj.data[(b * 3 + i) * 2 + d]! * vision.data[(b * 2 + j) * 2 + d]!;
        expect(r.scoresTv.data[((b * 2 + h) * 3 + i) * 2 + j]).toBeCloseTo(tv, 5);
      }
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) {
        let vt = 0;
        for (let d = 2 * h; d < 2 * h + 2; d++) vt += r.visionProj.data[(b * 2 + i) * 4 + d]! * text.data[(b * 3 + j) * 4 + d]!;
        expect(r.scoresVt.data[((b * 2 + h) * 2 + i) * 3 + j]).toBeCloseTo(vt / Math.SQRT2, 5);
      }
    }
  });

  it("checks fusion, masks and weights, with the whole message", () => {
    const w = initCrossModal(new Random(1), config) as CrossAttentionWeights;
    const [T, V] = [tensor([2, 2]), tensor([1, 3])];
    expect(thrown(() => crossModalAttention(T, V, w, { ...config, fusion: "early" }))).toBe('config.fusion: expected "cross" for crossModalAttention, got "early"');
    expect(thrown(() => crossModalAttention(T, V, w, config, { text: new Uint8Array(3) }))).toBe("masks.text: expected 2 flags (0 or 1), got 3");
    expect(thrown(() => crossModalAttention(T, V, w, config, { vision: new Uint8Array(2) }))).toBe("masks.vision: expected 1 flags (0 or 1), got 2");
    expect(thrown(() => crossModalAttention(T, V, w, config, { text: [1, 1] as never }))).toBe("masks.text: expected 2 flags (0 or 1), got 2");
    expect(thrown(() => crossModalAttention(T, V, w, config, { text: null as never }))).toBe("masks.text: expected 2 flags (0 or 1), got undefined");
    expect(thrown(() => crossModalAttention(T, V, w, config, { text: Uint8Array.of(1, 2) }))).toBe('masks.text: expected flags of 0 or 1, got "1, 2"');
    expect(thrown(() => crossModalAttention(T, V, null as never, config))).toBe("weights: expected the cross-attention weights, got null");
    expect(thrown(() => crossModalAttention(T, V, 5 as never, config))).toBe("weights: expected the cross-attention weights, got 5");
    expect(thrown(() => crossModalAttention(undefined as never, V, w, config))).toBe('text: expected a tensor of shape [B, Nt, 2], got "undefined"');
    expect(thrown(() => crossModalAttention({} as never, V, w, config))).toBe('text: expected a tensor of shape [B, Nt, 2], got "object"');
    expect(thrown(() => crossModalAttention(T, undefined as never, w, config))).toBe('vision: expected a tensor of shape [1, Nv, 3], got "undefined"');
    expect(thrown(() => crossModalAttention(T, {} as never, w, config))).toBe('vision: expected a tensor of shape [1, Nv, 3], got "object"');
    const names: [string, number[], string][] = [
      ["text_proj", [2, 3], "[3, 2]"], ["text_proj_bias", [2], "[3]"], ["vision_proj", [3, 2], "[2, 3]"],
      ["vision_proj_bias", [3], "[2]"], ["gate_text", [2], "[1]"], ["gate_vision", [2], "[1]"],
    ];
    for (const [name, bad, want] of names) {
      expect(thrown(() => crossModalAttention(T, V, { ...w, [name]: tensor(bad) }, config))).toBe(`weights.${name}: expected shape ${want}, got [${bad.join(", ")}]`);
    }
  });

  describe("early fusion", () => {
    const early = { text_dim: 2, vision_dim: 3, fusion: "early" as const };
    const w = initCrossModal(new Random(3), early) as EarlyFusionWeights;
    const text = iota([5, 2]);
    const image = (n: number) => randBounded(new Random(n), [n, 3]);

    it("markers at both ends and side by side: text rows in place, each image's span where its marker was", () => {
      const { sequence, spans } = earlyFusion(text, [0, 1, 4], [image(2), image(1), image(3)], w, early);
      expect(spans).toEqual([[0, 2], [2, 3], [5, 8]]);
      expect(sequence.shape).toEqual([8, 2]);
      expect([...sequence.data.subarray(6, 10)]).toEqual([4, 5, 6, 7]); // text rows 2, 3
      const tokens = (im: Tensor) => ops.linear(ops.gelu(ops.linear(im, w.projector_fc1, w.projector_fc1_bias)), w.projector_fc2, w.projector_fc2_bias).data;
      near(sequence.data.subarray(0, 4), tokens(image(2)), 1e-6);
      near(sequence.data.subarray(4, 6), tokens(image(1)), 1e-6);
      near(sequence.data.subarray(10, 16), tokens(image(3)), 1e-6);
      const none = earlyFusion(text, [], [], w, early);
      expect(none.spans).toEqual([]);
      expect([...none.sequence.data]).toEqual([...text.data]);
    });

    it("checks fusion, text, markers, images and weights, with the whole message", () => {
      expect(thrown(() => earlyFusion(text, [], [], w, { ...early, fusion: "cross" }))).toBe('config.fusion: expected "early" for earlyFusion, got "cross"');
      expect(thrown(() => earlyFusion(tensor([5, 3]), [], [], w, early))).toBe("textEmbeds: expected shape [T=5, 2], got [5, 3]");
      expect(thrown(() => earlyFusion(text, [1], [], w, early))).toBe("images: expected one per marker (1), got 0");
      expect(thrown(() => earlyFusion(text, [5], [image(1)], w, early))).toBe("markers[0]: expected an integer in [0, 4], got 5");
      expect(thrown(() => earlyFusion(text, [-1], [image(1)], w, early))).toBe("markers[0]: expected an integer in [0, 4], got -1");
      expect(thrown(() => earlyFusion(text, [2, 2], [image(1), image(1)], w, early))).toBe("markers[1]: expected an integer in [3, 4], got 2");
      expect(thrown(() => earlyFusion(text, [1], [tensor([1, 2])], w, early))).toBe("images[0]: expected shape [N=1, 3], got [1, 2]");
      expect(thrown(() => earlyFusion(text, [1], [image(1)], null as never, early))).toBe("weights: expected the projector weights, got null");
      expect(thrown(() => earlyFusion(text, [1], [image(1)], 5 as never, early))).toBe("weights: expected the projector weights, got 5");
      const names: [string, number[], string][] = [
        ["projector_fc1", [3, 2], "[2, 3]"], ["projector_fc1_bias", [3], "[2]"], ["projector_fc2", [2, 3], "[2, 2]"], ["projector_fc2_bias", [3], "[2]"],
      ];
      for (const [name, bad, want] of names) {
        expect(thrown(() => earlyFusion(text, [1], [image(1)], { ...w, [name]: tensor(bad) }, early))).toBe(`weights.${name}: expected shape ${want}, got [${bad.join(", ")}]`);
      }
    });
  });
});

describe("space-channel-time attention (src/attention/video.ts)", () => {
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

  it("fills the config's defaults and checks it, with the whole message", () => {
    expect(checkVideoConfig({ channels: 9 })).toEqual({ channels: 9, num_heads: 1, se_ratio: 4, temporal_self: false, rms_norm_eps: 1e-6, se_channels: 2 });
    expect(checkVideoConfig({ channels: 3 }).se_channels).toBe(1);
    expect(checkVideoConfig({ channels: 9, num_heads: 3, se_ratio: 2.5, temporal_self: true, rms_norm_eps: 0.5 }))
      .toEqual({ channels: 9, num_heads: 3, se_ratio: 2.5, temporal_self: true, rms_norm_eps: 0.5, se_channels: 3 });
    expect(thrown(() => checkVideoConfig(null as never))).toBe("config: expected a video attention config object, got null");
    expect(thrown(() => checkVideoConfig(5 as never))).toBe("config: expected a video attention config object, got 5");
    expect(thrown(() => checkVideoConfig({ channels: 0 }))).toBe("config.channels: expected an integer >= 1, got 0");
    expect(thrown(() => checkVideoConfig({ channels: 4, num_heads: 0 }))).toBe("config.num_heads: expected an integer >= 1, got 0");
    expect(thrown(() => checkVideoConfig({ channels: 4, num_heads: 3 }))).toBe("config.num_heads: expected a divisor of channels 4, got 3");
    expect(thrown(() => checkVideoConfig({ channels: 4, se_ratio: 0.5 }))).toBe("config.se_ratio: expected a finite number in [1, Infinity], got 0.5");
    expect(thrown(() => checkVideoConfig({ channels: 4, rms_norm_eps: 2 }))).toBe("config.rms_norm_eps: expected a finite number in [0, 1], got 2");
    expect(thrown(() => checkVideoConfig({ channels: 4, temporal_self: "yes" as never }))).toBe('config.temporal_self: expected a boolean, got "yes"');
  });

  it("initVideoAttention: norms of ones, projections [C, C], SE [Cr, C] and [C, Cr] with zero biases", () => {
    const w = initVideoAttention(new Random(1), { channels: 4, se_ratio: 2 });
    for (const step of [w.temporal, w.spatial]) {
      expect([...step.norm.data]).toEqual([1, 1, 1, 1]);
      for (const m of [step.q_proj, step.k_proj, step.v_proj, step.o_proj]) {
        expect(m.shape).toEqual([4, 4]);
        expect(m.data.some((x) => x !== 0)).toBe(true);
      }
    }
    expect([w.se_fc1.shape, w.se_fc1_bias.shape, w.se_fc2.shape, w.se_fc2_bias.shape]).toEqual([[2, 4], [2], [4, 2], [4]]);
    expect([...w.se_fc1_bias.data, ...w.se_fc2_bias.data]).toEqual(Array(6).fill(0));
  });

  // Random weights of a config, larger than init's so that every step matters.
  const weightsFor = (rng: Random, C: number, Cr: number): VideoAttentionWeights => {
    const step = () => ({
      norm: randBounded(rng, [C]), q_proj: randBounded(rng, [C, C], 0.6), k_proj: randBounded(rng, [C, C], 0.6),
      v_proj: randBounded(rng, [C, C], 0.6), o_proj: randBounded(rng, [C, C], 0.6),
    });
    return {
      temporal: step(), spatial: step(), se_fc1: randBounded(rng, [Cr, C], 0.6), se_fc1_bias: randBounded(rng, [Cr], 0.6),
      se_fc2: randBounded(rng, [C, Cr], 0.6), se_fc2_bias: randBounded(rng, [C], 0.6),
    };
  };

  it("two frames: each frame's temporal update is W_o·W_v·RMSNorm of the other frame, whatever q and k", () => {
    // Without temporal_self a frame's one visible key is the other frame: its weight is 1 in every head.
    const [B, F, P, C] = [2, 2, 3, 4];
    for (const [H, eps] of [[1, 1e-6], [2, 0.5]] as const) {
      const config = { channels: C, num_heads: H, se_ratio: 2, rms_norm_eps: eps };
      const rng = new Random(7 + H);
      const w = weightsFor(rng, C, 2);
      const x = randBounded(rng, [B, F, P, C]);
      const got = temporalAttention(x, w, config);
      expect(got.shape).toEqual([B, F, P, C]);
      for (let b = 0; b < B; b++) for (let f = 0; f < F; f++) for (let p = 0; p < P; p++) {
        const row = (ff: number) => tensor([1, C], x.data.subarray(((b * F + ff) * P + p) * C, ((b * F + ff) * P + p + 1) * C));
        const update = ops.linear(ops.linear(ops.rmsnorm(row(1 - f), w.temporal.norm, eps), w.temporal.v_proj), w.temporal.o_proj);
        near(got.data.subarray(((b * F + f) * P + p) * C, ((b * F + f) * P + p + 1) * C), row(f).data.map((v, c) => v + update.data[c]!), 1e-5);
      }
    }
  });

  it("time and space are x + W_o·MHA(RMSNorm(x)) with H heads of C/H and scale 1/√(C/H); time hides the frame itself unless temporal_self", () => {
    // The same block assembled from the reference ops and attention(), one sequence at a time.
    const [B, F, P, C, H, eps] = [2, 3, 2, 4, 2, 0.25];
    const rng = new Random(13);
    const w = weightsFor(rng, C, 2);
    const x = randBounded(rng, [B, F, P, C]);
    const block = (rows: number[][], step: typeof w.temporal, mask?: { shape: number[]; data: Uint8Array }) => {
      const T = rows.length;
      const h = ops.rmsnorm(tensor([1, T, C], rows.flat()), step.norm, eps);
      const heads = (m: Tensor) => splitHeads(ops.linear(h, m), H, [C / H])[0]!;
      const out = attention(heads(step.q_proj), heads(step.k_proj), heads(step.v_proj), { scale: 1 / Math.sqrt(C / H), mask }).out;
      const update = ops.linear(mergeHeads(out), step.o_proj).data;
      return rows.map((r, t) => r.map((v, c) => v + update[t * C + c]!));
    };
    const token = (b: number, f: number, p: number) => [...x.data.subarray(((b * F + f) * P + p) * C, ((b * F + f) * P + p + 1) * C)];
    const others = { shape: [F, F], data: Uint8Array.from({ length: F * F }, (_, n) => (Math.floor(n / F) !== n % F ? 1 : 0)) };
    for (const self of [false, true]) {
      const config = { channels: C, num_heads: H, se_ratio: 2, rms_norm_eps: eps, temporal_self: self };
      const time = temporalAttention(x, w, config);
      for (let b = 0; b < B; b++) for (let p = 0; p < P; p++) {
        const want = block(Array.from({ length: F }, (_, f) => token(b, f, p)), w.temporal, self ? undefined : others);
        for (let f = 0; f < F; f++) near(time.data.subarray(((b * F + f) * P + p) * C, ((b * F + f) * P + p + 1) * C), want[f]!, 1e-5);
      }
    }
    const space = spatialAttention(x, w, { channels: C, num_heads: H, se_ratio: 2, rms_norm_eps: eps });
    for (let b = 0; b < B; b++) for (let f = 0; f < F; f++) {
      const want = block(Array.from({ length: P }, (_, p) => token(b, f, p)), w.spatial);
      near(space.data.subarray((b * F + f) * P * C, (b * F + f + 1) * P * C), want.flat(), 1e-5);
    }
  });

  it("squeezeExcite gates each frame by σ(W₂·ReLU(W₁·mean_p x + b₁) + b₂)", () => {
    const [B, F, P, C, Cr] = [2, 2, 3, 4, 2];
    const config = { channels: C, se_ratio: 2 };
    const rng = new Random(11);
    const w = weightsFor(rng, C, Cr);
    const x = randBounded(rng, [B, F, P, C]);
    const got = squeezeExcite(x, w, config);
    expect(got.shape).toEqual([B, F, P, C]);
    for (let frame = 0; frame < B * F; frame++) {
      const mean = Array.from({ length: C }, (_, c) => Array.from({ length: P }, (_, p) => x.data[(frame * P + p) * C + c]!).reduce((a, v) => a + v, 0) / P);
      const hidden = Array.from({ length: Cr }, (_, r) => Math.max(0, mean.reduce((a, m, c) => a + w.se_fc1.data[r * C + c]! * m, w.se_fc1_bias.data[r]!)));
      const gate = Array.from({ length: C }, (_, c) => sigmoid(hidden.reduce((a, h, r) => a + w.se_fc2.data[c * Cr + r]! * h, w.se_fc2_bias.data[c]!)));
      for (let p = 0; p < P; p++) for (let c = 0; c < C; c++) {
        const i = (frame * P + p) * C + c;
        expect(Math.abs(got.data[i]! - x.data[i]! * gate[c]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(x.data[i]!)));
      }
    }
  });

  it("checks the video and every weight, with the whole message", () => {
    const config = { channels: 4, se_ratio: 2 };
    const w = initVideoAttention(new Random(1), config);
    const video = tensor([2, 3, 4]);
    expect(thrown(() => spaceChannelTimeAttention(tensor([2, 4]), w, config))).toBe("video: expected shape [B, F, P, 4], got [2, 4]");
    expect(thrown(() => spaceChannelTimeAttention(tensor([1, 2, 3, 5]), w, config))).toBe("video: expected shape [B=1, F=2, P=3, 4], got [1, 2, 3, 5]");
    expect(thrown(() => spaceChannelTimeAttention(tensor([2, 3, 5]), w, config))).toBe("video: expected shape [F=2, P=3, 4], got [2, 3, 5]");
    expect(thrown(() => spaceChannelTimeAttention(video, null as never, config))).toBe("weights: expected the video attention weights, got null");
    expect(thrown(() => spaceChannelTimeAttention(video, 5 as never, config))).toBe("weights: expected the video attention weights, got 5");
    expect(thrown(() => spaceChannelTimeAttention(video, { ...w, temporal: 5 as never }, config))).toBe("weights.temporal: expected an attention step's weights, got 5");
    expect(thrown(() => spaceChannelTimeAttention(undefined as never, w, config))).toBe('video: expected a tensor of shape [B, F, P, 4], got "undefined"');
    expect(thrown(() => spaceChannelTimeAttention({} as never, w, config))).toBe('video: expected a tensor of shape [B, F, P, 4], got "object"');
    expect(thrown(() => spaceChannelTimeAttention(video, { ...w, temporal: undefined as never }, config))).toBe("weights.temporal: expected an attention step's weights, got undefined");
    expect(thrown(() => spaceChannelTimeAttention(video, { ...w, spatial: null as never }, config))).toBe("weights.spatial: expected an attention step's weights, got null");
    expect(thrown(() => spaceChannelTimeAttention(video, { ...w, temporal: { ...w.temporal, norm: tensor([3]) } }, config))).toBe("weights.temporal.norm: expected shape [4], got [3]");
    for (const name of ["q_proj", "k_proj", "v_proj", "o_proj"]) {
      expect(thrown(() => spaceChannelTimeAttention(video, { ...w, temporal: { ...w.temporal, [name]: tensor([4, 3]) } }, config))).toBe(`weights.temporal.${name}: expected shape [4, 4], got [4, 3]`);
    }
    const se: [string, number[], string][] = [["se_fc1", [4, 4], "[2, 4]"], ["se_fc1_bias", [4], "[2]"], ["se_fc2", [4, 4], "[4, 2]"], ["se_fc2_bias", [2], "[4]"]];
    for (const [name, bad, want] of se) {
      expect(thrown(() => spaceChannelTimeAttention(video, { ...w, [name]: tensor(bad) }, config))).toBe(`weights.${name}: expected shape ${want}, got [${bad.join(", ")}]`);
    }
    // Each step alone checks the same things.
    expect(thrown(() => squeezeExcite(video, { ...w, se_fc2_bias: tensor([2]) }, config))).toBe("weights.se_fc2_bias: expected shape [4], got [2]");
    expect(thrown(() => temporalAttention(video, w, { channels: 4, num_heads: 3 }))).toBe("config.num_heads: expected a divisor of channels 4, got 3");
  });
});
