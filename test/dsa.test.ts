import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { attention } from "../src/attention/attention.ts";
import { checkDsaConfig, createDsaCache, dsa, indexerScores, initDsa, topKeys, type DsaConfig, type DsaWeights } from "../src/attention/dsa.ts";
import { mla, type MlaAttend, type MlaMode } from "../src/attention/mla.ts";
import { reference } from "../src/kernels.ts";
import { Random, randBounded } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";

const base = {
  hidden_size: 2, num_attention_heads: 1, q_lora_rank: 0, kv_lora_rank: 2, qk_nope_head_dim: 1, qk_rope_head_dim: 2,
  v_head_dim: 1, max_position_embeddings: 32, index_n_heads: 2, index_head_dim: 4, index_topk: 2,
};

describe("DSA, worked by hand", () => {
  // The indexer's rotated features are zero, so positions do not matter. x_t = (a_t, b_t):
  //   k^I = LayerNorm(0, 0, a, -a) = (0, 0, a·n, -a·n) with n = 1/sqrt(1/2 + eps) for a = ±1
  //   q^I head 0 = (0, 0, b, 0), head 1 = (0, 0, 0, b);  w = (a, b) / sqrt(2 heads · 4 dims)
  // x = (1, 1), (-1, 2), (1, -1):  I = [[n, ·, ·], [-2n, 4n, ·], [-n, n, -n]] / sqrt(8)
  const weights = {
    ...initDsa(new Random(3), base),
    indexer: {
      wq_b: tensor([8, 2], [0, 0, 0, 0, 0, 1, 0, 0, /* head 1 */ 0, 0, 0, 0, 0, 0, 0, 1]),
      wk: tensor([4, 2], [0, 0, 0, 0, 1, 0, -1, 0]),
      k_norm: tensor([4], [1, 1, 1, 1]),
      k_norm_bias: tensor([4]),
      weights_proj: tensor([2, 2], [1, 0, 0, 1]),
    },
  };
  const x = tensor([1, 3, 2], [1, 1, -1, 2, 1, -1]);
  const n = 1 / Math.sqrt(0.5 + 1e-6) / Math.sqrt(8);

  it("scores every causal key with Σ_h w_h·ReLU(q·k)", () => {
    const scores = indexerScores(x, weights, base, createDsaCache(base));
    const expected = [n, -Infinity, -Infinity, -2 * n, 4 * n, -Infinity, -n, n, -n];
    expected.forEach((v, i) => (v === -Infinity ? expect(scores.data[i]).toBe(-Infinity) : expect(scores.data[i]).toBeCloseTo(v, 6)));
  });
  it("keeps the top k, ties to the lower index, padding short rows with -1", () => {
    const scores = indexerScores(x, weights, base, createDsaCache(base));
    expect([...topKeys(scores, 2).data]).toEqual([0, -1, 0, 1, 0, 1]); // row 2: 1 first, then 0 and 2 tie → 0
    expect([...topKeys(scores, 1).data]).toEqual([0, 1, 1]);
    expect([...topKeys(scores, 5).data]).toEqual([0, -1, -1, 0, 1, -1, 0, 1, 2]);
  });
  it("MLA then attends exactly those keys", () => {
    const { selected } = dsa(x, weights, { ...base, index_topk: 1 });
    expect([...selected.data]).toEqual([0, 1, 1]);
  });
});

const setup = fc.record({
  H: fc.constantFrom(1, 2, 3),
  qLora: fc.constantFrom(0, 3),
  HI: fc.constantFrom(1, 2, 3),
  dI: fc.constantFrom(2, 5, 7),
  B: fc.constantFrom(1, 2),
  T: fc.integer({ min: 1, max: 9 }),
  k: fc.constantFrom(1, 2, 3, 5),
  seed: fc.nat(1e6),
});
type Setup = typeof setup extends fc.Arbitrary<infer S> ? S : never;

function build(s: Setup) {
  const config: DsaConfig = {
    hidden_size: 6, num_attention_heads: s.H, q_lora_rank: s.qLora, kv_lora_rank: 3, qk_nope_head_dim: 2,
    qk_rope_head_dim: 2, v_head_dim: 3, max_position_embeddings: 32, index_n_heads: s.HI, index_head_dim: s.dI,
    index_topk: s.k,
  };
  const rng = new Random(s.seed);
  const boost = (w: Record<string, Tensor>) =>
    Object.fromEntries(Object.entries(w).map(([name, t]) => [name, /norm|layernorm/.test(name) ? t : randBounded(rng, t.shape, 0.5)]));
  const { indexer, ...attention } = initDsa(rng, config);
  const weights = { ...boost(attention as unknown as Record<string, Tensor>), indexer: boost(indexer as unknown as Record<string, Tensor>) } as unknown as DsaWeights;
  return { config, weights, x: randBounded(rng, [s.B, s.T, 6]) };
}

/** Dense attention under the selection as a mask: an independent route to what DSA must compute. */
function maskedBySelection(selected: { shape: number[]; data: Int32Array }): MlaAttend {
  return (q, k, v, scale) => {
    const [B, T, width] = selected.shape as [number, number, number];
    const L = k.shape[2]!;
    const mask = { shape: [B, T, L], data: new Uint8Array(B * T * L) };
    selected.data.forEach((s, i) => {
      if (s >= 0) mask.data[Math.floor(i / width) * L + s] = 1;
    });
    return attention(q, k, v, { mask, scale }).out;
  };
}

describe("DSA properties", () => {
  const opts = { numRuns: 25 };
  const modes = fc.constantFrom<MlaMode>("naive", "absorb");

  it("with k >= t + 1 it equals dense MLA exactly", () => {
    fc.assert(fc.property(setup, modes, (s, mode) => {
      const { config, weights, x } = build(s);
      const sparse = dsa(x, weights, { ...config, index_topk: s.T + s.k }, undefined, reference, mode);
      expect(sparse.out.data).toEqual(mla(x, weights, config, undefined, reference, mode).data);
    }), opts);
  });

  it("selects min(k, t + 1) causal keys and attends exactly them", () => {
    fc.assert(fc.property(setup, modes, (s, mode) => {
      const { config, weights, x } = build(s);
      const { out, selected } = dsa(x, weights, config, undefined, reference, mode);
      const width = selected.shape[2]!;
      for (let b = 0; b < s.B; b++) {
        for (let t = 0; t < s.T; t++) {
          const row = [...selected.data.subarray((b * s.T + t) * width, (b * s.T + t + 1) * width)].filter((v) => v >= 0);
          expect(row.length).toBe(Math.min(s.k, t + 1));
          expect(row.every((v) => v <= t)).toBe(true);
        }
      }
      const masked = mla(x, weights, config, undefined, reference, mode, maskedBySelection(selected));
      out.data.forEach((v, i) => expect(Math.abs(v - masked.data[i]!)).toBeLessThan(1e-6));
    }), opts);
  });

  it("token-by-token decode selects and outputs what one prefill does", () => {
    fc.assert(fc.property(setup.filter((s) => s.B === 1), (s) => {
      const { config, weights, x } = build(s);
      const whole = dsa(x, weights, config);
      const cache = createDsaCache(config);
      for (let t = 0; t < s.T; t++) {
        const step = dsa(tensor([1, 1, 6], x.data.subarray(t * 6, (t + 1) * 6)), weights, config, cache);
        const width = whole.selected.shape[2]!;
        const fromWhole = [...whole.selected.data.subarray(t * width, (t + 1) * width)].filter((v) => v >= 0);
        expect([...step.selected.data].filter((v) => v >= 0)).toEqual(fromWhole);
        step.out.data.forEach((v, i) => expect(Math.abs(v - whole.out.data[t * 6 + i]!)).toBeLessThan(1e-6));
      }
    }), opts);
  });

  it("is causal: a later token changes neither earlier selections nor earlier outputs", () => {
    fc.assert(fc.property(setup.filter((s) => s.T >= 2 && s.B === 1), (s) => {
      const { config, weights, x } = build(s);
      const changed = { shape: x.shape, data: x.data.slice() };
      changed.data[(s.T - 1) * 6] += 1;
      const [a, c] = [dsa(x, weights, config), dsa(changed, weights, config)];
      const width = a.selected.shape[2]!;
      expect(a.selected.data.subarray(0, (s.T - 1) * width)).toEqual(c.selected.data.subarray(0, (s.T - 1) * width));
      expect(a.out.data.subarray(0, (s.T - 1) * 6)).toEqual(c.out.data.subarray(0, (s.T - 1) * 6));
    }), opts);
  });
});

describe("DSA rejects bad arguments, naming them", () => {
  it.each([
    ["config.index_head_dim", { ...base, index_head_dim: 1 }],
    ["config.index_topk", { ...base, index_topk: 0 }],
    ["config.index_n_heads", { ...base, index_n_heads: 0 }],
  ])("%s", (name, bad) => expect(() => checkDsaConfig(bad as DsaConfig)).toThrow(name));
  it("weights, scores and caches", () => {
    const weights = initDsa(new Random(1), base);
    const x = randBounded(new Random(2), [3, 2]);
    expect(() => dsa(x, { ...weights, indexer: undefined } as unknown as DsaWeights, base)).toThrow("weights.indexer");
    expect(() => dsa(x, { ...weights, indexer: { ...weights.indexer, wk: tensor([4, 3]) } }, base)).toThrow("weights.indexer.wk");
    expect(() => topKeys(tensor([2, 2]), 1)).toThrow("scores");
    expect(() => topKeys(tensor([1, 2, 2]), 0)).toThrow("k");
    expect(() => dsa(x, weights, base, createDsaCache(base, "absorb", 2))).toThrow("cache");
    const cache = createDsaCache(base, "naive");
    expect(() => dsa(x, weights, base, cache, undefined, "absorb")).toThrow("mode");
    expect(cache.indexKeys.shape).toEqual([1, 0, 4]); // a failed call leaves the cache as it was
    expect(dsa(x, weights, base, cache).out.shape).toEqual([3, 2]);
  });
});
