// The whole model on the WASM backend against the reference: logits within the whole-model bound of spec/golden.md
// (NMSE <= 1e-7) and identical greedy tokens, for a prompt and for decode steps through the KV cache.

import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { Backend } from "../src/backend.ts";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { generate } from "../src/model/generate.ts";
import { argmax } from "../src/ops.ts";
import { forward } from "../src/model/forward.ts";
import { preset } from "../src/model/presets.ts";
import { initModel, modelParams } from "../src/model/weights.ts";
import type { Tensor } from "../src/tensor.ts";
import { createBackend, wasmStats } from "../wasm/backend.ts";
import { nmse } from "./helpers.ts";


let wasm: Backend;
beforeAll(async () => {
  wasm = await createBackend({ threads: 2 });
});
afterAll(() => wasm.dispose());

describe("model on wasm", () => {
  const model = initModel(preset("tiny"));
  const prompt = [1, 84, 104, 101, 32, 113, 117, 105, 99, 107];

  it("matches the reference's logits, prompt and decode steps", () => {
    const refCache = createCache(model.config), wasmCache = createCache(model.config, { backend: wasm });
    onTestFinished(() => releaseCache(wasmCache));
    let tokens = prompt;
    for (let step = 0; step < 4; step++) {
      const ref = forward(model, tokens, { cache: refCache }).logits;
      const out = forward(model, tokens, { cache: wasmCache, backend: wasm }).logits;
      expect(nmse(out, ref), `step ${step}`).toBeLessThan(1e-7);
      const V = ref.shape[ref.shape.length - 1]!;
      const last = (t: Tensor) => t.data.subarray(t.data.length - V);
      expect(argmax(last(out))).toBe(argmax(last(ref)));
      tokens = [argmax(last(ref))];
    }
  });

  it("generates the same greedy tokens", () => {
    const ref = generate(model, prompt, { maxTokens: 8 });
    const out = generate(model, prompt, { maxTokens: 8, backend: wasm });
    releaseCache(out.cache);
    expect(out.tokens).toEqual(ref.tokens);
  });

  it("keeps memory flat over a long generation", () => {
    const cache = createCache(model.config, { backend: wasm }); // grows as it fills (doubling)
    forward(model, prompt, { cache, backend: wasm });
    const step = (i: number) => forward(model, [32 + (i % 90)], { cache, backend: wasm });
    for (let i = 0; i < 30; i++) step(i);
    const early = wasmStats(wasm)!;
    for (let i = 30; i < 230; i++) step(i);
    const late = wasmStats(wasm)!;
    // Weights are packed on first use (an expert when it first gets a token), so they may still be arriving, but
    // never beyond the model's own size; the per-call arena grows with the cache by a few KiB a step at most.
    const modelBytes = [...modelParams(model).values()].reduce((sum, t) => sum + t.data.byteLength, 0);
    expect(late.weightBytes).toBeLessThanOrEqual(modelBytes);
    expect(late.memoryBytes).toBeLessThanOrEqual(early.memoryBytes + (1 << 20));
    releaseCache(cache);
  });
});
