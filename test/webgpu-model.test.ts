// The device-resident forward (gpu/model.ts) against the reference forward of the same tiny model: logits within
// golden.md's whole-model bound (NMSE <= 1e-7), the same greedy tokens, the same experts chosen at every MoE
// layer, every traced intermediate close, and no buffer growth from one forward to the next.

import { afterAll, describe, expect, it } from "vitest";
import { createDeviceCache, forwardOnDevice, releaseDeviceCache } from "../gpu/model.ts";
import { NotSupportedError } from "../src/backend.ts";
import { createCache } from "../src/model/cache.ts";
import { forward } from "../src/model/model.ts";
import { preset } from "../src/model/presets.ts";
import { initModel } from "../src/model/weights.ts";
import { createTrace } from "../src/trace.ts";
import { type Tensor } from "../src/tensor.ts";
import { attachBottlenecks, initModelBottlenecks } from "../src/lora.ts";
import { quantizeModel } from "../src/quant/model.ts";
import { Random } from "../src/random.ts";
import { stepRecord, stepRecordOnDevice } from "../src/step/record.ts";
import { compare, webgpuOrReason } from "./webgpu-support.ts";
import { argmaxRows } from "./helpers.ts";

const { backend, reason } = await webgpuOrReason();
afterAll(async () => backend?.dispose());


describe.skipIf(!backend)(`webgpu device-resident model${reason ? ` (skipped: ${reason})` : ""}`, () => {
  const model = initModel(preset("tiny"));
  const tokens = Array.from("The tiny model, on a GPU.", (ch) => ch.charCodeAt(0));

  it("matches the reference forward, intermediate by intermediate", async () => {
    const refTrace = createTrace("*");
    const ref = forward(model, tokens, { trace: refTrace });
    const gpuTrace = createTrace("*");
    const gpu = await forwardOnDevice(backend!.context, model, tokens, { trace: gpuTrace });
    const logits = compare(gpu.logits, ref.logits, 1e-3, 1e-4);
    expect(logits.nmse).toBeLessThan(1e-7);
    expect(logits.bad).toBe(0);
    expect(argmaxRows(gpu.logits)).toEqual(argmaxRows(ref.logits));
    for (const [name, want] of refTrace.tensors) {
      if (name.endsWith(".attn.probs")) continue; // the fused kernel never forms them (spec/webgpu.md)
      const got = gpuTrace.tensors.get(name);
      expect(got, name).toBeDefined();
      if (want.data instanceof Float32Array) {
        expect(compare(got as Tensor, want as Tensor, 1e-3, 1e-4).nmse, name).toBeLessThan(1e-7);
      } else {
        expect(Array.from(got!.data), name).toEqual(Array.from(want.data)); // expert indices, kept flags
      }
    }
    expect(gpu.routing.filter((r) => r !== null).length).toBe(model.config.num_hidden_layers - model.config.first_k_dense_replace);
  });

  it("decodes through its device cache as the reference does through its own", async () => {
    const refCache = createCache(model.config);
    const deviceCache = createDeviceCache(backend!.context, model, 32);
    try {
      const steps = [tokens.slice(0, 6), [tokens[6]!], [tokens[7]!], tokens.slice(8, 11)];
      for (const step of steps) {
        const ref = forward(model, step, { cache: refCache });
        const gpu = await forwardOnDevice(backend!.context, model, step, { cache: deviceCache });
        expect(compare(gpu.logits, ref.logits, 1e-3, 1e-4).nmse).toBeLessThan(1e-7);
        expect(argmaxRows(gpu.logits)).toEqual(argmaxRows(ref.logits));
        expect(deviceCache.length).toBe(refCache.length);
      }
      await expect(forwardOnDevice(backend!.context, model, Array(22).fill(65), { cache: deviceCache })).rejects.toThrow(/cache's capacity/);
    } finally {
      releaseDeviceCache(backend!.context, deviceCache);
    }
  });

  it("reuses its buffers from one forward to the next", async () => {
    await forwardOnDevice(backend!.context, model, tokens);
    const before = backend!.context.stats();
    await forwardOnDevice(backend!.context, model, tokens);
    const after = backend!.context.stats();
    expect(after.created).toBe(before.created);
    expect(after.weights).toBe(before.weights);
  });

  for (const kind of ["mha", "decay"] as const) {
    it(`runs ${kind} attention layers, prompt then a decode step, as the reference`, async () => {
      const other = initModel(preset("tiny", { attention_kind: kind, num_key_value_heads: 2, decay_gamma: "retnet" }));
      const refCache = createCache(other.config);
      const deviceCache = createDeviceCache(backend!.context, other, 16);
      try {
        for (const step of [tokens.slice(0, 7), [tokens[7]!]]) {
          const ref = forward(other, step, { cache: refCache });
          const gpu = await forwardOnDevice(backend!.context, other, step, { cache: deviceCache });
          expect(compare(gpu.logits, ref.logits, 1e-3, 1e-4).nmse).toBeLessThan(1e-7);
          expect(argmaxRows(gpu.logits)).toEqual(argmaxRows(ref.logits));
        }
      } finally {
        releaseDeviceCache(backend!.context, deviceCache);
      }
    });
  }

  it("exits early where the reference does, and skips the FFN for exited tokens", async () => {
    const options = { exitThreshold: 0.001, minLayers: 1 };
    const ref = forward(model, tokens, options);
    expect(new Set(ref.exitLayers).size, "the case needs tokens exiting at different layers").toBeGreaterThan(1);
    const gpu = await forwardOnDevice(backend!.context, model, tokens, options);
    expect(Array.from(gpu.exitLayers)).toEqual(Array.from(ref.exitLayers));
    expect(compare(gpu.logits, ref.logits, 1e-3, 1e-4).nmse).toBeLessThan(1e-7);
    gpu.routing.forEach((r, l) => expect(r?.experts.length ?? 0).toBe((ref.moe[l]?.tokens ?? 0) * model.config.num_experts_per_tok));
  });

  it("says what it does not support", async () => {
    const segmented = initModel(preset("tiny", { attention_kind: "segmented" }));
    await expect(forwardOnDevice(backend!.context, segmented, [1, 2])).rejects.toThrow(NotSupportedError);
    await expect(forwardOnDevice(backend!.context, segmented, [1, 2])).rejects.toThrow(/attention kind "segmented"/);
    const naive = initModel(preset("tiny", { mla_mode: "naive" }));
    await expect(forwardOnDevice(backend!.context, naive, [1, 2])).rejects.toThrow(/mla_mode "naive"/);
  });
});

describe.skipIf(!backend)(`webgpu step-through${reason ? ` (skipped: ${reason})` : ""}`, () => {
  it("gives the reference's step record, less the probabilities its fused attention never forms", async () => {
    const model = initModel(preset("tiny"));
    const tokens = Array.from("Step on the GPU", (ch) => ch.charCodeAt(0));
    const onDevice = await stepRecordOnDevice(model, "Step on the GPU", tokens, backend!.forwardModel);
    const onReference = stepRecord(model, "Step on the GPU", tokens);
    onDevice.layers.forEach((layer, l) => {
      const ref = onReference.layers[l]!;
      expect(layer.heatmap).toBeNull();
      expect(layer.routing?.routed).toEqual(ref.routing?.routed);
      expect(layer.routing?.tokens.map((t) => t.experts)).toEqual(ref.routing?.tokens.map((t) => t.experts));
      layer.residualNorms.forEach((n, t) => expect(n).toBeCloseTo(ref.residualNorms[t]!, 4));
    });
    expect(onDevice.next.map((p) => p.id)).toEqual(onReference.next.map((p) => p.id));
  });

  it("refuses bottleneck adapters and quantised activations rather than skipping them", async () => {
    const rng = new Random(3);
    const model = initModel(preset("tiny"));
    const adapted = attachBottlenecks(model, initModelBottlenecks(model, rng, { where: ["attn"], size: 4 }));
    await expect(forwardOnDevice(backend!.context, adapted, [1, 2])).rejects.toThrow(/bottleneck adapters/);
    const a8 = quantizeModel(initModel(preset("tiny")), "int8.g32.a8");
    await expect(forwardOnDevice(backend!.context, a8, [1, 2])).rejects.toThrow(/quantised activations/);
  });
});
