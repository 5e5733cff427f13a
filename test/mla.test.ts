import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkMlaConfig, createMlaCache, initMla, mla, mlaCacheNumbersPerToken, mlaProjections, mlaSoftmaxScale,
  type MlaConfig, type MlaMode, type MlaWeights,
} from "../src/attention/mla.ts";
import { NotSupportedError, referenceBackend } from "../src/backend.ts";
import { appendTime, concatLast, concatTime, mergeHeads, splitHeads } from "../src/attention/heads.ts";
import { mlaFamilyGoldenCases } from "../src/golden/mla-cases.ts";
import { reference } from "../src/kernels.ts";
import * as ops from "../src/ops.ts";
import { Random, randBounded } from "../src/random.ts";
import { concatRows, sliceRows, tensor, type Tensor } from "../src/tensor.ts";

const maxAbsDiff = (a: Tensor, b: Tensor) => {
  expect(a.shape).toEqual(b.shape);
  return a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i]!)), 0);
};

/** A config drawn from small sizes, including 1 and primes, with weights of std 0.5 so that scores matter. */
const sizes = fc.constantFrom(1, 2, 3, 5, 7);
/** A small MLA without the query's low-rank path, for the cache tests. */
const cfg: MlaConfig = {
  hidden_size: 8, num_attention_heads: 2, q_lora_rank: 0, kv_lora_rank: 4, qk_nope_head_dim: 3,
  qk_rope_head_dim: 2, v_head_dim: 3, max_position_embeddings: 64,
};
const setup = fc.record({
  H: fc.constantFrom(1, 2, 3),
  qLora: fc.constantFrom(0, 3, 5),
  kvLora: sizes,
  dn: sizes,
  dr: fc.constantFrom(2, 4, 6),
  dv: sizes,
  D: fc.constantFrom(2, 5, 8),
  B: fc.constantFrom(1, 2),
  T: fc.integer({ min: 1, max: 7 }),
  yarn: fc.boolean(),
  seed: fc.nat(1e6),
});
type Setup = typeof setup extends fc.Arbitrary<infer S> ? S : never;

function build(s: Setup) {
  const config: MlaConfig = {
    hidden_size: s.D, num_attention_heads: s.H, q_lora_rank: s.qLora, kv_lora_rank: s.kvLora,
    qk_nope_head_dim: s.dn, qk_rope_head_dim: s.dr, v_head_dim: s.dv, max_position_embeddings: 64,
    rope_scaling: s.yarn ? { factor: 4, original_max_position_embeddings: 16, mscale: 1, mscale_all_dim: 1 } : null,
  };
  const rng = new Random(s.seed);
  const init = initMla(rng, config) as unknown as Record<string, Tensor>;
  const weights = Object.fromEntries(
    Object.entries(init).map(([name, w]) => [name, name.endsWith("layernorm") ? w : randBounded(rng, w.shape, 0.5)]),
  ) as unknown as MlaWeights;
  const x = randBounded(rng, [s.B, s.T, s.D]);
  return { config, weights, x };
}

/** Rows [start, end) of every batch row of x [B, T, D]. */
function timeSlice(x: Tensor, start: number, end: number): Tensor {
  const [B, , D] = x.shape as [number, number, number];
  const rows = Array.from({ length: B }, (_, b) => sliceRows(tensor([x.shape[1]!, D], x.data.subarray(b * x.shape[1]! * D, (b + 1) * x.shape[1]! * D)), start, end));
  return { shape: [B, end - start, D], data: concatRows(rows).data };
}

describe("MLA, worked by hand", () => {
  // D = 2, one head, q_lora_rank = 0, kv_lora_rank = 2, qk_nope = 1, qk_rope = 2, v_head = 1; x = I₂.
  //   q_nope = x₀, q_pe = (x₁, 0);  latent = RMSNorm(x₀, x₁), k_pe = (x₀, 0);  k_nope = c₀, v = c₀ + 2c₁;  o = (v, -v)
  // Token 0: latent (n, 0) with n = 1/sqrt(1/2 + eps); it sees only itself, so v = n and o = (n, -n).
  // Token 1 (position 1, rope angle 1 rad on its q_pe): latent (0, n), v₁ = 2n.
  //   score to key 0 = (q_nope·k_nope₀ + rot(1)(1, 0)·(1, 0)) / sqrt(3) = cos(1)/sqrt(3);  score to key 1 = 0.
  //   p₀ = 1/(1 + e^(-s₀)),  v = p₀·n + (1 - p₀)·2n.
  const config: MlaConfig = {
    hidden_size: 2, num_attention_heads: 1, q_lora_rank: 0, kv_lora_rank: 2, qk_nope_head_dim: 1,
    qk_rope_head_dim: 2, v_head_dim: 1, max_position_embeddings: 8,
  };
  const weights: MlaWeights = {
    q_proj: tensor([3, 2], [1, 0, 0, 1, 0, 0]),
    kv_a_proj_with_mqa: tensor([4, 2], [1, 0, 0, 1, 1, 0, 0, 0]),
    kv_a_layernorm: tensor([2], [1, 1]),
    kv_b_proj: tensor([2, 2], [1, 0, 1, 2]),
    o_proj: tensor([2, 1], [1, -1]),
  };
  const x = tensor([2, 2], [1, 0, 0, 1]);
  const n = 1 / Math.sqrt(0.5 + 1e-6);
  const s0 = Math.cos(1) / Math.sqrt(3);
  const p0 = 1 / (1 + Math.exp(-s0));
  const v1 = p0 * n + (1 - p0) * 2 * n;
  for (const mode of ["naive", "absorb"] as const) {
    it(`${mode} gives the hand-computed output`, () => {
      const out = mla(x, weights, config, undefined, reference, mode);
      expect(out.shape).toEqual([2, 2]);
      [n, -n, v1, -v1].forEach((v, i) => expect(out.data[i]).toBeCloseTo(v, 6));
    });
  }
  it("uses YaRN's mscale² only when the configured length exceeds the original", () => {
    const v3 = { qk_nope_head_dim: 128, qk_rope_head_dim: 64, rope_scaling: { factor: 40, original_max_position_embeddings: 4096, mscale: 1, mscale_all_dim: 1 } };
    const m = 0.1 * Math.log(40) + 1;
    expect(mlaSoftmaxScale({ ...config, ...v3, max_position_embeddings: 163840 })).toBeCloseTo((m * m) / Math.sqrt(192), 12);
    expect(mlaSoftmaxScale({ ...config, ...v3, max_position_embeddings: 4096 })).toBeCloseTo(1 / Math.sqrt(192), 12);
  });
  it("the low-rank query path is W_qb · RMSNorm(W_qa x)", () => {
    const s = { H: 2, qLora: 3, kvLora: 2, dn: 2, dr: 2, dv: 2, D: 5, B: 1, T: 3, yarn: false, seed: 7 } as Setup;
    const { config: c, weights: w, x: input } = build(s);
    const p = mlaProjections(input, w, c, [0, 1, 2], reference);
    const q = ops.linear(ops.rmsnorm(ops.linear(input, w.q_a_proj!), w.q_a_layernorm!, 1e-6), w.q_b_proj!);
    // head 1, token 2, no-rope part: features [4, 6) of row 2
    expect(p.qNope.shape).toEqual([1, 2, 3, 2]);
    expect([...p.qNope.data.subarray((1 * 3 + 2) * 2, (1 * 3 + 2) * 2 + 2)]).toEqual([...q.data.subarray(2 * 8 + 4, 2 * 8 + 6)]);
  });
});

describe("MLA properties", () => {
  const opts = { numRuns: 25 };

  it("naive equals absorb", () => {
    fc.assert(fc.property(setup, (s) => {
      const { config, weights, x } = build(s);
      const a = mla(x, weights, config, undefined, reference, "naive");
      const b = mla(x, weights, config, undefined, reference, "absorb");
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-5 * (1 + Math.max(...a.data.map(Math.abs))));
    }), opts);
  });

  it("prefill in one call equals token-by-token decode, in both modes", () => {
    fc.assert(fc.property(setup, fc.constantFrom<MlaMode>("naive", "absorb"), (s, mode) => {
      const { config, weights, x } = build(s);
      const whole = mla(x, weights, config, undefined, reference, mode);
      const cache = createMlaCache(config, mode, s.B);
      const steps = Array.from({ length: s.T }, (_, t) => mla(timeSlice(x, t, t + 1), weights, config, cache, reference));
      expect(cache.length).toBe(s.T);
      for (let t = 0; t < s.T; t++) expect(maxAbsDiff(steps[t]!, timeSlice(whole, t, t + 1))).toBeLessThan(1e-6);
    }), opts);
  });

  it("chunked prefill equals one-shot prefill (the mask takes the cache offset)", () => {
    fc.assert(fc.property(setup.filter((s) => s.T >= 2), fc.nat(), fc.constantFrom<MlaMode>("naive", "absorb"), (s, cut, mode) => {
      const { config, weights, x } = build(s);
      const split = 1 + (cut % (s.T - 1));
      const whole = mla(x, weights, config, undefined, reference, mode);
      const cache = createMlaCache(config, mode, s.B);
      const first = mla(timeSlice(x, 0, split), weights, config, cache);
      const second = mla(timeSlice(x, split, s.T), weights, config, cache);
      expect(maxAbsDiff(first, timeSlice(whole, 0, split))).toBeLessThan(1e-6);
      expect(maxAbsDiff(second, timeSlice(whole, split, s.T))).toBeLessThan(1e-6);
    }), opts);
  });

  it("the absorb cache holds kv_lora_rank + qk_rope_head_dim numbers per token", () => {
    fc.assert(fc.property(setup, (s) => {
      const { config, weights, x } = build(s);
      const cache = createMlaCache(config, "absorb", s.B);
      mla(x, weights, config, cache);
      if (cache.mode !== "absorb") throw new Error("mode");
      const held = cache.latent.data.length + cache.pe.data.length;
      expect(held).toBe(s.B * s.T * (s.kvLora + s.dr));
      expect(mlaCacheNumbersPerToken(config, "absorb")).toBe(s.kvLora + s.dr);
      expect(mlaCacheNumbersPerToken(config, "naive")).toBe(s.H * (s.dn + s.dr + s.dv));
    }), opts);
  });

  it("is causal: changing a later token leaves earlier outputs exactly unchanged", () => {
    fc.assert(fc.property(setup.filter((s) => s.T >= 2), fc.constantFrom<MlaMode>("naive", "absorb"), (s, mode) => {
      const { config, weights, x } = build(s);
      const changed = { shape: x.shape, data: x.data.slice() };
      for (let b = 0; b < s.B; b++) changed.data[(b * s.T + s.T - 1) * s.D] += 1;
      const a = mla(x, weights, config, undefined, reference, mode);
      const c = mla(changed, weights, config, undefined, reference, mode);
      expect(timeSlice(a, 0, s.T - 1).data).toEqual(timeSlice(c, 0, s.T - 1).data);
      // A one-number latent normalises to ±its weight, so with kv_lora_rank 1 the values can stay put: the
      // perturbation only has to show where the latent keeps a direction.
      if (s.kvLora >= 2) expect(timeSlice(a, s.T - 1, s.T).data).not.toEqual(timeSlice(c, s.T - 1, s.T).data);
    }), opts);
  });
});

describe("MLA rejects bad arguments, naming them", () => {
  const config: MlaConfig = {
    hidden_size: 4, num_attention_heads: 2, q_lora_rank: 0, kv_lora_rank: 3, qk_nope_head_dim: 2,
    qk_rope_head_dim: 2, v_head_dim: 2, max_position_embeddings: 4,
  };
  const weights = initMla(new Random(1), config);
  const x = randBounded(new Random(2), [3, 4]);
  it.each([
    ["config.qk_rope_head_dim", { ...config, qk_rope_head_dim: 3 }],
    ["config.kv_lora_rank", { ...config, kv_lora_rank: 0 }],
    ["config.num_attention_heads", { ...config, num_attention_heads: 1.5 }],
    ["config.rope_scaling.factor", { ...config, rope_scaling: { factor: 0.5, original_max_position_embeddings: 2 } }],
    ["config.rope_scaling.mscale_all_dim", { ...config, rope_scaling: { factor: 2, original_max_position_embeddings: 2, mscale: 1, mscale_all_dim: 0.5 } }],
  ])("%s", (name, bad) => {
    expect(() => checkMlaConfig(bad as MlaConfig)).toThrow(name);
  });
  it("missing or misshapen weights", () => {
    expect(() => mla(x, { ...weights, q_proj: undefined }, config)).toThrow("weights.q_proj");
    expect(() => mla(x, { ...weights, o_proj: tensor([4, 3]) }, config)).toThrow("weights.o_proj");
    expect(() => mla(x, weights, { ...config, q_lora_rank: 2 })).toThrow("weights.q_a_proj");
  });
  it("bad input, mode, cache and length", () => {
    expect(() => mla(tensor([3, 5]), weights, config)).toThrow("x: expected shape");
    expect(() => mla(x, weights, config, undefined, reference, "fast" as MlaMode)).toThrow("mode");
    expect(() => mla(x, weights, config, createMlaCache(config, "naive"), reference, "absorb")).toThrow("mode");
    expect(() => mla(x, weights, config, createMlaCache(config, "absorb", 2))).toThrow("batch 2");
    const cache = createMlaCache(config);
    mla(x, weights, config, cache);
    expect(() => mla(sliceRows(x, 0, 2), weights, config, cache)).toThrow("max_position_embeddings");
  });
});

describe("golden cases of the MLA family", () => {
  const cases = mlaFamilyGoldenCases();
  it("cover the edge cases and run on the reference, finite and deterministic", async () => {
    const names = cases.map((c) => c.name);
    for (const edge of ["t1", "chunked", "dsa", "masked", "early", "patch.single", "video.f1"]) expect(names.some((n) => n.includes(edge)), edge).toBe(true);
    for (const c of cases) {
      const a = c.build();
      const [one, two] = [await c.run(referenceBackend, a.inputs, a.params), await c.run(referenceBackend, c.build().inputs, c.build().params)];
      for (const [name, t] of Object.entries(one)) {
        expect(t.data, `${c.name}: ${name}`).toEqual(two[name]!.data);
        expect([...t.data].every((v) => Number.isFinite(v) || v === -Infinity), `${c.name}: ${name}`).toBe(true);
      }
    }
  });
  it("report NotSupportedError on a backend without synchronous kernels", () => {
    const asyncOnly = { ...referenceBackend, kernels: undefined };
    for (const c of cases) {
      const { inputs, params } = c.build();
      expect(() => c.run(asyncOnly, inputs, params)).toThrow(NotSupportedError);
    }
  });
});

describe("head layout helpers (src/attention/heads.ts)", () => {
  it("split [B, T, H·(a + b)] into [B, H, T, a] and [B, H, T, b], by hand, and merge back", () => {
    // B = 1, T = 2, H = 2, widths (1, 2): token t, head h holds (a, b, b) at 6t + 3h.
    const x = tensor([1, 2, 6], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const [a, b] = splitHeads(x, 2, [1, 2]);
    expect(a!.shape).toEqual([1, 2, 2, 1]);
    expect([...a!.data]).toEqual([0, 6, 3, 9]);
    expect([...b!.data]).toEqual([1, 2, 7, 8, 4, 5, 10, 11]);
    expect([...mergeHeads(b!).data]).toEqual([1, 2, 4, 5, 7, 8, 10, 11]);
  });
  it("concatLast repeats a part with 1 on axis 1; concatTime appends positions per plane", () => {
    const perHead = tensor([1, 2, 2, 1], [1, 2, 3, 4]); // [B, H, T, 1]
    const shared = tensor([1, 1, 2, 1], [10, 20]); // one per token, shared by the heads
    expect([...concatLast([perHead, shared]).data]).toEqual([1, 10, 2, 20, 3, 10, 4, 20]);
    expect(() => concatLast([perHead, tensor([1, 2, 3, 1])])).toThrow("parts[1]");
    const cache = tensor([2, 1, 1], [1, 2]);
    expect([...concatTime(cache, tensor([2, 2, 1], [3, 4, 5, 6])).data]).toEqual([1, 3, 4, 2, 5, 6]);
    expect(() => concatTime(cache, tensor([2, 2, 2]))).toThrow("b");
  });
  it("appendTime equals concatTime step after step, grows one plane in place, and never rewrites a position", () => {
    const rng = new Random(5);
    for (const planes of [1, 3]) {
      let grown = tensor([planes, 0, 2]);
      let copied = grown;
      const kept: [Tensor, number[]][] = [];
      for (let step = 0; step < 40; step++) {
        const b = randBounded(rng, [planes, 1 + (step % 3), 2]);
        [grown, copied] = [appendTime(grown, b), concatTime(copied, b)];
        expect(grown.shape).toEqual(copied.shape);
        expect([...grown.data]).toEqual([...copied.data]);
        kept.push([grown, [...grown.data]]);
      }
      for (const [t, data] of kept) expect([...t.data]).toEqual(data); // every earlier tensor keeps its values
      const buffers = new Set(kept.slice(-4).map(([t]) => t.data.buffer)).size;
      expect(buffers).toBe(planes === 1 ? 1 : 4); // one plane: no copy per step
    }
    // Two caches sharing a history: the second append to the same tensor must not overwrite the first one's row.
    const base = appendTime(tensor([1, 0, 1]), tensor([1, 2, 1], [1, 2]));
    const first = appendTime(base, tensor([1, 1, 1], [3]));
    const second = appendTime(base, tensor([1, 1, 1], [4]));
    expect([...first.data]).toEqual([1, 2, 3]);
    expect([...second.data]).toEqual([1, 2, 4]);
    expect([...appendTime(first, tensor([1, 1, 1], [5])).data]).toEqual([1, 2, 3, 5]);
  });
  it("a cache copied by reference continues independently of the original, in both modes", () => {
    const rng = new Random(8);
    const weights = initMla(rng, cfg);
    const prompt = randBounded(rng, [1, 5, 8]);
    const [a, b] = [randBounded(rng, [1, 1, 8]), randBounded(rng, [1, 1, 8])];
    for (const mode of ["absorb", "naive"] as const) {
      const cache = createMlaCache(cfg, mode);
      mla(prompt, weights, cfg, cache);
      const fork = { ...cache };
      const outA = mla(a, weights, cfg, cache);
      const outB = mla(b, weights, cfg, fork);
      const alone = (x: Tensor) => {
        const own = createMlaCache(cfg, mode);
        mla(prompt, weights, cfg, own);
        return mla(x, weights, cfg, own);
      };
      expect(maxAbsDiff(outA, alone(a))).toBe(0);
      expect(maxAbsDiff(outB, alone(b))).toBe(0);
      expect(maxAbsDiff(mla(b, weights, cfg, cache), mla(b, weights, cfg, { ...fork }))).toBeGreaterThan(0); // a and b differ
    }
  });
  it("leaves the cache as it was when attention throws; uses a replaced kv_b_proj at once", () => {
    const rng = new Random(9);
    const weights = initMla(rng, cfg);
    const x = randBounded(rng, [2, 3, 8]);
    for (const [mode, B] of [["absorb", 1], ["absorb", 2], ["naive", 1], ["naive", 2]] as const) {
      const cache = createMlaCache(cfg, mode, B);
      mla(sliceRows(x, 0, B), weights, cfg, cache);
      const held = JSON.stringify(cache, (_, v) => (v instanceof Float32Array ? [...v] : v));
      const fail = () => {
        throw new Error("attend failed");
      };
      expect(() => mla(randBounded(rng, [B, 2, 8]), weights, cfg, cache, reference, mode, fail)).toThrow("attend failed");
      expect(cache.length).toBe(3);
      expect(JSON.stringify(cache, (_, v) => (v instanceof Float32Array ? [...v] : v))).toBe(held);
      const next = randBounded(rng, [B, 1, 8]);
      const fresh = createMlaCache(cfg, mode, B);
      mla(sliceRows(x, 0, B), weights, cfg, fresh);
      expect(maxAbsDiff(mla(next, weights, cfg, cache), mla(next, weights, cfg, fresh))).toBe(0); // and goes on as if never tried
    }
    // The absorbed W_uk and W_uvᵀ are kept per kv_b_proj tensor: a new tensor (what LoRA and quantisation make) is
    // folded afresh, and absorb still equals naive with it.
    const other = { ...weights, kv_b_proj: randBounded(rng, weights.kv_b_proj.shape, 0.5) };
    for (const w of [weights, other, weights]) {
      expect(maxAbsDiff(mla(x, w, cfg, undefined, reference, "absorb"), mla(x, w, cfg, undefined, reference, "naive"))).toBeLessThan(1e-6);
    }
    expect(maxAbsDiff(mla(x, weights, cfg), mla(x, other, cfg))).toBeGreaterThan(1e-4);
  });
});
