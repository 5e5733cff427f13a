// The one forward (src/model/forward.ts) on WASM's device kernels (wasm/device-kernels.ts: values kept in the
// module's memory) against the same forward on the reference: logits within the whole-model bound (NMSE <= 1e-7,
// spec/golden.md) and the same greedy tokens, the same experts at every MoE layer, the same exit layers, every traced
// intermediate; token-by-token decode through a WASM cache equal to prefill; every attention kind (mla absorbed
// and naive, mha with grouped kv heads, decay relative and as-written, segmented, sparse on the device; dsa's
// top-k and sparse's block selection on the host); memory flat over a long decode and given back when a cache is released; check mode (NaN-poisoned
// outputs, guard bytes verified after every kernel); errors that name the argument.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCache, releaseCache } from "../src/model/cache.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { forward, forwardBatch } from "../src/model/forward.ts";
import { generate, generateAsync } from "../src/model/generate.ts";
import { preset } from "../src/model/presets.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { quantizeModel } from "../src/quant/model.ts";
import { stepRecord } from "../src/step/record.ts";
import type { Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { createBackend, type WasmBackend } from "../wasm/backend.ts";
import { KEPT_FORWARDS } from "../wasm/device-kernels.ts";
import { argmaxRows, cli, nmse } from "./helpers.ts";

let wasm: WasmBackend;
let checked: WasmBackend;
beforeAll(async () => {
  wasm = await createBackend({ threads: 2 });
  checked = await createBackend({ threads: 1, check: true }); // NaN-filled outputs, guard bytes verified per kernel
});
afterAll(async () => {
  await wasm.dispose();
  await checked.dispose();
});

const rows = (t: Tensor, from: number, to: number) => {
  const V = t.shape[1]!;
  return { shape: [to - from, V], data: t.data.subarray(from * V, to * V) };
};
const indices = (trace: ReturnType<typeof createTrace>, L: number) =>
  Array.from({ length: L }, (_, l) => Array.from(trace.tensors.get(`layers.${l}.mlp.router.indices`)?.data ?? []));

const tokens = Array.from("The tiny model, resident in WASM.", (ch) => ch.charCodeAt(0));
const kinds: [string, Partial<ModelConfig>][] = [
  ["mla (absorbed)", {}],
  ["mla (naive)", { mla_mode: "naive" }],
  ["mha", { attention_kind: "mha", num_key_value_heads: 2 }],
  ["decay (relative)", { attention_kind: "decay", num_key_value_heads: 2, decay_gamma: "retnet" }],
  ["dense mla", { first_k_dense_replace: 4 }],
  ["segmented", { attention_kind: "segmented", segment_size: 8, segment_overlap: 4 }],
  ["sparse", { attention_kind: "sparse" }],
  ["dsa", { attention_kind: "dsa" }],
  ["decay as-written", { attention_kind: "decay", decay_mode: "as-written" }],
  ["mixed kinds", { attention_kind: ["mla", "segmented", "mha", "decay"], num_key_value_heads: 2 }],
];

describe("the one forward on wasm", () => {
  for (const [name, overrides] of kinds) {
    const model = initModel(preset("tiny", overrides));
    const L = model.config.num_hidden_layers;

    it(`${name}: prefill matches the reference, logits and experts`, () => {
      const [refTrace, trace] = [createTrace("layers.*.mlp.router.indices"), createTrace("layers.*.mlp.router.indices")];
      const ref = forward(model, tokens, { trace: refTrace });
      const out = forward(model, tokens, { backend: wasm, trace });
      const error = nmse(out.logits, ref.logits);
      expect(error).toBeLessThan(1e-7);
      expect(error, "float32 kernels: not the reference's own numbers").toBeGreaterThan(0);
      expect(argmaxRows(out.logits)).toEqual(argmaxRows(ref.logits));
      expect(indices(trace, L)).toEqual(indices(refTrace, L));
      expect(out.moe.map((s) => s?.tokens ?? null)).toEqual(ref.moe.map((s) => s?.tokens ?? null));
    });

    it(`${name}: token-by-token decode through a wasm cache equals prefill and the reference`, () => {
      const prefill = forward(model, tokens, { backend: wasm });
      const refCache = createCache(model.config);
      const cache = createCache(model.config, { backend: wasm }); // grows as it fills
      try {
        const steps = [tokens.slice(0, 5), ...tokens.slice(5, 12).map((t) => [t]), tokens.slice(12)];
        let at = 0;
        for (const step of steps) {
          const ref = forward(model, step, { cache: refCache });
          const out = forward(model, step, { cache, backend: wasm });
          expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
          expect(nmse(out.logits, rows(prefill.logits, at, at + step.length))).toBeLessThan(1e-7);
          expect(argmaxRows(out.logits)).toEqual(argmaxRows(ref.logits));
          at += step.length;
          expect(cache.length).toBe(at);
        }
      } finally {
        releaseCache(cache);
      }
    });
  }

  it("generates the reference's greedy tokens, for every device attention kind", () => {
    for (const [, overrides] of kinds.slice(0, 4)) {
      const model = initModel(preset("tiny", overrides));
      const out = generate(model, tokens, { maxTokens: 12, backend: wasm });
      releaseCache(out.cache);
      expect(out.tokens).toEqual(generate(model, tokens, { maxTokens: 12 }).tokens);
    }
  });

  it("records every traced intermediate the reference does", () => {
    const model = initModel(preset("tiny"));
    const refTrace = createTrace("*");
    forward(model, tokens, { trace: refTrace, exitThreshold: 2 }); // never exits, records the confidences
    const trace = createTrace("*");
    forward(model, tokens, { backend: wasm, trace, exitThreshold: 2 });
    const expected = [...refTrace.tensors.keys()];
    expect(expected.some((n) => n.endsWith(".attn.probs"))).toBe(true);
    expect([...trace.tensors.keys()].sort()).toEqual(expected.sort());
    for (const name of expected) {
      const want = refTrace.tensors.get(name)!, got = trace.tensors.get(name)!;
      expect(got.shape, name).toEqual(want.shape);
      if (want.data instanceof Float32Array) {
        // Pre-softmax scores hold -Infinity for hidden keys: the same keys on both, the rest within NMSE.
        const hidden = (t: typeof want) => Array.from(t.data, (v) => v === -Infinity);
        expect(hidden(got), name).toEqual(hidden(want));
        const finite = (t: typeof want) => ({ data: t.data.filter((v) => v !== -Infinity) });
        expect(nmse(finite(got), finite(want)), name).toBeLessThan(1e-7);
      } else expect(Array.from(got.data), name).toEqual(Array.from(want.data)); // tokens, expert indices, kept flags
    }
  });

  it("lets a hook replace a value on the device, as on the reference", () => {
    const model = initModel(preset("tiny"));
    const hooks = { "layers.1.attn.out": (v: Tensor) => ({ shape: [...v.shape], data: v.data.map((x) => 3 * x) }) };
    const ref = forward(model, tokens, { hooks });
    const out = forward(model, tokens, { backend: wasm, hooks });
    expect(nmse(ref.logits, forward(model, tokens).logits), "the hook changes the logits").toBeGreaterThan(1e-4);
    expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
  });

  it("gives the reference's step record", () => {
    const model = initModel(preset("tiny"));
    const prompt = "Step in WASM";
    const ids = Array.from(prompt, (ch) => ch.charCodeAt(0));
    const onWasm = stepRecord(model, prompt, ids, { backend: wasm });
    const reference = stepRecord(model, prompt, ids);
    expect(onWasm.backend).toBe("wasm");
    onWasm.layers.forEach((layer, l) => {
      expect(layer.routing?.tokens.map((t) => t.experts)).toEqual(reference.layers[l]!.routing?.tokens.map((t) => t.experts));
    });
    expect(onWasm.next.map((p) => p.id)).toEqual(reference.next.map((p) => p.id));
  });

  it("exits early where the reference does", () => {
    const model = initModel(preset("tiny"));
    const options = { exitThreshold: 0.001, minLayers: 1 };
    const ref = forward(model, tokens, options);
    expect(new Set(ref.exitLayers).size, "the case needs tokens exiting at different layers").toBeGreaterThan(1);
    const out = forward(model, tokens, { ...options, backend: wasm });
    expect(Array.from(out.exitLayers)).toEqual(Array.from(ref.exitLayers));
    expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
    expect(out.moe.map((s) => s?.tokens ?? null)).toEqual(ref.moe.map((s) => s?.tokens ?? null));
  });

  it("runs a padded batch, each row through its own cache", () => {
    const model = initModel(preset("tiny", { attention_kind: "mha", num_key_value_heads: 2 }));
    const batch = [tokens.slice(0, 10), tokens.slice(10, 20)];
    const lengths = [10, 6];
    const caches = batch.map(() => createCache(model.config, { backend: wasm }));
    try {
      const out = forwardBatch(model, batch, lengths, { caches, backend: wasm });
      const ref = forwardBatch(model, batch, lengths, { caches: batch.map(() => createCache(model.config)) });
      expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
      expect(caches.map((c) => c.length)).toEqual(lengths);
    } finally {
      caches.forEach(releaseCache);
    }
  });

  it("runs a quantised model through its quantLinear kernel", () => {
    const model = initModel(preset("tiny"));
    for (const scheme of ["int8.g32", "int4.g32"]) {
      const q = quantizeModel(model, scheme);
      const ref = forward(q, tokens);
      const out = forward(q, tokens, { backend: wasm });
      expect(nmse(out.logits, ref.logits), scheme).toBeLessThan(1e-7);
      expect(argmaxRows(out.logits)).toEqual(argmaxRows(ref.logits));
    }
  });

  it("runs the MoE under a weight budget of about one packed expert weight, as the reference does", async () => {
    // An expert's gate is [64, 128] floats, 32 KiB packed: fetching the next weight evicts the last.
    const small = await createBackend({ threads: 1, weightBudget: 40 * 1024 });
    try {
      const model = initModel(preset("tiny"));
      const [refTrace, trace] = [createTrace("layers.*.mlp.router.indices"), createTrace("layers.*.mlp.router.indices")];
      const ref = forward(model, tokens, { trace: refTrace });
      for (let i = 0; i < 2; i++) {
        const out = forward(model, tokens, { backend: small, trace });
        expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
      }
      expect(indices(trace, 4)).toEqual(indices(refTrace, 4));
      // A weight larger than the budget (the head: [260, 128], packed in panels of 8 rows) is still packed, alone.
      const { vocab_size: V, hidden_size: D } = model.config;
      expect(small.stats().weightBytes).toBeLessThanOrEqual(Math.ceil(V / 8) * 8 * D * 4);
    } finally {
      await small.dispose();
    }
  });

  it("runs in check mode: every output written, no kernel writing outside its block", () => {
    for (const overrides of [{}, { mla_mode: "naive" as const }, { attention_kind: "mha" as const, num_key_value_heads: 2 }, { attention_kind: ["mla", "segmented", "decay", "sparse"] as ModelConfig["attention_kind"], num_key_value_heads: 2 }]) {
      const model = initModel(preset("tiny", overrides));
      const ref = forward(model, tokens);
      const cache = createCache(model.config, { backend: checked, capacity: 8 }); // grows (a copy) on the way
      try {
        const prefill = forward(model, tokens.slice(0, 20), { cache, backend: checked });
        const step = forward(model, tokens.slice(20, 21), { cache, backend: checked });
        expect(nmse(prefill.logits, rows(ref.logits, 0, 20))).toBeLessThan(1e-7);
        expect(nmse(step.logits, rows(ref.logits, 20, 21))).toBeLessThan(1e-7);
      } finally {
        releaseCache(cache);
      }
    }
  });

  it("keeps memory flat over a long decode, and a released cache gives its memory back", () => {
    const model = initModel(preset("tiny"));
    // A long prompt first: every expert gets a token (packed on first use), the arena grows to a long context's size.
    forward(model, Array.from({ length: 256 }, (_, i) => (i * 7) % 256), { backend: wasm });
    // Short forwards until the long one's pooled blocks have gone back (the pool keeps a size class KEPT_FORWARDS).
    for (let i = 0; i <= KEPT_FORWARDS; i++) forward(model, tokens, { backend: wasm });
    const before = wasm.stats();
    const cache = createCache(model.config, { backend: wasm, capacity: 300 });
    forward(model, tokens, { cache, backend: wasm });
    for (let i = 0; i < 30; i++) forward(model, [32 + (i % 90)], { cache, backend: wasm });
    const early = wasm.stats();
    for (let i = 30; i < 230; i++) forward(model, [32 + (i % 90)], { cache, backend: wasm });
    const late = wasm.stats();
    expect(late.memoryBytes).toBe(early.memoryBytes);
    expect(late.liveBytes).toBe(early.liveBytes);
    expect(late.weightBytes).toBe(before.weightBytes);
    releaseCache(cache);
    // Short forwards: the long run's pooled blocks they do not use go back when the KEPT_FORWARDS-th of them ends. No
    // more than before is live then (a pooled block the cache took and freed with it can leave less).
    for (let i = 0; i < KEPT_FORWARDS; i++) forward(model, tokens, { backend: wasm });
    expect(wasm.stats().liveBytes).toBeLessThanOrEqual(before.liveBytes);
  });

  it("generates through a cache it frees (generateAsync); `tinyseek generate --backend wasm` gives the reference's tokens", async () => {
    const model = initModel(preset("tiny"));
    forward(model, Array.from({ length: 256 }, (_, i) => (i * 7) % 256), { backend: wasm }); // every expert packed
    for (let i = 0; i < KEPT_FORWARDS; i++) forward(model, tokens, { backend: wasm }); // its pooled blocks go back
    const before = wasm.stats().liveBytes;
    const streamed: number[] = [];
    const got = await generateAsync(model, tokens, { maxTokens: 12, backend: wasm, onToken: (t) => streamed.push(t) });
    expect(got.tokens).toEqual(generate(model, tokens, { maxTokens: 12 }).tokens);
    expect(streamed).toEqual(got.tokens);
    // The cache's blocks are back; the forward's own pool returns to its size once the steps' sizes have gone unused
    // for KEPT_FORWARDS forwards.
    for (let i = 0; i < KEPT_FORWARDS; i++) forward(model, tokens, { backend: wasm });
    expect(wasm.stats().liveBytes).toBe(before);
    const args = ["generate", "--prompt", "Alice was", "--max-tokens", "8", "--json"];
    const [ref, onWasm] = [await cli(...args), await cli(...args, "--backend", "wasm")];
    expect(JSON.parse(onWasm.out).tokens).toEqual(JSON.parse(ref.out).tokens);
  });

  it("names the argument on a bad call", () => {
    const model: Model = initModel(preset("tiny"));
    expect(() => forward(model, [], { backend: wasm })).toThrow(/tokens/);
    expect(() => forward(model, [1, 999], { backend: wasm })).toThrow(/tokens\[1\]/);
    expect(() => forward(model, [1, 2], { backend: wasm, minLayers: 9 })).toThrow(/minLayers/);
    expect(() => forward(model, [1], { backend: wasm, cache: createCache(model.config) })).toThrow(/cache.*backend "wasm"/);
    const cache = createCache(model.config, { backend: wasm, capacity: 4 });
    forward(model, [1, 2, 3], { cache, backend: wasm });
    expect(() => forward(model, [1], { cache })).toThrow(/cache/); // the reference cannot run a wasm cache
    releaseCache(cache);
    expect(() => forward(model, [1], { cache, backend: wasm })).toThrow(/cache/); // released
    const other = initModel(preset("tiny", { num_hidden_layers: 2 }));
    const otherCache = createCache(other.config, { backend: wasm, capacity: 8 });
    expect(() => forward(model, [1], { cache: otherCache, backend: wasm })).toThrow(/cache/);
    releaseCache(otherCache);
  });
});
