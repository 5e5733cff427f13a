// The WASM-resident forward (src/model/resident.ts over wasm/model.ts) against the reference forward: logits within
// the whole-model bound (NMSE <= 1e-7, golden.md) and the same greedy tokens, the same experts at every MoE layer,
// the same exit layers, every traced intermediate; decode through the resident cache equal to prefill; memory flat
// over a long decode and given back when a cache is released; errors that name the argument or the feature.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotSupportedError } from "../src/backend.ts";
import { createCache } from "../src/model/cache.ts";
import { type ModelConfig } from "../src/model/config.ts";
import { generate } from "../src/model/generate.ts";
import { forward } from "../src/model/model.ts";
import { generateResident } from "../src/model/resident.ts";
import { preset } from "../src/model/presets.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { stepRecord, stepRecordOnDevice } from "../src/step/record.ts";
import { type Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { createBackend, type WasmBackend } from "../wasm/backend.ts";
import { createWasmCache, releaseWasmCache, wasmOps } from "../wasm/model.ts";
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

const tokens = Array.from("The tiny model, resident in WASM.", (ch) => ch.charCodeAt(0));
const kinds: [string, Partial<ModelConfig>][] = [
  ["mla", {}],
  ["mha", { attention_kind: "mha", num_key_value_heads: 2 }],
  ["decay", { attention_kind: "decay", num_key_value_heads: 2, decay_gamma: "retnet" }],
  ["dense mla", { first_k_dense_replace: 4 }],
];

describe("wasm resident forward", () => {
  for (const [name, overrides] of kinds) {
    const model = initModel(preset("tiny", overrides));

    it(`${name}: prefill matches the reference, logits and experts`, async () => {
      const trace = createTrace("layers.*.mlp.router.indices");
      const ref = forward(model, tokens, { trace });
      const out = await wasm.forwardModel(model, tokens);
      expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
      expect(argmaxRows(out.logits)).toEqual(argmaxRows(ref.logits));
      out.routing.forEach((r, l) => expect(r?.experts ?? null, `layer ${l}`).toEqual(trace.tensors.get(`layers.${l}.mlp.router.indices`)?.data ?? null));
      expect(out.moe.map((s) => s?.tokens ?? null)).toEqual(ref.moe.map((s) => s?.tokens ?? null));
    });

    it(`${name}: token-by-token decode through the resident cache equals prefill and the reference`, async () => {
      const prefill = await wasm.forwardModel(model, tokens);
      const refCache = createCache(model.config);
      const cache = createWasmCache(wasm, model, 64);
      try {
        const steps = [tokens.slice(0, 5), ...tokens.slice(5, 12).map((t) => [t]), tokens.slice(12)];
        let at = 0;
        for (const step of steps) {
          const ref = forward(model, step, { cache: refCache });
          const out = await wasm.forwardModel(model, step, { cache });
          expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
          expect(nmse(out.logits, rows(prefill.logits, at, at + step.length))).toBeLessThan(1e-7);
          expect(argmaxRows(out.logits)).toEqual(argmaxRows(ref.logits));
          at += step.length;
          expect(cache.length).toBe(at);
        }
      } finally {
        releaseWasmCache(wasm, cache);
      }
    });
  }

  it("records every traced intermediate the reference does, less the probabilities", async () => {
    const model = initModel(preset("tiny"));
    const refTrace = createTrace("*");
    forward(model, tokens, { trace: refTrace, exitThreshold: 2 }); // never exits, records the confidences
    const trace = createTrace("*");
    await wasm.forwardModel(model, tokens, { trace, exitThreshold: 2 });
    const expected = [...refTrace.tensors.keys()].filter((n) => !n.endsWith(".attn.probs"));
    expect([...trace.tensors.keys()].sort()).toEqual(expected.sort());
    for (const name of expected) {
      const want = refTrace.tensors.get(name)!, got = trace.tensors.get(name)!;
      expect(got.shape, name).toEqual(want.shape);
      if (want.data instanceof Float32Array) expect(nmse(got, want), name).toBeLessThan(1e-7);
      else expect(Array.from(got.data), name).toEqual(Array.from(want.data)); // tokens, expert indices, kept flags
    }
  });

  it("gives the reference's step record through stepRecordOnDevice, less the attention heatmaps", async () => {
    const model = initModel(preset("tiny"));
    const prompt = "Step in WASM";
    const ids = Array.from(prompt, (ch) => ch.charCodeAt(0));
    const resident = await stepRecordOnDevice(model, prompt, ids, (m, t, o) => wasm.forwardModel(m, t, o));
    const reference = stepRecord(model, prompt, ids);
    resident.layers.forEach((layer, l) => {
      expect(layer.heatmap).toBeNull();
      expect(layer.routing?.tokens.map((t) => t.experts)).toEqual(reference.layers[l]!.routing?.tokens.map((t) => t.experts));
    });
    expect(resident.next.map((p) => p.id)).toEqual(reference.next.map((p) => p.id));
  });

  it("exits early where the reference does", async () => {
    const model = initModel(preset("tiny"));
    const options = { exitThreshold: 0.001, minLayers: 1 };
    const ref = forward(model, tokens, options);
    expect(new Set(ref.exitLayers).size, "the case needs tokens exiting at different layers").toBeGreaterThan(1);
    const out = await wasm.forwardModel(model, tokens, options);
    expect(Array.from(out.exitLayers)).toEqual(Array.from(ref.exitLayers));
    expect(nmse(out.logits, ref.logits)).toBeLessThan(1e-7);
    out.routing.forEach((r, l) => expect(r?.experts.length ?? 0).toBe((ref.moe[l]?.tokens ?? 0) * model.config.num_experts_per_tok));
  });

  it("runs in check mode: every output written, no kernel writing outside its block", async () => {
    const model = initModel(preset("tiny", { attention_kind: "mha", num_key_value_heads: 2 }));
    const ref = forward(model, tokens);
    const cache = createWasmCache(checked, model, 40);
    try {
      const prefill = await checked.forwardModel(model, tokens.slice(0, 20), { cache });
      const step = await checked.forwardModel(model, tokens.slice(20, 21), { cache });
      expect(nmse(prefill.logits, rows(ref.logits, 0, 20))).toBeLessThan(1e-7);
      expect(nmse(step.logits, rows(ref.logits, 20, 21))).toBeLessThan(1e-7);
    } finally {
      releaseWasmCache(checked, cache);
    }
  });

  it("keeps memory flat over a long decode, and a released cache gives its memory back", async () => {
    const model = initModel(preset("tiny"));
    // A long prompt first: every expert gets a token (packed on first use), the arena grows to a long context's size.
    await wasm.forwardModel(model, Array.from({ length: 256 }, (_, i) => (i * 7) % 256));
    await wasm.forwardModel(model, tokens);
    const before = wasm.stats();
    const cache = createWasmCache(wasm, model, 300);
    await wasm.forwardModel(model, tokens, { cache });
    for (let i = 0; i < 30; i++) await wasm.forwardModel(model, [32 + (i % 90)], { cache });
    const early = wasm.stats();
    for (let i = 30; i < 230; i++) await wasm.forwardModel(model, [32 + (i % 90)], { cache });
    const late = wasm.stats();
    expect(late.memoryBytes).toBe(early.memoryBytes);
    expect(late.liveBytes).toBe(early.liveBytes);
    expect(late.weightBytes).toBe(before.weightBytes);
    releaseWasmCache(wasm, cache);
    await wasm.forwardModel(model, tokens); // a short forward: the long run's pooled blocks it does not use go back
    expect(wasm.stats().liveBytes).toBe(before.liveBytes);
  });

  it("generates the reference's tokens through a resident cache it frees; `tinyseek generate --backend wasm` (which runs it) gives the reference's tokens", async () => {
    const model = initModel(preset("tiny"));
    await wasm.forwardModel(model, Array.from({ length: 256 }, (_, i) => (i * 7) % 256)); // every expert packed
    await wasm.forwardModel(model, tokens);
    const before = wasm.stats().liveBytes;
    const streamed: number[] = [];
    const got = await generateResident(wasmOps(wasm.kernels), model, tokens, { maxTokens: 12, onToken: (t) => streamed.push(t) });
    expect(got.tokens).toEqual(generate(model, tokens, { maxTokens: 12 }).tokens);
    expect(streamed).toEqual(got.tokens);
    await wasm.forwardModel(model, tokens); // the cache's blocks are back; the forward's own pool returns to its size
    expect(wasm.stats().liveBytes).toBe(before);
    const args = ["generate", "--prompt", "Alice was", "--max-tokens", "8", "--json"];
    const [ref, onWasm] = [await cli(...args), await cli(...args, "--backend", "wasm")];
    expect(JSON.parse(onWasm.out).tokens).toEqual(JSON.parse(ref.out).tokens);
  });

  it("says what it does not support, naming the feature, so callers fall back to the kernels", async () => {
    const segmented = initModel(preset("tiny", { attention_kind: "segmented" }));
    await expect(wasm.forwardModel(segmented, [1, 2])).rejects.toThrow(NotSupportedError);
    await expect(wasm.forwardModel(segmented, [1, 2])).rejects.toThrow(/wasm model: attention kind "segmented"/);
    const naive = initModel(preset("tiny", { mla_mode: "naive" }));
    await expect(wasm.forwardModel(naive, [1, 2])).rejects.toThrow(/mla_mode "naive"/);
    expect(() => createWasmCache(wasm, segmented)).toThrow(NotSupportedError);
  });

  it("names the argument on a bad call", async () => {
    const model: Model = initModel(preset("tiny"));
    await expect(wasm.forwardModel(model, [])).rejects.toThrow(/tokens/);
    await expect(wasm.forwardModel(model, [1, 999])).rejects.toThrow(/tokens\[1\]/);
    await expect(wasm.forwardModel(model, [1, 2], { minLayers: 9 })).rejects.toThrow(/minLayers/);
    const cache = createWasmCache(wasm, model, 4);
    try {
      await wasm.forwardModel(model, [1, 2, 3], { cache });
      await expect(wasm.forwardModel(model, [1, 2], { cache })).rejects.toThrow(/tokens.*cache's capacity/);
      expect(cache.length).toBe(3); // a refused call leaves the cache as it was
    } finally {
      releaseWasmCache(wasm, cache);
    }
    await expect(wasm.forwardModel(model, [1], { cache })).rejects.toThrow(/cache/); // released
    expect(() => createWasmCache(wasm, model, 0)).toThrow(/capacity/);
    const other = initModel(preset("tiny", { num_hidden_layers: 2 }));
    const otherCache = createWasmCache(wasm, other, 8);
    await expect(wasm.forwardModel(model, [1], { cache: otherCache })).rejects.toThrow(/cache/);
    releaseWasmCache(wasm, otherCache);
  });
});
