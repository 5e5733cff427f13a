// Cases that kill mutants the attention suites let live (test/README.md, mutation testing) in the attention modules
// whose steps the one forward also runs on the host (src/attention/segmented.ts, sparse.ts, sparse-select.ts), in DSA
// (dsa.ts), in MLA's joined-keys cache (src/attention/mla.ts) and in the hooked host kernels of src/model/layers.ts.
import { describe, expect, it } from "vitest";
import { sliceTime } from "../src/attention/masked.ts";
import { checkDsaConfig, createDsaCache, dsa, indexerScores, initDsa, selectedKeysAttend, topKeys, type DsaConfig, type DsaWeights } from "../src/attention/dsa.ts";
import { createMlaCache, initMla, mla, type MlaCache, type MlaConfig } from "../src/attention/mla.ts";
import {
  absolutePositions, checkSegmentedWeights, createSegmentedState, initSegmented, poolMemory, segmentedAttention, segmentedStateSize,
  type SegmentedConfig, type SegmentedWeights,
} from "../src/attention/segmented.ts";
import {
  checkSparseWeights, createSparseState, groupSelection, initSparse, sparseAttention, sparseAttentionTraced, sparseStateSize, type SparseConfig,
} from "../src/attention/sparse.ts";
import { checkNsaBlocks, paperAccessCount, selectBlocks, selectionMargin, selectionScores, TINY_BLOCKS } from "../src/attention/sparse-select.ts";
import { reference, type Kernels } from "../src/kernels.ts";
import type { HookedWeight } from "../src/model-adapters.ts";
import { segmentedConfig } from "../src/model/attention.ts";
import { forward } from "../src/model/forward.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { quantizeModel } from "../src/quant/model.ts";
import { Random, randBounded } from "../src/random.ts";
import { numel, tensor, type Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { relativeError, thrown } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const copy = (t: Tensor): Tensor => ({ shape: [...t.shape], data: t.data.slice() });
const rowsOf = (t: Tensor, width: number) => Array.from({ length: t.data.length / width }, (_, r) => [...t.data.subarray(r * width, (r + 1) * width)]);

describe("segmented attention: absolute positions, worked by hand", () => {
  const base: SegmentedConfig = { hidden_size: 8, num_attention_heads: 2, segment_size: 4 };

  it("sinusoidal: sin(p / 10000^(2i/D)) at feature 2i, cos at 2i + 1, the same for every batch row", () => {
    // D = 8: the four pairs turn at p, p/10, p/100, p/1000
    const row = (p: number) => [1, 10, 100, 1000].flatMap((f) => [Math.sin(p / f), Math.cos(p / f)]);
    const got = rowsOf(absolutePositions(base, [0, 1, 7], undefined, 2), 8);
    expect(got).toHaveLength(6);
    [0, 1, 7, 0, 1, 7].forEach((p, r) => got[r]!.forEach((v, i) => expect(v).toBeCloseTo(row(p)[i]!, 6)));
  });

  it("learned: rows of pos_embed; none: zeros", () => {
    const config = { ...base, absolute_position: "learned" as const, max_position_embeddings: 3 };
    const table = tensor([3, 8], Float32Array.from({ length: 24 }, (_, i) => i + 1));
    expect(rowsOf(absolutePositions(config, [2, 0], { pos_embed: table }, 2), 8))
      .toEqual([2, 0, 2, 0].map((p) => Array.from({ length: 8 }, (_, i) => p * 8 + i + 1)));
    expect([...absolutePositions({ ...base, absolute_position: "none" }, [0, 3]).data]).toEqual(new Array(16).fill(0));
  });

  it("refuses positions it has no embedding for, naming them", () => {
    const config = { ...base, absolute_position: "learned" as const, max_position_embeddings: 3 };
    const pos_embed = tensor([3, 8]);
    expect(thrown(() => absolutePositions(config, [0, 3], { pos_embed }))).toBe("positions[1]: expected < max_position_embeddings=3, got 3");
    expect(thrown(() => absolutePositions(base, [0, -1]))).toBe("positions[1]: expected an integer >= 0, got -1");
    expect(thrown(() => absolutePositions(config, [0]))).toBe('pos_embed: expected a tensor of shape [3, 8], got "undefined"');
    expect(thrown(() => absolutePositions(config, [0], {}))).toBe('pos_embed: expected a tensor of shape [3, 8], got "undefined"');
  });

  it("a learned layer refuses a chunk that runs past its table, with the count it would reach", () => {
    const config = { ...base, absolute_position: "learned" as const, max_position_embeddings: 6 };
    const weights = initSegmented(new Random(2), config);
    const state = createSegmentedState(config);
    segmentedAttention(randBounded(new Random(3), [1, 5, 8]), weights, config, state);
    expect(thrown(() => segmentedAttention(randBounded(new Random(4), [1, 2, 8]), weights, config, state)))
      .toBe("x: expected at most max_position_embeddings=6 positions in all, got 7");
    expect(state.position).toBe(5);
  });
});

describe("segmented attention: weights, state and size", () => {
  const base: SegmentedConfig = { hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1, segment_size: 4, segment_overlap: 1, memory_slots: 2 };

  it("init draws memory weights only with memory slots, and pos_embed only when learned", () => {
    const names = (c: SegmentedConfig) => Object.keys(initSegmented(new Random(1), c));
    expect(names({ ...base, memory_slots: 0 })).toEqual(["q_proj", "k_proj", "v_proj", "o_proj"]);
    expect(names(base)).toEqual(["q_proj", "k_proj", "v_proj", "o_proj", "memory", "memory_queries"]);
    expect(names({ ...base, memory_slots: 0, absolute_position: "learned", max_position_embeddings: 5 })).toEqual(["q_proj", "k_proj", "v_proj", "o_proj", "pos_embed"]);
  });

  it("names what is wrong with the weights, the config and the state", () => {
    const w = initSegmented(new Random(1), base);
    expect(thrown(() => checkSegmentedWeights({ ...w, memory_queries: undefined }, base))).toBe('memory_queries: expected a tensor of shape [2, 8], got "undefined"');
    expect(thrown(() => checkSegmentedWeights(w, { ...base, absolute_position: "learned", max_position_embeddings: 5 })))
      .toBe('pos_embed: expected a tensor of shape [5, 8], got "undefined"');
    expect(thrown(() => segmentedAttention(tensor([1, 1, 8]), w, { ...base, rope_theta: 0.5 }))).toBe("rope_theta: expected a finite number in [1, Infinity], got 0.5");
    expect(thrown(() => createSegmentedState(base, 0))).toBe("batch: expected an integer >= 1, got 0");
    const x = tensor([1, 1, 8]);
    const bad = (change: Record<string, unknown>) => thrown(() => segmentedAttention(x, w, base, { ...createSegmentedState(base), ...change }));
    expect(bad({ position: -1 })).toBe("state.position: expected an integer >= 0, got -1");
    expect(bad({ keys: tensor([1, 2, 0, 4]) })).toBe("state.keys: expected shape [1, 1, n, 4], got [1, 2, 0, 4]");
    expect(bad({ values: tensor([1, 1, 1, 4]) })).toBe("state.values: expected shape [1, 1, 0, 4], got [1, 1, 1, 4]");
    expect(bad({ memory: tensor([1, 3, 8]) })).toBe("state.memory: expected shape [1, 2, 8], got [1, 3, 8]");
    expect(bad({ segmentInputs: tensor([1, 0, 4]) })).toBe("state.segmentInputs: expected shape [1, n=0, 8], got [1, 0, 4]");
  });

  it("poolMemory names a mis-shaped argument", () => {
    const [memory, inputs, queries] = [tensor([1, 2, 4]), tensor([1, 3, 4]), tensor([2, 4])];
    expect(thrown(() => poolMemory(tensor([2, 4]), inputs, queries))).toBe("memory: expected shape [B, M, D], got [2, 4]");
    expect(thrown(() => poolMemory(memory, tensor([1, 3, 5]), queries))).toBe("inputs: expected shape [1, n=3, 4], got [1, 3, 5]");
    expect(thrown(() => poolMemory(memory, inputs, tensor([3, 4])))).toBe("memory_queries: expected shape [2, 4], got [3, 4]");
  });

  it("each batch row with memory is that row alone (every row gets mem_0)", () => {
    const rng = new Random(5);
    const weights = initSegmented(rng, base, 0.5);
    const x = randBounded(rng, [2, 9, 8]);
    const both = segmentedAttention(x, weights, base);
    for (let b = 0; b < 2; b++) {
      const alone = segmentedAttention(tensor([1, 9, 8], x.data.slice(b * 72, (b + 1) * 72)), weights, base);
      expect(relativeError(both.data.subarray(b * 72, (b + 1) * 72), alone.data)).toBeLessThan(1e-6);
    }
  });

  it("state size: the window never counts a position not yet reached; no inputs kept without memory; 0 per token at T = 0", () => {
    const config = { ...base, segment_overlap: 0 };
    expect(segmentedStateSize(config, 3).cachedTokens).toBe(3); // positions 0, 1, 2 of a segment of 4
    expect(segmentedStateSize(config, 4).cachedTokens).toBe(4);
    expect(segmentedStateSize({ ...config, memory_slots: 0 }, 10)).toMatchObject({ segmentInputs: 0, memory: 0, total: 2 * 4 * 4 });
    expect(segmentedStateSize(config, 0)).toEqual({ keysValues: 0, memory: 0, segmentInputs: 0, total: 0, perToken: 0, cachedTokens: 0 });
    expect(thrown(() => segmentedStateSize(config, -1))).toBe("T: expected an integer >= 0, got -1");
  });
});

describe("NSA's block bookkeeping, worked by hand", () => {
  const b = { ...TINY_BLOCKS, selectCount: 4 }; // l = 8, d = 4, l' = 8, n = 4

  it("selection margin: the weakest block chosen by score minus the strongest left out", () => {
    // query 47: blocks 0 … 5, with 0, 4 and 5 forced; 1, 2, 3 compete for one place: 2 (0.3) beats 3 (0.2) and 1 (0.1)
    const pSlc = [0, 0.1, 0.3, 0.2, 0.9, 0.9];
    const chosen = selectBlocks(pSlc, 47, b);
    expect(chosen).toEqual([0, 2, 4, 5]);
    expect(selectionMargin(pSlc, chosen, 47, b)).toBeCloseTo(0.1, 12);
    expect(selectionMargin([0, 0.5, 0.1, 0.4, 0, 0], [0, 1, 4, 5], 47, b)).toBeCloseTo(0.1, 12); // 0.5 - 0.4
    // n = 5: two chosen by score, 1 (0.5) and 3 (0.4); the weaker of them against 2 (0.2)
    const five = [0, 0.5, 0.2, 0.4, 0.9, 0.9];
    expect(selectBlocks(five, 47, { ...b, selectCount: 5 })).toEqual([0, 1, 3, 4, 5]);
    expect(selectionMargin(five, [0, 1, 3, 4, 5], 47, { ...b, selectCount: 5 })).toBeCloseTo(0.2, 12);
    // Infinity: every block taken (at most n exist), nothing chosen by score (n = 3), or a tie of exact zeros
    expect(selectionMargin([1, 1, 1, 1], [0, 1, 2, 3], 31, b)).toBe(Infinity);
    expect(selectionMargin(five, [0, 1, 4, 5], 47, { ...b, selectCount: 6 })).toBe(Infinity); // 6 blocks, n = 6: none by score
    expect(selectionMargin(pSlc, [0, 4, 5], 47, { ...b, selectCount: 3 })).toBe(Infinity);
    expect(selectionMargin([1, 0, 0, 0, 1, 1], [0, 1, 4, 5], 47, b)).toBe(Infinity);
    // a positive block chosen against zeros left out (blocks no visible compressed block covers) is a real margin
    expect(selectionMargin([1, 0.5, 0, 0, 1, 1], [0, 1, 4, 5], 47, b)).toBe(0.5);
    // a zero chosen against a positive left out is a real (negative) margin, not Infinity
    expect(selectionMargin([1, 0, 0, 0.25, 1, 1], [0, 1, 4, 5], 47, b)).toBe(-0.25);
  });

  it("refuses bad arguments with their whole message", () => {
    expect(thrown(() => selectBlocks([1, 1, 1, 1, 1], 47, b))).toBe("pSlc: expected a score for each of the 6 blocks of query 47, got 5");
    expect(thrown(() => selectBlocks([1], -1, b))).toBe("t: expected an integer >= 0, got -1");
    expect(thrown(() => selectionScores([1], -1, b))).toBe("nSelect: expected an integer >= 0, got -1");
    expect(thrown(() => paperAccessCount(-1, b))).toBe("s: expected an integer >= 0, got -1");
    expect(thrown(() => checkNsaBlocks({ ...b, block: 0 }))).toBe("sparse_block: expected an integer >= 1, got 0");
    expect(thrown(() => checkNsaBlocks({ ...b, selectBlock: 0 }))).toBe("sparse_select_block: expected an integer >= 1, got 0");
  });
});

describe("NSA (sparse attention): messages, state, margin and the tensors it hands the kernels", () => {
  const base: SparseConfig = {
    hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 2, sparse_block: 2, sparse_stride: 1, sparse_select_block: 2,
    sparse_select_count: 3, sparse_window: 2,
  };
  const rng = new Random(8);
  const weights = initSparse(rng, base, 0.5);
  const x = randBounded(rng, [2, 11, 8]);

  it("each bad config, weight and state gets its whole message", () => {
    expect(thrown(() => sparseAttention(x, weights, { ...base, num_key_value_heads: -1 }))).toBe("num_key_value_heads: expected an integer >= 1, got -1");
    expect(thrown(() => sparseAttention(x, weights, { ...base, sparse_shared_kv: "yes" as never }))).toBe('sparse_shared_kv: expected true or false, got "yes"');
    expect(thrown(() => sparseAttention(x, weights, { ...base, rope_theta: 0 }))).toBe("rope_theta: expected a finite number in [1, Infinity], got 0");
    const w = (name: string) => thrown(() => checkSparseWeights({ ...weights, [name]: tensor([1, 1]) }, base));
    expect(w("q_proj")).toBe("q_proj: expected shape [8, 8], got [1, 1]");
    expect(w("compress_k")).toBe("compress_k: expected shape [4, 8], got [1, 1]");
    expect(w("compress_k_pos")).toBe("compress_k_pos: expected shape [2, 4], got [1, 1]");
    expect(w("compress_v")).toBe("compress_v: expected shape [4, 8], got [1, 1]");
    expect(w("compress_v_pos")).toBe("compress_v_pos: expected shape [2, 4], got [1, 1]");
    expect(w("gate_proj")).toBe("gate_proj: expected shape [6, 8], got [1, 1]");
    expect(w("o_proj")).toBe("o_proj: expected shape [8, 8], got [1, 1]");
    expect(thrown(() => createSparseState(base, 0))).toBe("batch: expected an integer >= 1, got 0");
    expect(thrown(() => sparseStateSize(base, -1))).toBe("T: expected an integer >= 0, got -1");
    const bad = (change: Record<string, unknown>) => thrown(() => sparseAttention(x, weights, base, { ...createSparseState(base, 2), ...change }));
    expect(bad({ position: -1 })).toBe("state.position: expected an integer >= 0, got -1");
    expect(bad({ compressedKeys: tensor([2, 2, 1, 4]) })).toBe("state.compressedKeys: expected shape [2, 2, 0, 4], got [2, 2, 1, 4]");
    expect(bad({ windowValues: tensor([2, 2, 1, 4]) })).toBe("state.windowValues: expected shape [2, 2, 0, 4], got [2, 2, 1, 4]");
    expect(thrown(() => groupSelection(tensor([1, 2, 1, 1]), [0], 3, TINY_BLOCKS))).toBe("Hkv: expected a divisor of H=2, got 3");
    expect(thrown(() => groupSelection(tensor([2, 1]), [0], 1, TINY_BLOCKS))).toBe("cmpProbs: expected shape [B, H, 1, NB], got [2, 1]");
  });

  it("holds nothing per token at T = 0", () => {
    expect(sparseStateSize(base, 0)).toEqual({ selected: 0, compressed: 0, pending: 0, window: 0, total: 0, perToken: 0 });
  });

  it("an empty chunk after finished blocks changes neither the state nor what follows", () => {
    const whole = sparseAttention(x, weights, base);
    const state = createSparseState(base, 2);
    const first = sparseAttention(sliceTime(x, 0, 6), weights, base, state);
    const held = state.compressedKeys.shape[2];
    expect(held).toBe(5); // blocks [i, i + 2) for i = 0 … 4 lie in positions 0 … 5
    expect(sparseAttention(tensor([2, 0, 8]), weights, base, state).shape).toEqual([2, 0, 8]);
    expect([state.position, state.compressedKeys.shape[2]]).toEqual([6, held]);
    const rest = sparseAttention(sliceTime(x, 6, 11), weights, base, state);
    for (let b = 0; b < 2; b++) {
      const row = (t: Tensor, from: number, n: number) => [...t.data.subarray((b * 11 + from) * 8, (b * 11 + from + n) * 8)];
      const joined = [...first.data.subarray(b * 48, (b + 1) * 48), ...rest.data.subarray(b * 40, (b + 1) * 40)];
      expect(relativeError(joined, row(whole, 0, 11))).toBeLessThan(1e-6);
    }
  });

  it("hands every kernel well-formed tensors (data as long as the shape says), and computes the reference's result", () => {
    const checked = (t: Tensor) => {
      expect(t.data.length, `[${t.shape.join(", ")}]`).toBe(numel(t.shape));
      return t;
    };
    const kernels: Kernels = {
      ...reference,
      linear: (a, w) => checked(reference.linear(checked(a), checked(w))),
      attention: (q, k, v, o) => reference.attention(checked(q), checked(k), checked(v), o),
    };
    const state = createSparseState(base, 2);
    const parts = [sparseAttention(sliceTime(x, 0, 7), weights, base, state, kernels), sparseAttention(sliceTime(x, 7, 11), weights, base, state, kernels)];
    expect(parts.map((p) => p.shape)).toEqual([[2, 7, 8], [2, 4, 8]]);
    const whole = sparseAttention(x, weights, base);
    expect(relativeError([...parts[0]!.data.subarray(0, 56), ...parts[1]!.data.subarray(0, 32)], whole.data.subarray(0, 88))).toBeLessThan(1e-6);
  });

  it("reports the smallest selection margin of any query: Infinity while no query chooses by score, then never growing", () => {
    const config = { ...base, num_key_value_heads: 1, sparse_block: 1, sparse_select_block: 1, sparse_select_count: 4 };
    const w = initSparse(new Random(9), config, 0.5);
    const y = randBounded(new Random(10), [1, 12, 8]);
    const margins = Array.from({ length: 12 }, (_, T) => sparseAttentionTraced(sliceTime(y, 0, T + 1), w, config).trace.selectionMargin);
    expect(margins.slice(0, 4)).toEqual([Infinity, Infinity, Infinity, Infinity]); // at most 4 blocks: all of them
    expect(Number.isFinite(margins[11]!)).toBe(true);
    margins.forEach((m, T) => expect(m).toBeLessThanOrEqual(margins[Math.max(0, T - 1)]!));
  });
});

describe("DSA, worked by hand and its messages", () => {
  // dr = d_I = 4, one indexer head, q_lora_rank 0 (q^I = W^I_q·x), x_t = (1, 0): q^I is wq_b's first column, and with
  // wk = 0 the LayerNorm leaves k^I = its bias. w = 1 / sqrt(1 · 4) = 0.5. Rotary in half-split pairs (i, i + 2)
  // with ω = 1, 0.01: rot_t(q)·rot_s(k) = cos θ·(q_x k_x + q_y k_y) + sin θ·(q_y k_x - q_x k_y) per pair, θ = (s - t)·ω.
  const base: DsaConfig = {
    hidden_size: 2, num_attention_heads: 1, q_lora_rank: 0, kv_lora_rank: 2, qk_nope_head_dim: 1, qk_rope_head_dim: 4,
    v_head_dim: 1, max_position_embeddings: 8, index_n_heads: 1, index_head_dim: 4, index_topk: 2,
  };
  const withIndexer = (q: number[], k: number[]): DsaWeights => ({
    ...initDsa(new Random(1), base),
    indexer: {
      wq_b: tensor([4, 2], q.flatMap((v) => [v, 0])), wk: tensor([4, 2]), k_norm: tensor([4], [1, 1, 1, 1]),
      k_norm_bias: tensor([4], k), weights_proj: tensor([1, 2], [1, 0]),
    },
  });
  const x = tensor([1, 4, 2], [1, 0, 1, 0, 1, 0, 1, 0]);
  const scoresOf = (q: number[], k: number[]) => indexerScores(x, withIndexer(q, k), base, createDsaCache(base)).data;

  it("the indexer pairs feature i with i + dr/2 (ω_1 = 0.01), and rotates q and k alike", () => {
    // Feature 1 pairs with 3 at ω = 0.01: I(t, s) = 0.5·cos(0.01·(t - s)) (with adjacent pairs it would be cos(t - s)).
    const cosine = scoresOf([0, 1, 0, 0], [0, 1, 0, 0]);
    // q = (0, 1) and k = (0, 0, 0, 1) in pair 1: I = 0.5·ReLU(-sin(0.01·(s - t))) = 0.5·sin(0.01·(t - s)) for s <= t.
    const sine = scoresOf([0, 1, 0, 0], [0, 0, 0, 1]);
    for (let t = 0; t < 4; t++) {
      for (let s = 0; s < 4; s++) {
        if (s > t) {
          expect([cosine[t * 4 + s], sine[t * 4 + s]]).toEqual([-Infinity, -Infinity]);
          continue;
        }
        expect(cosine[t * 4 + s]).toBeCloseTo(0.5 * Math.cos(0.01 * (t - s)), 6);
        expect(sine[t * 4 + s]).toBeCloseTo(0.5 * Math.sin(0.01 * (t - s)), 6);
      }
    }
    // Pair 0 turns at ω = 1: a negative dot product is cut by the ReLU (cos 2 < 0).
    const fast = scoresOf([1, 0, 0, 0], [1, 0, 0, 0]);
    expect(fast[2 * 4 + 0]).toBe(0);
    expect(fast[1 * 4 + 0]).toBeCloseTo(0.5 * Math.cos(1), 6);
    // The same through pair 0's second features (q_2, k_2): they turn with q_0, k_0 at ω = 1.
    const second = scoresOf([0, 0, 1, 0], [0, 0, 1, 0]);
    expect([second[0], second[1 * 4 + 0], second[2 * 4 + 0]].map((v) => Math.round(v! * 1e6) / 1e6))
      .toEqual([0.5, Math.round(0.5 * Math.cos(1) * 1e6) / 1e6, 0]);
  });

  it("scores each batch row as that row alone", () => {
    const config = { ...base, index_n_heads: 2, index_head_dim: 6 };
    const rng = new Random(4);
    const w = initDsa(rng, config);
    const indexer = Object.fromEntries(Object.entries(w.indexer).map(([n, t]) => [n, /norm/.test(n) ? t : randBounded(rng, t.shape, 0.5)]));
    const weights = { ...w, indexer } as unknown as DsaWeights;
    const y = randBounded(rng, [2, 5, 2]);
    const both = indexerScores(y, weights, config, createDsaCache(config, "absorb", 2)).data;
    for (let b = 0; b < 2; b++) {
      const alone = indexerScores(tensor([1, 5, 2], y.data.slice(b * 10, (b + 1) * 10)), weights, config, createDsaCache(config)).data;
      alone.forEach((v, i) => (v === -Infinity ? expect(both[b * 25 + i]).toBe(-Infinity) : expect(both[b * 25 + i]).toBeCloseTo(v, 6)));
    }
  });

  it("init: LayerNorm weight 1 and bias 0; a cache starts empty and absorbed", () => {
    const w = initDsa(new Random(1), base);
    expect([...w.indexer.k_norm.data, ...w.indexer.k_norm_bias.data]).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
    const cache = createDsaCache(base);
    expect([cache.mla.mode, cache.mla.length, cache.indexKeys.shape]).toEqual(["absorb", 0, [1, 0, 4]]);
  });

  it("each bad argument gets its whole message", () => {
    expect(thrown(() => checkDsaConfig({ ...base, index_n_heads: 0 }))).toBe("config.index_n_heads: expected an integer >= 1, got 0");
    expect(thrown(() => checkDsaConfig({ ...base, index_head_dim: 3 }))).toBe("config.index_head_dim: expected an integer >= 4, got 3");
    expect(thrown(() => checkDsaConfig({ ...base, index_topk: 0 }))).toBe("config.index_topk: expected an integer >= 1, got 0");
    const w = initDsa(new Random(1), base);
    const indexer = (change: Record<string, unknown>) => thrown(() => dsa(x, { ...w, indexer: { ...w.indexer, ...change } } as DsaWeights, base));
    expect(indexer({ wq_b: tensor([4, 1]) })).toBe("weights.indexer.wq_b: expected shape [4, 2], got [4, 1]");
    expect(indexer({ k_norm: tensor([3]) })).toBe("weights.indexer.k_norm: expected shape [4], got [3]");
    expect(indexer({ k_norm_bias: tensor([3]) })).toBe("weights.indexer.k_norm_bias: expected shape [4], got [3]");
    expect(indexer({ weights_proj: tensor([2, 2]) })).toBe("weights.indexer.weights_proj: expected shape [1, 2], got [2, 2]");
    expect(thrown(() => dsa(x, { ...w, indexer: null } as unknown as DsaWeights, base))).toBe("weights.indexer: expected the indexer's weights, got null");
    expect(thrown(() => dsa(x, w, base, createDsaCache(base, "absorb", 2))))
      .toBe("cache: expected indexer keys [1, 0, 4] beside an MLA cache of 0 positions, got [2, 0, 4]");
    expect(thrown(() => dsa(tensor([1, 9, 2]), w, base))).toBe("x: 0 cached + 9 new positions exceed max_position_embeddings 8");
    expect(dsa(tensor([1, 8, 2]), w, base).out.shape).toEqual([1, 8, 2]); // exactly max_position_embeddings fit
    expect(thrown(() => dsa(tensor([1, 1, 3]), w, base))).toBe("x: expected shape [B=1, T=1, 2], got [1, 1, 3]");
    expect(thrown(() => dsa(undefined as never, w, base))).toBe('x: expected a tensor of shape [B, T, 2], got "undefined"');
    expect(thrown(() => dsa({} as never, w, base))).toBe('x: expected a tensor of shape [B, T, 2], got "object"');
    expect(thrown(() => indexerScores(tensor([1, 1, 3]), w, base, createDsaCache(base)))).toBe("x: expected shape [B=1, T=1, 2], got [1, 1, 3]");
    const withKeys = (indexKeys: Tensor) => ({ ...createDsaCache(base), indexKeys });
    expect(thrown(() => indexerScores(x, w, base, withKeys(tensor([1, 2, 4]))))).toBe("cache: expected indexer keys [1, 0, 4] beside an MLA cache of 0 positions, got [1, 2, 4]");
    expect(thrown(() => indexerScores(x, w, base, withKeys(tensor([1, 0, 3]))))).toBe("cache: expected indexer keys [1, 0, 4] beside an MLA cache of 0 positions, got [1, 0, 3]");
    const noCache = "cache: expected a DSA cache holding an MLA cache's length and the indexer keys (createDsaCache), got";
    expect(thrown(() => indexerScores(x, w, base, undefined as never))).toBe(`${noCache} undefined`);
    expect(thrown(() => indexerScores(x, w, base, {} as never))).toBe(`${noCache} "no MLA length"`);
    expect(thrown(() => indexerScores(x, w, base, { ...createDsaCache(base), indexKeys: {} } as never))).toMatch(/^cache: expected indexer keys \[1, 0, 4\] beside an MLA cache of 0 positions, got "indexer keys without a shape"$/);
    expect(thrown(() => topKeys(tensor([1, 2, 2]), 0))).toBe("k: expected an integer >= 1, got 0");
    expect(thrown(() => topKeys(tensor([2, 2]), 1))).toBe("scores: expected shape [B, T, L], got [2, 2]");
  });

  it("selectedKeysAttend checks the selection against the keys it indexes", () => {
    const [q, k, v] = [tensor([1, 1, 2, 3]), tensor([1, 1, 2, 3]), tensor([1, 1, 2, 1])];
    const attend = (data: number[], shape: number[]) => selectedKeysAttend({ shape, data: Int32Array.from(data) })(q, k, v, 1, 0, reference);
    expect(thrown(() => attend([0, 1, 0], [1, 3, 1]))).toBe("selected: expected key indices of shape [1, 2, k], got [1, 3, 1]");
    expect(thrown(() => attend([0, 1, 2, 3], [1, 2, 1]))).toBe("selected: expected key indices of shape [1, 2, k], got [1, 2, 1]");
    expect(thrown(() => attend([0, -1, 0, 2], [1, 2, 2]))).toBe("selected: expected key indices below 2, got [0, 2]");
    // shapes whose data length alone would pass: each dimension is checked
    expect(thrown(() => attend([0, 1], [1, 2, 1, 1]))).toBe("selected: expected key indices of shape [1, 2, k], got [1, 2, 1, 1]");
    expect(thrown(() => attend([0, 1], [2, 2, 1]))).toBe("selected: expected key indices of shape [1, 2, k], got [2, 2, 1]");
    expect(thrown(() => attend([0, 1, 0, 1], [1, 1, 2]))).toBe("selected: expected key indices of shape [1, 2, k], got [1, 1, 2]");
    const ok = selectedKeysAttend({ shape: [1, 2, 1], data: Int32Array.from([0, 1]) });
    expect(thrown(() => ok(tensor([1, 2]), k, v, 1, 0, reference))).toBe("q: expected shape [B, H, T, dq], got [1, 2]");
    expect(thrown(() => ok(q, tensor([2, 1, 2, 3]), v, 1, 0, reference))).toBe("k: expected shape [B=1, Hkv, L, 3], got [2, 1, 2, 3]");
    expect(thrown(() => ok(q, tensor([1, 1, 2, 2]), v, 1, 0, reference))).toBe("k: expected shape [B=1, Hkv=1, L=2, 3], got [1, 1, 2, 2]");
  });
});

describe("MLA's joined keys follow the cache they are read from (absorbed mode)", () => {
  const cfg: MlaConfig = {
    hidden_size: 8, num_attention_heads: 2, q_lora_rank: 0, kv_lora_rank: 4, qk_nope_head_dim: 3,
    qk_rope_head_dim: 2, v_head_dim: 3, max_position_embeddings: 16,
  };
  const rng = new Random(21);
  const weights = Object.fromEntries(Object.entries(initMla(rng, cfg)).map(([n, t]) => [n, /norm/.test(n) ? t : randBounded(rng, t!.shape, 0.5)])) as unknown as ReturnType<typeof initMla>;
  const x = randBounded(rng, [1, 6, 8]);

  it("a cache whose rotary keys were replaced (same latent tensor) attends the new ones, as a copied cache does", () => {
    const cache = createMlaCache(cfg, "absorb") as Extract<MlaCache, { mode: "absorb" }>;
    mla(sliceTime(x, 0, 4), weights, cfg, cache);
    const next = sliceTime(x, 4, 6);
    const pe = { shape: [...cache.pe.shape], data: cache.pe.data.map((v) => -2 * v + 0.25) };
    const asCopy = mla(next, weights, cfg, { ...cache, latent: copy(cache.latent), pe: copy(pe) });
    const kept = mla(next, weights, cfg, { ...cache, latent: copy(cache.latent), pe: copy(cache.pe) });
    expect(relativeError(asCopy.data, kept.data)).toBeGreaterThan(1e-3); // the rotary keys matter
    expect(mla(next, weights, cfg, { ...cache, pe }).data).toEqual(asCopy.data);
  });
});

/** Per-token int8 activations, as ".a8" defines them: scale = max|x| / 127, codes rounded half to even. */
function int8Rows(x: Tensor): Tensor {
  const D = x.shape[x.shape.length - 1]!;
  const data = new Float32Array(x.data.length);
  for (let r = 0; r < x.data.length / D; r++) {
    const row = x.data.subarray(r * D, (r + 1) * D);
    const scale = Math.fround(row.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 127);
    row.forEach((v, i) => {
      if (scale === 0) return;
      const u = v / scale;
      const code = Math.abs(u % 1) === 0.5 ? 2 * Math.round(u / 2) : Math.round(u);
      data[r * D + i] = Math.min(127, Math.max(-127, code)) * scale;
    });
  }
  return { shape: [...x.shape], data };
}

describe("a segmented layer on quantised weights quantises its activations as the weights ask", () => {
  // A segmented layer (on the device since src/model/segmented-layer.ts), then device layers; every attention
  // projection quantised with int8 activations (".a8"). (sparse: test/model-sparse.test.ts checks its quantised layer.)
  const kinds = ["segmented"] as const;
  const config = testConfig({ attention_kind: [...kinds, "mha", "mha"], num_key_value_heads: 2, init_std: 0.3 });
  const prompt = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98];
  let made: { model: Model; tensors: Map<string, Tensor> } | undefined;
  /** The model, and each layer's attention input and output in its forward (made once, inside the first test). */
  const layerTensors = () => {
    if (made) return made.tensors;
    const model = quantizeModel(initModel(config), "int8.g32.a8", { targets: ["*.self_attn.*"] });
    const trace = createTrace("layers.*.attn.in,layers.*.attn.out");
    forward(model, prompt, { trace });
    return (made = { model, tensors: trace.tensors as Map<string, Tensor> }).tensors;
  };
  /** The layer's own module on its traced input, over kernels whose linear is `linear`. */
  const own = (l: number, linear: Kernels["linear"]) => {
    const x = layerTensors().get(`layers.${l}.attn.in`)!;
    const kernels: Kernels = { ...reference, linear };
    const w = made!.model.weights.layers[l]!.self_attn as unknown as SegmentedWeights;
    return segmentedAttention({ shape: [1, ...x.shape], data: x.data }, w, segmentedConfig(config), undefined, kernels);
  };
  const a8 = (x: Tensor, w: Tensor) => reference.linear((w as HookedWeight).quant?.activations ? int8Rows(x) : x, w);

  it.each(kinds.map((kind, l) => [l, kind] as const))("layer %i (%s)", (l) => {
    const out = layerTensors().get(`layers.${l}.attn.out`)!.data;
    const [quantised, plain] = [own(l, a8).data, own(l, reference.linear).data];
    expect(relativeError(plain, quantised)).toBeGreaterThan(1e-3); // the activations' rounding shows
    expect(relativeError(out, quantised)).toBeLessThan(1e-5);
  });
});
