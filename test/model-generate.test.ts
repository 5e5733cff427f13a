import { describe, expect, it } from "vitest";
import { Random } from "../src/random.ts";
import { tensor } from "../src/tensor.ts";
import { runBatched, type BatchRequest } from "../src/model/batching.ts";
import { createCache } from "../src/model/cache.ts";
import { forward, forwardBatch } from "../src/model/forward.ts";
import { depthSweep } from "../src/model/depth.ts";
import { generate, sample } from "../src/model/generate.ts";
import { initModel } from "../src/model/weights.ts";
import { thrown } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const model = initModel(testConfig({ init_std: 0.3 }));

describe("sampling", () => {
  const logits = tensor([5], [1, 3, 3, 0, 2]);
  it("greedy takes the highest logit, ties to the lower id", () => {
    expect(sample(logits, new Random(0))).toBe(1);
  });
  it("top-k 1 is greedy at any temperature; top-p keeps the smallest nucleus", () => {
    expect(sample(logits, new Random(5), { temperature: 2, topK: 1 })).toBe(1);
    const seen = new Set<number>();
    const rng = new Random(1);
    for (let i = 0; i < 200; i++) seen.add(sample(logits, rng, { temperature: 1, topP: 0.5 }));
    expect([...seen].sort()).toEqual([1, 2]); // the two tied best hold ~0.63 of the mass: nothing else survives
  });
  it("temperature sampling follows the softmax and the seed", () => {
    const draw = (seed: number) => {
      const rng = new Random(seed);
      return Array.from({ length: 4000 }, () => sample(logits, rng, { temperature: 1 }));
    };
    expect(draw(3)).toEqual(draw(3));
    const counts = [0, 0, 0, 0, 0];
    for (const t of draw(4)) counts[t]!++;
    const z = [1, 3, 3, 0, 2].reduce((a, v) => a + Math.exp(v), 0);
    counts.forEach((c, i) => expect(Math.abs(c / 4000 - Math.exp([1, 3, 3, 0, 2][i]!) / z)).toBeLessThan(0.03));
  });
  it("names a bad option", () => {
    expect(() => sample(logits, new Random(0), { topP: 0 })).toThrow(/topP/);
    expect(() => sample(logits, new Random(0), { temperature: -1 })).toThrow(/temperature: expected a finite number in \[0, Infinity\]/);
  });
});

describe("generate", () => {
  it("continues a prompt, deterministically, and stops at the length", () => {
    const a = generate(model, [256, 104, 105], { maxTokens: 6, temperature: 0.8, topK: 20, seed: 7, stopToken: null });
    const b = generate(model, [256, 104, 105], { maxTokens: 6, temperature: 0.8, topK: 20, seed: 7, stopToken: null });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).toHaveLength(6);
    expect(a.stopReason).toBe("length");
    expect(a.cache.length).toBe(3 + 5);
  });
  it("stops at the stop token", () => {
    const first = generate(model, [256, 104], { maxTokens: 1 }).tokens[0]!;
    const run = generate(model, [256, 104], { maxTokens: 5, stopToken: first });
    expect(run.tokens).toEqual([first]);
    expect(run.stopReason).toBe("eos");
  });
  it("says when the context ended it, and refuses a prompt longer than the context, naming the limit", () => {
    const max = model.config.max_position_embeddings;
    const prompt = Array.from({ length: max - 3 }, (_, i) => 65 + (i % 26));
    const run = generate(model, prompt, { maxTokens: 10, stopToken: null });
    // Three positions are left: three tokens fed, a fourth sampled with no position to run it at.
    expect(run.tokens).toHaveLength(4);
    expect(run.stopReason).toBe("context");
    expect(generate(model, prompt, { maxTokens: 4, stopToken: null }).stopReason).toBe("length");
    expect(thrown(() => generate(model, [...prompt, 1, 2, 3, 4], { maxTokens: 1 }))).toBe(`prompt: expected at most max_position_embeddings = ${max} tokens, got ${max + 1}`);
  });
});

describe("continuous batching", () => {
  const requests: BatchRequest[] = [
    { id: "a", prompt: [256, 72, 101, 108, 108, 111], maxTokens: 3 },
    { id: "b", prompt: [256, 65], maxTokens: 6, temperature: 0.9, seed: 3 },
    { id: "c", prompt: [256, 100, 101, 101, 112, 32, 115, 101, 101, 107], maxTokens: 2, topK: 5, temperature: 1, seed: 9 },
    { id: "d", prompt: [256, 120, 121], maxTokens: 4 },
  ];

  it("gives each request exactly the tokens it gets alone, admitting new requests as others finish", () => {
    const result = runBatched(model, requests, { maxBatch: 2, stopToken: null });
    for (const r of requests) {
      const alone = generate(model, [...r.prompt], { ...r, stopToken: null });
      expect(result.outputs.get(r.id)).toEqual(alone.tokens);
    }
    // c and d wait for a free row, then join a batch that is already decoding.
    const admittedAt = (id: string) => result.steps.findIndex((s) => s.admitted.includes(id));
    expect(admittedAt("a")).toBe(0);
    expect(admittedAt("c")).toBeGreaterThan(0);
    expect(result.steps.some((s) => s.rows.length === 2 && s.width > 1 && s.realTokens < 2 * s.width)).toBe(true);
    expect(result.rowUtilisation).toBeGreaterThan(0.5);
    expect(result.rowUtilisation).toBeLessThanOrEqual(1);
    expect(result.tokenUtilisation).toBeGreaterThan(0);
    expect(result.tokenUtilisation).toBeLessThan(1);
  });

  it("stays equal to each request alone with early exit on", () => {
    const result = runBatched(model, requests, { maxBatch: 3, stopToken: null, exitThreshold: 0.05 });
    for (const r of requests) {
      expect(result.outputs.get(r.id)).toEqual(generate(model, [...r.prompt], { ...r, stopToken: null, exitThreshold: 0.05 }).tokens);
    }
  });

  it("names a bad request", () => {
    expect(() => runBatched(model, [{ id: "x", prompt: [], maxTokens: 1 }], { maxBatch: 1 })).toThrow(/requests\[0\].prompt/);
    expect(() => runBatched(model, requests, { maxBatch: 0 })).toThrow(/maxBatch/);
  });
});

describe("depth sweep", () => {
  it("reports full depth and full agreement above 1, fewer layers lower", async () => {
    const [never, low] = await depthSweep(model, [256, 104, 101, 108, 108, 111], [1.5, 0]);
    expect(never!.meanLayers).toBe(3);
    expect(never!.agreement).toBe(1);
    expect(low!.meanLayers).toBe(1);
    expect(low!.ffnSkipped).toBeCloseTo(2 / 3);
  });
});

describe("padded batch forward", () => {
  it("padding rows compute nothing and give zero logits; real rows equal their own forward", () => {
    const caches = [createCache(model.config), createCache(model.config), createCache(model.config)];
    const result = forwardBatch(model, [[256, 1, 2], [256, 258, 258], [258, 258, 258]], [3, 1, 0], { caches });
    expect(result.logits.shape).toEqual([3, 3, 260]);
    expect(caches.map((c) => c.length)).toEqual([3, 1, 0]);
    const alone = forward(model, [256, 1, 2]).logits.data;
    expect(result.logits.data.subarray(0, 3 * 260)).toEqual(alone);
    expect(result.logits.data.subarray(4 * 260).every((v) => v === 0)).toBe(true);
    expect(() => forwardBatch(model, [[1, 2], [3]], [2, 1], { caches: caches.slice(0, 2) })).toThrow(/tokens\[1\]: expected 2 tokens/);
    expect(() => forward(model, [])).toThrow(/tokens: expected at least one token id/);
  });
});
