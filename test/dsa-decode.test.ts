// DSA's indexer step after step (src/attention/dsa.ts; a model's layer, src/model/dsa-layer.ts, checks its config at
// every step): what makes a decode step cheap — keys that grow in place, a config checked once, a top-k without a
// sort — and what must not change with it: the selection (ties and all) and a failed step's keys dropped.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkDsaConfig, createDsaCache, dsa, indexerScores, initDsa, topKeys, type DsaConfig, type DsaWeights } from "../src/attention/dsa.ts";
import { createCache } from "../src/model/cache.ts";
import { forward } from "../src/model/forward.ts";
import { initModel } from "../src/model/weights.ts";
import { Random, randBounded } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { testConfig } from "./model-fixtures.ts";

const config: DsaConfig = {
  hidden_size: 6, num_attention_heads: 2, q_lora_rank: 3, kv_lora_rank: 3, qk_nope_head_dim: 2, qk_rope_head_dim: 2,
  v_head_dim: 3, max_position_embeddings: 64, index_n_heads: 2, index_head_dim: 5, index_topk: 3,
};

function weightsOf(seed: number): DsaWeights {
  const rng = new Random(seed);
  const boost = (w: Record<string, Tensor>) =>
    Object.fromEntries(Object.entries(w).map(([name, t]) => [name, /norm|layernorm/.test(name) ? t : randBounded(rng, t.shape, 0.5)]));
  const { indexer, ...attention } = initDsa(rng, config);
  return { ...boost(attention as unknown as Record<string, Tensor>), indexer: boost(indexer as unknown as Record<string, Tensor>) } as unknown as DsaWeights;
}

const token = (rng: Random) => randBounded(rng, [1, 1, 6]);

describe("the indexer's keys step after step", () => {
  it("one sequence's keys grow in place: a step writes its own key after the others, and earlier key tensors keep their values", () => {
    const weights = weightsOf(1);
    const rng = new Random(2);
    const cache = { mla: { length: 0 }, indexKeys: createDsaCache(config).indexKeys };
    const held: { keys: Tensor; values: Float32Array }[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for (let t = 0; t < 20; t++) {
      indexerScores(token(rng), weights, config, cache);
      cache.mla.length++;
      held.push({ keys: cache.indexKeys, values: cache.indexKeys.data.slice() });
      buffers.add(cache.indexKeys.data.buffer);
    }
    // A buffer twice the size when full: a handful of buffers for 20 steps, not one (a copy of every key) per step.
    expect(buffers.size).toBeLessThanOrEqual(3);
    for (const { keys, values } of held) expect(keys.data).toEqual(values);
    expect(cache.indexKeys.shape).toEqual([1, 20, 5]);
  });

  it("after a failed step, the next one scores and selects over the keys the cache held, as a fresh cache does", () => {
    const weights = weightsOf(3);
    const rng = new Random(4);
    const history = Array.from({ length: 9 }, () => token(rng));
    const [lost, next] = [token(rng), token(rng)];
    const cache = createDsaCache(config, "naive");
    for (const x of history) dsa(x, weights, config, cache);
    const before = cache.indexKeys;
    const kept = before.data.slice();
    // The indexer runs (and appends its key) before MLA refuses the mode: the call fails after it.
    expect(() => dsa(lost, weights, config, cache, undefined, "absorb")).toThrow("mode");
    expect(cache.indexKeys).toBe(before);
    const after = dsa(next, weights, config, cache);
    const fresh = createDsaCache(config, "naive");
    for (const x of history) dsa(x, weights, config, fresh);
    const expected = dsa(next, weights, config, fresh);
    expect(after.scores.data).toEqual(expected.scores.data);
    expect(after.selected.data).toEqual(expected.selected.data);
    expect(after.out.data).toEqual(expected.out.data);
    expect(before.data).toEqual(kept);
  });

  it("a model's layer drops the keys of a failed forward: a different continuation selects what a fresh cache does", () => {
    const model = initModel(testConfig({ attention_kind: "dsa", index_n_heads: 2, index_head_dim: 12, index_topk: 3, init_std: 0.3 }));
    const prompt = [256, 84, 104, 101, 32, 113];
    const stop = { "layers.1.attn.out": () => { throw new Error("stop"); } }; // layers 0 and 1 ran their indexers
    const names = "layers.*.attn.selected,layers.*.attn.index_scores";
    const cache = createCache(model.config);
    forward(model, prompt, { cache });
    expect(() => forward(model, [50, 60, 70], { cache, hooks: stop })).toThrow("stop");
    const trace = createTrace(names);
    const logits = forward(model, [1, 2], { cache, trace }).logits.data;
    const fresh = createCache(model.config);
    forward(model, prompt, { cache: fresh });
    const freshTrace = createTrace(names);
    expect(logits).toEqual(forward(model, [1, 2], { cache: fresh, trace: freshTrace }).logits.data);
    expect([...trace.tensors.keys()]).toEqual([...freshTrace.tensors.keys()]);
    for (const [name, t] of freshTrace.tensors) expect(trace.tensors.get(name)!.data, name).toEqual(t.data);
  });
});

describe("checkDsaConfig", () => {
  it("checks a frozen config (a model's) once: the same checked config every time, and a checked one is its own", () => {
    const frozen = Object.freeze({ ...config });
    const checked = checkDsaConfig(frozen);
    expect(checkDsaConfig(frozen)).toBe(checked);
    expect(checkDsaConfig(checked)).toBe(checked);
    expect(Object.isFrozen(checked)).toBe(true);
    expect(checked).toMatchObject({ ...config, rope_theta: 10000, rms_norm_eps: 1e-6 });
    // Only an answer is kept: a bad frozen config fails every time it is checked.
    const bad = Object.freeze({ ...config, index_topk: 0 });
    for (let i = 0; i < 2; i++) expect(() => checkDsaConfig(bad)).toThrow("config.index_topk: expected an integer >= 1, got 0");
  });
});

describe("topKeys", () => {
  /** The definition, written with comparisons (no subtraction of scores): keys by score descending, ties to the lower key. */
  const definition = (row: number[], k: number) =>
    row.map((_, s) => s).filter((s) => row[s] !== -Infinity)
      .sort((a, b) => (row[a]! > row[b]! ? -1 : row[a]! < row[b]! ? 1 : a - b))
      .slice(0, k).sort((a, b) => a - b);
  // Scores from a few values, not randBounded: ties, infinities and -0 are what a top-k can get wrong.
  const values = fc.constantFrom(0, -0, 0.5, 1, 1, 2, -1, Infinity, -Infinity, -Infinity);
  const cases = fc.integer({ min: 1, max: 40 }).chain((L) =>
    fc.tuple(fc.array(fc.array(values, { minLength: L, maxLength: L }), { minLength: 1, maxLength: 3 }), fc.integer({ min: 1, max: 20 })));

  it("keeps each row's k best keys, ties to the lower key, ascending, padded with -1", () => {
    fc.assert(fc.property(cases, ([rows, k]) => {
      const [T, L] = [rows.length, rows[0]!.length];
      const got = topKeys(tensor([1, T, L], rows.flat()), k);
      const width = Math.min(k, L);
      expect(got.shape).toEqual([1, T, width]);
      rows.forEach((row, t) => {
        const want = definition(row, width);
        expect([...got.data.subarray(t * width, (t + 1) * width)]).toEqual([...want, ...Array<number>(width - want.length).fill(-1)]);
      });
    }), { numRuns: 300 });
  });

  it("a row with a NaN score still selects min(k, finite) distinct keys, ascending, never a -Infinity one", () => {
    const row = [1, NaN, 3, -Infinity, 3, 0, NaN, 2];
    const keys = [...topKeys(tensor([1, 1, 8], row), 4).data];
    expect(keys).toHaveLength(4);
    expect(keys.every((s, i) => s >= 0 && row[s] !== -Infinity && (i === 0 || s > keys[i - 1]!))).toBe(true);
  });
});
