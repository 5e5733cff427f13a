import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { attention } from "../src/attention/attention.ts";
import { concatTime, mergeHeads, splitHeads } from "../src/attention/heads.ts";
import { sliceTime } from "../src/attention/masked.ts";
import {
  createSparseState, initSparse, resolveSparseConfig, sparseAttention, sparseAttentionTraced, sparseStateSize,
  type SparseConfig, type SparseWeights,
} from "../src/attention/sparse.ts";
import {
  checkNsaBlocks, overlapWeight, PAPER_BLOCKS, paperAccessCount, scoredKeys, selectBlocks, selectionScores, TINY_BLOCKS,
} from "../src/attention/sparse-select.ts";
import { causal, slidingWindow } from "../src/masks.ts";
import { referenceOps } from "../src/device/ops.ts";
import { reference } from "../src/kernels.ts";
import { linear } from "../src/ops.ts";
import { Random, randBounded } from "../src/random.ts";
import { applyRope, ropeFrequencies } from "../src/rope.ts";
import type { Tensor } from "../src/tensor.ts";
import { segmentedSparseGoldenCases } from "../src/golden/segmented-sparse-cases.ts";
import { checkGolden, runGoldenCase } from "../src/io/golden.ts";
import { createBackend } from "../wasm/backend.ts";
import { close } from "./helpers.ts";


function setup(config: SparseConfig, seed: number, T: number, B = 1) {
  const rng = new Random(seed);
  const weights = initSparse(rng, config, 1 / Math.sqrt(config.hidden_size));
  return { weights, x: randBounded(rng, [B, T, config.hidden_size]) };
}

/** Hyper-parameters in their valid range: d | l, d | l', l <= l', n >= 3. */
const configs = fc.record({
  seed: fc.nat(2 ** 31),
  T: fc.integer({ min: 1, max: 30 }),
  stride: fc.constantFrom(1, 2, 3),
  blockMul: fc.integer({ min: 1, max: 3 }),
  selectExtra: fc.integer({ min: 0, max: 2 }),
  selectCount: fc.integer({ min: 3, max: 5 }),
  window: fc.integer({ min: 1, max: 9 }),
  heads: fc.constantFrom([1, 1], [2, 1], [2, 2], [4, 2]),
  shared: fc.boolean(),
}).map(({ seed, T, stride, blockMul, selectExtra, selectCount, window, heads, shared }) => ({
  seed, T,
  config: {
    hidden_size: 4 * heads[0]!, num_attention_heads: heads[0]!, num_key_value_heads: heads[1]!,
    sparse_stride: stride, sparse_block: stride * blockMul, sparse_select_block: stride * (blockMul + selectExtra),
    sparse_select_count: selectCount, sparse_window: window, sparse_shared_kv: shared,
  } satisfies SparseConfig,
}));

describe("NSA block bookkeeping", () => {
  it("reproduces the paper's Table 4 decode access counts", () => {
    expect([8192, 16384, 32768, 65536].map((s) => paperAccessCount(s, PAPER_BLOCKS))).toEqual([2048, 2560, 3584, 5632]);
  });

  it("weighs compressed blocks 4j-1 … 4j+3 by 1, 2, 2, 2, 1 for l = 32, d = 16, l' = 64", () => {
    const b = { ...PAPER_BLOCKS };
    for (const j of [1, 2, 5]) {
      expect([4 * j - 2, 4 * j - 1, 4 * j, 4 * j + 1, 4 * j + 2, 4 * j + 3, 4 * j + 4].map((i) => overlapWeight(i, j, b)))
        .toEqual([0, 1, 2, 2, 2, 1, 0]);
    }
    // p_slc from p_cmp: a unit on compressed block 7 (tokens 112…143) lands half in block 1, half in block 2
    const pCmp = new Float64Array(10);
    pCmp[7] = 1;
    expect([...selectionScores(pCmp, 3, b)]).toEqual([0, 1, 1]);
    pCmp.fill(0.1);
    expect([...selectionScores(pCmp, 3, b)].map((v) => Math.round(v * 1e12) / 1e12)).toEqual([0.7, 0.8, 0.5]);
  });

  it("is p_cmp itself when l = l' = d", () => {
    const b = { block: 4, stride: 4, selectBlock: 4, selectCount: 3, window: 1 };
    expect([...selectionScores([0.5, 0.25, 0.125], 3, b)]).toEqual([0.5, 0.25, 0.125]);
  });

  it("selects block 0 and the two most recent, then the best, ties to the lower index", () => {
    const b = { ...TINY_BLOCKS, selectCount: 4 }; // l' = 8
    // query 47 lies in block 5: blocks 0, 4, 5 forced; 2 and 3 tie at 0.3, the lower wins
    expect(selectBlocks([0, 0.1, 0.3, 0.3, 0, 0], 47, b)).toEqual([0, 2, 4, 5]);
    expect(selectBlocks([0, 0.1, 0.3, 0.2, 0.9, 0.9], 47, { ...b, selectCount: 5 })).toEqual([0, 2, 3, 4, 5]);
    expect(selectBlocks([0, 0, 0, 0, 0, 0], 47, b)).toEqual([0, 1, 4, 5]); // nothing to go by: the lowest index
    expect(selectBlocks([1, 1, 1], 20, b)).toEqual([0, 1, 2]); // fewer blocks than n: all of them
  });

  it("counts the keys a query scores", () => {
    // t = 8191 with the paper's settings: 511 compressed blocks, 16 full blocks of 64, the window
    const selected = Array.from({ length: 16 }, (_, j) => j * 8);
    expect(scoredKeys(8191, selected, PAPER_BLOCKS)).toEqual({ compressed: 511, selected: 1024, window: 512 });
    expect(scoredKeys(3, [0], TINY_BLOCKS)).toEqual({ compressed: 0, selected: 4, window: 4 });
  });

  it.each([
    [{ stride: 3 }, /sparse_block: expected a multiple of sparse_stride=3, got 8/],
    [{ stride: 8, block: 8, selectBlock: 12 }, /sparse_select_block: expected a multiple of sparse_stride=8, got 12/],
    [{ block: 16, selectBlock: 8 }, /sparse_select_block: expected at least sparse_block=16, got 8/],
    [{ selectCount: 2 }, /sparse_select_count: expected an integer >= 3, got 2/],
    [{ window: 0 }, /sparse_window: expected an integer >= 1, got 0/],
    [{ stride: 0 }, /sparse_stride: expected an integer >= 1, got 0/],
  ])("rejects %j naming the argument", (change, message) => {
    expect(() => checkNsaBlocks({ ...TINY_BLOCKS, ...change })).toThrow(message);
    const cfg = { hidden_size: 8, num_attention_heads: 2 };
    const names = { block: "sparse_block", stride: "sparse_stride", selectBlock: "sparse_select_block", selectCount: "sparse_select_count", window: "sparse_window" } as const;
    const asConfig = Object.fromEntries(Object.entries(change).map(([k, v]) => [names[k as keyof typeof names], v]));
    expect(() => resolveSparseConfig({ ...cfg, ...asConfig })).toThrow(message);
  });

  it("rejects bad head counts and weights", () => {
    expect(() => resolveSparseConfig({ hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 3 })).toThrow(/num_key_value_heads: expected a divisor of num_attention_heads=2, got 3/);
    const cfg = { hidden_size: 8, num_attention_heads: 2 };
    const w = initSparse(new Random(1), cfg);
    expect(() => sparseAttention(randBounded(new Random(1), [3, 8]), w, { ...cfg, sparse_shared_kv: true })).toThrow(/k_proj: expected a tensor/);
    expect(() => sparseAttention(randBounded(new Random(1), [3, 6]), w, cfg)).toThrow(/x: expected shape \[B=1, T=3, 8\]/);
  });
});

describe("NSA layer", () => {
  it("equals an independent dense oracle of the three branches, gates and output projection", () => {
    fc.assert(fc.property(configs, ({ seed, T, config }) => {
      const { weights, x } = setup(config, seed, T);
      close(sparseAttention(x, weights, config), oracle(x, weights, config));
    }), { numRuns: 40 });
  });

  it("selected branch with n >= the number of blocks is full causal attention; window with w >= T too", () => {
    fc.assert(fc.property(configs, ({ seed, T, config }) => {
      const wide = { ...config, sparse_select_count: Math.max(3, Math.ceil(T / config.sparse_select_block)), sparse_window: T + (seed % 3) };
      const { weights, x } = setup(wide, seed, T);
      const { branches } = sparseAttentionTraced(x, weights, wide).trace;
      const p = project(x, weights, wide);
      close(branches.selected, attention(p.q, p.kSlc, p.vSlc, { mask: causal(T) }).out);
      close(branches.window, attention(p.q, p.kWin, p.vWin, { mask: causal(T) }).out);
    }), { numRuns: 30 });
  });

  it("gives zeros in the compressed branch until a whole block lies in the past", () => {
    const config = { hidden_size: 8, num_attention_heads: 2 }; // l = 8
    const { weights, x } = setup(config, 4, 10);
    const cmp = sparseAttentionTraced(x, weights, config).trace.branches.compressed; // [1, 2, 10, 4]
    for (let h = 0; h < 2; h++) {
      expect([...cmp.data.subarray(h * 40, h * 40 + 7 * 4)].every((v) => v === 0)).toBe(true);
      expect([...cmp.data.subarray(h * 40 + 7 * 4, h * 40 + 8 * 4)].some((v) => v !== 0)).toBe(true);
    }
  });

  it("prefill in one call equals any split into chunks, token by token included", () => {
    fc.assert(fc.property(configs, fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 6 }), ({ seed, T, config }, chunks) => {
      const { weights, x } = setup(config, seed, T, 2);
      const whole = sparseAttention(x, weights, config);
      const state = createSparseState(config, 2);
      const parts: Tensor[] = [];
      for (let at = 0, i = 0; at < T; i++) {
        const n = Math.min(T - at, chunks.length > 0 ? chunks[i % chunks.length]! : 1);
        parts.push(sparseAttention(sliceTime(x, at, at + n), weights, config, state));
        at += n;
      }
      close(parts.reduce((a, p) => concatTime(a, p)), whole, 1e-6, 1e-7);
      const size = sparseStateSize(config, T);
      const held = [state.selectedKeys, state.selectedValues, state.compressedKeys, state.compressedValues, state.pendingKeys,
        state.pendingValues, state.windowKeys, state.windowValues].reduce((a, t) => a + t.data.length, 0);
      expect(held / 2).toBe(size.total); // per batch row, the state holds what sparseStateSize says
    }), { numRuns: 30 });
  });

  it("is causal: changing a later token changes no earlier output", () => {
    fc.assert(fc.property(configs, ({ seed, T, config }) => {
      const { weights, x } = setup(config, seed, T);
      const D = config.hidden_size;
      const changedAt = seed % T;
      const y = { shape: x.shape, data: x.data.slice() };
      for (let i = 0; i < D; i++) y.data[changedAt * D + i] = -2 * y.data[changedAt * D + i]! + 0.5;
      const [a, b] = [sparseAttention(x, weights, config), sparseAttention(y, weights, config)];
      expect(b.data.subarray(0, changedAt * D)).toEqual(a.data.subarray(0, changedAt * D));
    }), { numRuns: 25 });
  });

  it("shares one selection across the heads of a GQA group; an empty chunk changes nothing", () => {
    const config = { hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2, sparse_select_count: 3 };
    const { weights, x } = setup(config, 8, 40);
    const { selected } = sparseAttentionTraced(x, weights, config).trace;
    expect(selected.length).toBe(2 * 40 * 3); // [B=1, Hkv=2, T=40, n=3]
    expect([...selected.subarray(39 * 3, 40 * 3)]).toContain(0);
    expect([...selected.subarray(39 * 3, 40 * 3)]).toContain(4); // query 39 is in block 4 (l' = 8)
    expect([...selected.subarray(0, 3)]).toEqual([0, -1, -1]); // query 0: one block exists
    const state = createSparseState(config);
    expect(sparseAttention({ shape: [0, 16], data: new Float32Array(0) }, weights, config, state).shape).toEqual([0, 16]);
    expect(state.position).toBe(0);
  });

  it("holds O(T) selectable keys; its window and compressed parts are small", () => {
    const config = { hidden_size: 128, num_attention_heads: 4, sparse_block: 32, sparse_stride: 16, sparse_select_block: 64, sparse_select_count: 16, sparse_window: 512 };
    const size = sparseStateSize(config, 16384);
    expect(size.selected).toBe(16384 * 256);
    expect(size.compressed).toBe(1023 * 256); // blocks i with 16i + 32 <= 16384
    expect(size.pending).toBe(16 * 256);
    expect(size.window).toBe(511 * 256);
    expect(size.perToken).toBe(size.total / 16384);
    expect(sparseStateSize({ ...config, sparse_shared_kv: true }, 16384).window).toBe(0);
  });
});

describe("golden cases of segmented attention and NSA", () => {
  it("pass on the WASM backend within their tolerance, selections exact", async () => {
    const wasm = await createBackend({ threads: 1 });
    try {
      const cases = segmentedSparseGoldenCases();
      for (const c of cases) {
        const result = await checkGolden(await runGoldenCase(c), cases, wasm);
        expect(result.outcome, `${c.name}: ${result.message}`).toBe("ok");
      }
    } finally {
      await wasm.dispose();
    }
  });

  it("say not supported on a backend without synchronous kernels", async () => {
    const [c] = segmentedSparseGoldenCases().filter((g) => g.name.startsWith("attention.sparse."));
    const file = await runGoldenCase(c!);
    const asyncOnly = { name: "webgpu", description: "asynchronous only", ops: referenceOps, asyncKernels: reference, dispose: async () => {} } as const;
    expect((await checkGolden(file, [c!], asyncOnly)).outcome).toBe("not supported");
  });
});

// ── the oracle: dense attention.ts with explicit masks, B = 1 ──

function project(x: Tensor, w: SparseWeights, config: SparseConfig) {
  const { H, Hkv, Dh } = resolveSparseConfig(config);
  const T = x.shape[1]!;
  const positions = Array.from({ length: T }, (_, t) => t);
  const freqs = ropeFrequencies({ dim: Dh });
  const heads = (m: Tensor, n: number) => splitHeads(linear(x, m), n, [Dh])[0]!;
  const rot = (t: Tensor) => applyRope(t, positions, freqs);
  const k = (name: "k_cmp_proj" | "k_slc_proj" | "k_win_proj") => heads((config.sparse_shared_kv ? w.k_proj : w[name])!, Hkv);
  const v = (name: "v_cmp_proj" | "v_slc_proj" | "v_win_proj") => heads((config.sparse_shared_kv ? w.v_proj : w[name])!, Hkv);
  const q = heads(w.q_proj, H);
  return {
    qRaw: q, q: rot(q), kCmp: k("k_cmp_proj"), vCmp: v("v_cmp_proj"), kSlc: rot(k("k_slc_proj")), vSlc: v("v_slc_proj"),
    kWin: rot(k("k_win_proj")), vWin: v("v_win_proj"),
  };
}

function oracle(x: Tensor, w: SparseWeights, config: SparseConfig): Tensor {
  const { H, Hkv, Dh, blocks } = resolveSparseConfig(config);
  const { block: l, stride: d, selectBlock: ls, selectCount: n, window } = blocks;
  const T = x.shape[1]!;
  const p = project(x, w, config);
  const nb = T >= l ? Math.floor((T - l) / d) + 1 : 0;
  const squash = (raw: Tensor, W: Tensor, E: Tensor): Tensor => {
    const out = new Float32Array(Hkv * nb * Dh);
    for (let g = 0; g < Hkv; g++) {
      for (let i = 0; i < nb; i++) {
        for (let o = 0; o < Dh; o++) {
          let sum = 0;
          for (let e = 0; e < l * Dh; e++) sum += W.data[o * l * Dh + e]! * (raw.data[(g * T + i * d) * Dh + e]! + E.data[e]!);
          out[(g * nb + i) * Dh + o] = sum;
        }
      }
    }
    return { shape: [1, Hkv, nb, Dh], data: out };
  };
  const cmpMask = { shape: [T, nb], data: Uint8Array.from({ length: T * nb }, (_, a) => (Math.floor(a / nb) + 1 >= (a % nb) * d + l ? 1 : 0)) };
  const cmp = attention(p.qRaw, squash(p.kCmp, w.compress_k, w.compress_k_pos), squash(p.vCmp, w.compress_v, w.compress_v_pos), { mask: cmpMask });

  const group = H / Hkv;
  const slc = new Float32Array(H * T * Dh);
  for (let g = 0; g < Hkv; g++) {
    const visible = new Uint8Array(T * T);
    for (let t = 0; t < T; t++) {
      // p_slc[j] by counting, token by token, how much of each compressed block lies in selection block j
      const blocksNow = Math.floor(t / ls) + 1;
      const score = new Float64Array(blocksNow);
      for (let i = 0; i < nb; i++) {
        let pi = 0;
        for (let h = g * group; h < (g + 1) * group; h++) pi += cmp.probs.data[(h * T + t) * nb + i]!;
        for (let u = i * d; u < i * d + l; u++) if (Math.floor(u / ls) < blocksNow) score[Math.floor(u / ls)] += (pi * 1) / d;
      }
      const order = [...score.keys()].sort((a, b) => {
        const forced = (j: number) => (j === 0 || j >= blocksNow - 2 ? 1 : 0);
        return forced(b) - forced(a) || score[b]! - score[a]! || a - b;
      });
      for (const j of order.slice(0, n)) for (let u = j * ls; u < Math.min((j + 1) * ls, t + 1); u++) visible[t * T + u] = 1;
    }
    const qg = { shape: [1, group, T, Dh], data: p.q.data.slice(g * group * T * Dh, (g + 1) * group * T * Dh) };
    const one = (t: Tensor) => ({ shape: [1, 1, T, Dh], data: t.data.slice(g * T * Dh, (g + 1) * T * Dh) });
    slc.set(attention(qg, one(p.kSlc), one(p.vSlc), { mask: { shape: [T, T], data: visible } }).out.data, g * group * T * Dh);
  }
  const win = attention(p.q, p.kWin, p.vWin, { mask: slidingWindow(T, window) }).out;
  const gates = linear(x, w.gate_proj).data.map((v) => 1 / (1 + Math.exp(-v)));
  const mixed = new Float32Array(H * T * Dh);
  for (let h = 0; h < H; h++) {
    for (let t = 0; t < T; t++) {
      for (let e = 0; e < Dh; e++) {
        const at = (h * T + t) * Dh + e;
        mixed[at] = gates[t * 3 * H + h]! * cmp.out.data[at]! + gates[t * 3 * H + H + h]! * slc[at]! + gates[t * 3 * H + 2 * H + h]! * win.data[at]!;
      }
    }
  }
  return linear(mergeHeads({ shape: [1, H, T, Dh], data: mixed }), w.o_proj);
}
