// The device-resident forward (gpu/model.ts) against the reference forward of the same tiny model: logits within
// golden.md's whole-model bound (NMSE <= 1e-7), the same greedy tokens, the same experts chosen at every MoE
// layer, every traced intermediate close, and no buffer growth from one forward to the next.

import { afterAll, describe, expect, it } from "vitest";
import { forwardOnDevice } from "../gpu/model.ts";
import { NotSupportedError } from "../src/backend.ts";
import { forward } from "../src/model/model.ts";
import { preset } from "../src/model/presets.ts";
import { initModel } from "../src/model/weights.ts";
import { createTrace } from "../src/trace.ts";
import { type Tensor } from "../src/tensor.ts";
import { compare, webgpuOrReason } from "./webgpu-support.ts";

const { backend, reason } = await webgpuOrReason();
afterAll(async () => backend?.dispose());

const argmaxRows = (t: Tensor) => {
  const V = t.shape[1]!;
  return Array.from({ length: t.shape[0]! }, (_, r) => {
    let best = 0;
    for (let v = 1; v < V; v++) if (t.data[r * V + v]! > t.data[r * V + best]!) best = v;
    return best;
  });
};

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

  it("reuses its buffers from one forward to the next", async () => {
    await forwardOnDevice(backend!.context, model, tokens);
    const before = backend!.context.stats();
    await forwardOnDevice(backend!.context, model, tokens);
    const after = backend!.context.stats();
    expect(after.created).toBe(before.created);
    expect(after.weights).toBe(before.weights);
  });

  it("says what it does not support", async () => {
    const decay = initModel(preset("tiny", { attention_kind: "decay", n_routed_experts: 0 }));
    await expect(forwardOnDevice(backend!.context, decay, [1, 2])).rejects.toThrow(NotSupportedError);
    await expect(forwardOnDevice(backend!.context, decay, [1, 2])).rejects.toThrow(/attention kind "decay"/);
  });
});
