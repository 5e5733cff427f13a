import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { attention } from "../src/attention/attention.ts";
import { concatTime, mergeHeads, splitHeads } from "../src/attention/heads.ts";
import { sliceTime } from "../src/attention/masked.ts";
import {
  absolutePositions, createSegmentedState, initSegmented, poolMemory, segmentedAttention, segmentedStateSize,
  type SegmentedConfig, type SegmentedWeights,
} from "../src/attention/segmented.ts";
import { blockLocal, causal, slidingWindow, type Mask } from "../src/masks.ts";
import { linear, softmax } from "../src/ops.ts";
import { Random, randBounded } from "../src/random.ts";
import { applyRope, ropeFrequencies } from "../src/rope.ts";
import { add, concatRows, sliceRows, type Tensor } from "../src/tensor.ts";
import { close } from "./helpers.ts";


/** Seeded weights large enough for peaked attention (std 1/√D), and inputs from randBounded. */
function setup(config: SegmentedConfig, seed: number, T: number, B = 1) {
  const rng = new Random(seed);
  const weights = initSegmented(rng, config, 1 / Math.sqrt(config.hidden_size));
  const x = randBounded(rng, [B, T, config.hidden_size]);
  return { weights, x };
}

/** An independent oracle: dense attention over the whole sequence under `mask`, no memory. */
function denseOracle(x: Tensor, w: SegmentedWeights, config: SegmentedConfig, mask: Mask): Tensor {
  const [B, T, D] = x.shape as [number, number, number];
  const H = config.num_attention_heads;
  const positions = Array.from({ length: T }, (_, t) => t);
  const input = add(x, absolutePositions(config, positions, w, B));
  const freqs = ropeFrequencies({ dim: D / H, theta: config.rope_theta ?? 10000 });
  const [q] = splitHeads(linear(input, w.q_proj), H, [D / H]);
  const [k] = splitHeads(linear(input, w.k_proj), H, [D / H]);
  const [v] = splitHeads(linear(input, w.v_proj), H, [D / H]);
  const out = attention(applyRope(q!, positions, freqs), applyRope(k!, positions, freqs), v!, { mask }).out;
  return linear(mergeHeads(out), w.o_proj);
}

const shapes = fc.record({
  seed: fc.nat(2 ** 31),
  T: fc.integer({ min: 1, max: 23 }),
  S: fc.integer({ min: 1, max: 9 }),
  W: fc.integer({ min: 0, max: 12 }),
  H: fc.constantFrom(1, 2),
});

describe("segmented attention equals the masks it is made of (M = 0)", () => {
  it("with S >= T it is full causal attention", () => {
    fc.assert(fc.property(shapes, ({ seed, T, H }) => {
      const config = { hidden_size: 8, num_attention_heads: H, segment_size: T + (seed % 3), segment_overlap: seed % 4 };
      const { weights, x } = setup(config, seed, T);
      close(segmentedAttention(x, weights, config), denseOracle(x, weights, config, causal(T)));
    }), { numRuns: 25 });
  });

  it("is the block-local mask attention of masks.ts", () => {
    fc.assert(fc.property(shapes, ({ seed, T, S, W, H }) => {
      const config = { hidden_size: 8, num_attention_heads: H, segment_size: S, segment_overlap: W };
      const { weights, x } = setup(config, seed, T, 2);
      close(segmentedAttention(x, weights, config), denseOracle(x, weights, config, blockLocal(T, S, W)));
    }), { numRuns: 25 });
  });

  it("with S = 1 is a sliding window of W + 1 keys", () => {
    fc.assert(fc.property(shapes, ({ seed, T, W, H }) => {
      const config = { hidden_size: 8, num_attention_heads: H, segment_size: 1, segment_overlap: W };
      const { weights, x } = setup(config, seed, T);
      close(segmentedAttention(x, weights, config), denseOracle(x, weights, config, slidingWindow(T, W + 1)));
    }), { numRuns: 25 });
  });
});

describe("compressed memory", () => {
  it("pools softmax(P·Zᵀ/√D)·Z over the previous memory and segment", () => {
    const rng = new Random(3);
    const [M, n, D] = [3, 5, 6];
    const memory = randBounded(rng, [1, M, D]);
    const inputs = randBounded(rng, [1, n, D]);
    const P = randBounded(rng, [M, D]);
    const Z = concatRows([{ shape: [M, D], data: memory.data }, { shape: [n, D], data: inputs.data }]);
    const scores = linear(P, Z);
    const expected = linear(softmax({ shape: scores.shape, data: scores.data.map((s) => s / Math.sqrt(D)) }), transpose(Z));
    close({ shape: [M, D], data: poolMemory(memory, inputs, P).data }, expected);
  });

  it("matches an oracle that pools every segment and attends to [mem_s; block-local tokens]", () => {
    fc.assert(fc.property(shapes, fc.integer({ min: 1, max: 3 }), ({ seed, T, S, W, H }, M) => {
      const config = { hidden_size: 8, num_attention_heads: H, segment_size: S, segment_overlap: W, memory_slots: M };
      const { weights, x } = setup(config, seed, T);
      close(segmentedAttention(x, weights, config), memoryOracle(x, weights, config));
    }), { numRuns: 25 });
  });

  it("changes the output of later segments, not of the first", () => {
    const config = { hidden_size: 8, num_attention_heads: 2, segment_size: 4, segment_overlap: 2, memory_slots: 2 };
    const { weights, x } = setup(config, 11, 12);
    const withMemory = segmentedAttention(x, weights, config);
    const other = { ...weights, memory_queries: randBounded(new Random(12), [2, 8]) };
    const changed = segmentedAttention(x, other, config);
    expect(changed.data.subarray(0, 4 * 8)).toEqual(withMemory.data.subarray(0, 4 * 8)); // segment 0 sees mem_0 only
    expect(changed.data.subarray(4 * 8)).not.toEqual(withMemory.data.subarray(4 * 8));
  });
});

describe("decoding through the state", () => {
  it("prefill in one call equals any split into chunks, token by token included", () => {
    fc.assert(fc.property(shapes, fc.integer({ min: 0, max: 2 }), fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 8 }),
      ({ seed, T, S, W, H }, M, chunks) => {
        const config = { hidden_size: 8, num_attention_heads: H, segment_size: S, segment_overlap: W, memory_slots: M };
        const { weights, x } = setup(config, seed, T, 2);
        const whole = segmentedAttention(x, weights, config);
        const state = createSegmentedState(config, 2);
        const parts: Tensor[] = [];
        let at = 0;
        for (let i = 0; at < T; i++) {
          const n = Math.min(T - at, chunks.length > 0 ? chunks[i % chunks.length]! : 1);
          parts.push(segmentedAttention(sliceTime(x, at, at + n), weights, config, state));
          at += n;
        }
        expect(state.position).toBe(T);
        expect(state.keys.shape[2]).toBeLessThanOrEqual(S + W);
        close(parts.reduce((a, p) => concatTime(a, p)), whole, 1e-6, 1e-7);
      }), { numRuns: 30 });
  });

  it("is causal: changing a later token changes no earlier output", () => {
    fc.assert(fc.property(shapes, fc.integer({ min: 0, max: 2 }), ({ seed, T, S, W, H }, M) => {
      const config = { hidden_size: 8, num_attention_heads: H, segment_size: S, segment_overlap: W, memory_slots: M };
      const { weights, x } = setup(config, seed, T);
      const changedAt = seed % T;
      const y = { shape: x.shape, data: x.data.slice() };
      for (let i = 0; i < 8; i++) y.data[changedAt * 8 + i] = -2 * y.data[changedAt * 8 + i]! + 0.5;
      const [a, b] = [segmentedAttention(x, weights, config), segmentedAttention(y, weights, config)];
      expect(b.data.subarray(0, changedAt * 8)).toEqual(a.data.subarray(0, changedAt * 8));
    }), { numRuns: 25 });
  });

  it("accepts [T, D] as one batch row, and an empty chunk", () => {
    const config = { hidden_size: 8, num_attention_heads: 2, segment_size: 3, segment_overlap: 1, memory_slots: 1 };
    const { weights, x } = setup(config, 5, 7);
    const flat = segmentedAttention({ shape: [7, 8], data: x.data }, weights, config);
    expect(flat.shape).toEqual([7, 8]);
    expect(flat.data).toEqual(segmentedAttention(x, weights, config).data);
    const state = createSegmentedState(config, 2);
    expect(segmentedAttention({ shape: [2, 0, 8], data: new Float32Array(0) }, weights, config, state).shape).toEqual([2, 0, 8]);
    expect(state.position).toBe(0);
  });

  it("uses a learned absolute embedding when asked, and refuses positions beyond its table", () => {
    const config = { hidden_size: 8, num_attention_heads: 2, segment_size: 4, absolute_position: "learned" as const, max_position_embeddings: 6 };
    const { weights, x } = setup(config, 6, 6);
    expect(weights.pos_embed?.shape).toEqual([6, 8]);
    close(segmentedAttention(x, weights, config), denseOracle(x, weights, config, blockLocal(6, 4, 2)));
    const state = createSegmentedState(config);
    segmentedAttention(sliceTime(x, 0, 5), weights, config, state);
    expect(() => segmentedAttention(sliceTime(x, 0, 2), weights, config, state)).toThrow(/max_position_embeddings=6/);
  });
});

describe("grouped-query attention", () => {
  /** The same layer as plain multi-head attention: each k_proj / v_proj head's rows repeated for its query group. */
  function repeatKvHeads(w: SegmentedWeights, H: number, Hkv: number, Dh: number): SegmentedWeights {
    const repeat = (t: Tensor) => concatRows(Array.from({ length: H }, (_, h) => {
      const g = Math.floor(h / (H / Hkv));
      return sliceRows(t, g * Dh, (g + 1) * Dh);
    }));
    return { ...w, k_proj: repeat(w.k_proj), v_proj: repeat(w.v_proj) };
  }

  it("equals multi-head attention with every kv head repeated for its group, through the state and with memory", () => {
    fc.assert(fc.property(shapes, fc.integer({ min: 0, max: 2 }), fc.constantFrom([4, 1], [4, 2], [2, 1]), ({ seed, T, S, W }, M, [H, Hkv]) => {
      const config = { hidden_size: 16, num_attention_heads: H!, num_key_value_heads: Hkv!, segment_size: S, segment_overlap: W, memory_slots: M };
      const { weights, x } = setup(config, seed, T, 2);
      expect(weights.k_proj.shape).toEqual([Hkv! * (16 / H!), 16]);
      const asMha = { ...config, num_key_value_heads: H! };
      const expected = segmentedAttention(x, repeatKvHeads(weights, H!, Hkv!, 16 / H!), asMha);
      const state = createSegmentedState(config, 2);
      const parts = Array.from({ length: T }, (_, t) => segmentedAttention(sliceTime(x, t, t + 1), weights, config, state));
      expect(state.keys.shape[1]).toBe(Hkv);
      close(parts.reduce((a, p) => concatTime(a, p)), expected, 1e-6, 1e-7);
    }), { numRuns: 20 });
  });

  it("holds Hkv heads' keys and values in its state: H / Hkv times less", () => {
    const mha = { hidden_size: 128, num_attention_heads: 4, segment_size: 512, segment_overlap: 256 };
    const gqa = { ...mha, num_key_value_heads: 1 };
    expect(segmentedStateSize(gqa, 16384).keysValues).toBe(segmentedStateSize(mha, 16384).keysValues / 4);
  });
});

describe("state size", () => {
  it("is O(S + W + M): S = 512, W = 256, M = 16 holds 768 tokens at most", () => {
    const config = { hidden_size: 128, num_attention_heads: 4, segment_size: 512, segment_overlap: 256, memory_slots: 16 };
    const at16k = segmentedStateSize(config, 16384);
    expect(at16k.cachedTokens).toBe(768);
    expect(at16k.keysValues).toBe(768 * 2 * 128);
    expect(at16k.total).toBe(768 * 256 + 16 * 128 + 512 * 128);
    expect(at16k.perToken).toBe(at16k.total / 16384);
    expect(segmentedStateSize(config, 1000).cachedTokens).toBe(999 - 256 + 1); // position 1023 is never reached
    expect(segmentedStateSize(config, 100).cachedTokens).toBe(100);
    expect(segmentedStateSize(config, 0).total).toBe(0);
  });

  it("matches what the state really holds at its peak", () => {
    const config = { hidden_size: 8, num_attention_heads: 2, segment_size: 4, segment_overlap: 3, memory_slots: 2 };
    const { weights, x } = setup(config, 9, 14);
    const state = createSegmentedState(config);
    let peak = 0;
    for (let t = 0; t < 14; t++) {
      segmentedAttention(sliceTime(x, t, t + 1), weights, config, state);
      peak = Math.max(peak, state.keys.data.length + state.values.data.length + state.memory!.data.length + state.segmentInputs.data.length);
    }
    expect(segmentedStateSize(config, 14).total).toBe(peak);
  });
});

describe("bad hyper-parameters name the argument", () => {
  const base = { hidden_size: 8, num_attention_heads: 2 };
  const w = initSegmented(new Random(1), base);
  const x = randBounded(new Random(2), [1, 3, 8]);
  it.each([
    [{ segment_size: 0 }, /segment_size: expected an integer >= 1, got 0/],
    [{ segment_overlap: -1 }, /segment_overlap: expected an integer >= 0, got -1/],
    [{ memory_slots: 1.5 }, /memory_slots: expected an integer >= 0, got 1.5/],
    [{ num_attention_heads: 3 }, /num_attention_heads: expected a divisor of hidden_size=8, got 3/],
    [{ num_attention_heads: 8 }, /num_attention_heads: .*even/],
    [{ num_key_value_heads: 3 }, /num_key_value_heads: expected a divisor of num_attention_heads=2, got 3/],
    [{ num_key_value_heads: 0 }, /num_key_value_heads: expected an integer >= 1, got 0/],
    [{ absolute_position: "alibi" as never }, /absolute_position: expected one of/],
    [{ absolute_position: "learned" as const }, /max_position_embeddings: expected an integer >= 1, got 0/],
  ])("%j", (change, message) => {
    expect(() => segmentedAttention(x, w, { ...base, ...change })).toThrow(message);
  });
  it("missing memory weights and a wrong input width", () => {
    expect(() => segmentedAttention(x, w, { ...base, memory_slots: 2 })).toThrow(/memory: expected a tensor of shape \[2, 8\]/);
    expect(() => segmentedAttention(x, w, { ...base, num_key_value_heads: 1 })).toThrow("k_proj: expected shape [4, 8], got [8, 8]");
    expect(() => segmentedAttention(randBounded(new Random(2), [1, 3, 4]), w, base)).toThrow(/x: expected shape \[B=1, T=3, 8\], got "?\[1, 3, 4\]"?/);
  });
});

// ── the oracle with memory ──

function memoryOracle(x: Tensor, w: SegmentedWeights, config: Required<Pick<SegmentedConfig, "segment_size" | "segment_overlap" | "memory_slots">> & SegmentedConfig): Tensor {
  const [, T, D] = x.shape as [number, number, number];
  const { segment_size: S, segment_overlap: W, memory_slots: M, num_attention_heads: H } = config;
  const positions = Array.from({ length: T }, (_, t) => t);
  const input = sliceRows({ shape: [T, D], data: add(x, absolutePositions(config, positions)).data }, 0, T);
  const freqs = ropeFrequencies({ dim: D / H });
  const heads = (t: Tensor, rows: number) => splitHeads({ shape: [1, rows, D], data: t.data }, H, [D / H])[0]!;
  const q = applyRope(heads(linear(input, w.q_proj), T), positions, freqs);
  const k = applyRope(heads(linear(input, w.k_proj), T), positions, freqs);
  const v = heads(linear(input, w.v_proj), T);
  let memory: Tensor = w.memory!;
  const rows: Tensor[] = [];
  for (let s = 0; s * S < T; s++) {
    if (s > 0) {
      const Z = concatRows([memory, sliceRows(input, (s - 1) * S, s * S)]);
      const scores = linear(w.memory_queries!, Z);
      memory = linear(softmax({ shape: scores.shape, data: scores.data.map((v) => v / Math.sqrt(D)) }), transpose(Z));
    }
    const mk = heads(linear(memory, w.k_proj), M);
    const mv = heads(linear(memory, w.v_proj), M);
    const end = Math.min(T, (s + 1) * S);
    // keys [memory; all tokens], mask: memory visible, tokens by blockLocal, for this segment's query rows
    const local = blockLocal(T, S, W);
    const mask = new Uint8Array((end - s * S) * (M + T));
    for (let i = s * S; i < end; i++) {
      for (let j = 0; j < M + T; j++) mask[(i - s * S) * (M + T) + j] = j < M ? 1 : local.data[i * T + j - M]!;
    }
    const qs = { shape: [1, H, end - s * S, D / H], data: sliceTime({ shape: [H, T, D / H], data: q.data }, s * S, end).data };
    const keys = concatTime({ shape: [H, M, D / H], data: mk.data }, { shape: [H, T, D / H], data: k.data });
    const values = concatTime({ shape: [H, M, D / H], data: mv.data }, { shape: [H, T, D / H], data: v.data });
    const out = attention(qs, { shape: [1, H, M + T, D / H], data: keys.data }, { shape: [1, H, M + T, D / H], data: values.data },
      { mask: { shape: [end - s * S, M + T], data: mask } }).out;
    rows.push(mergeHeads(out));
  }
  return linear(rows.reduce((a, r) => concatTime(a, r)), w.o_proj);
}

function transpose(t: Tensor): Tensor {
  const [R, C] = t.shape as [number, number];
  const data = new Float32Array(R * C);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) data[c * R + r] = t.data[r * C + c]!;
  return { shape: [C, R], data };
}
