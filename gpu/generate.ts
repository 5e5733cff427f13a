// Generation on the WebGPU backend. Where the device-resident forward covers the model (gpu/model.ts: mla in
// absorb form, mha, decay; no bottleneck adapters or quantised activations), the decode loop runs it through a
// DeviceCache: weights uploaded once, the attention caches on the device, only logits read back. Otherwise, and for
// continuous batching, the reference's synchronous code runs in the sync bridge's worker over this backend's
// kernels (src/model/generate-task.ts). Either way the sampling is src/model/generate.ts's own.

import { NotSupportedError } from "../src/backend.ts";
import { type BatchingResult, type BatchRequest, type SchedulerOptions } from "../src/model/batching.ts";
import { generateWith, type GenerateOptions, type GenerateResult } from "../src/model/generate.ts";
import { type BatchTaskArgs, type GenerateTaskArgs, type TokenEvent } from "../src/model/generate-task.ts";
import { type Model } from "../src/model/weights.ts";
import { type WebGpuBackend } from "./backend.ts";
import { checkDeviceSupport, createDeviceCache, releaseDeviceCache } from "./model.ts";

const TASKS = new URL("../src/model/generate-task.ts", import.meta.url).href;

/** Whether the device-resident forward runs `model`, and if not why (NotSupportedError's message). */
export function deviceRunsModel(model: Model): { yes: boolean; why?: string } {
  try {
    checkDeviceSupport(model);
    return { yes: true };
  } catch (error) {
    if (error instanceof NotSupportedError) return { yes: false, why: error.message };
    throw error;
  }
}

/** `generate` on WebGPU: the same tokens as the reference's for the same seed, up to float32 near-ties. */
export async function generateOnWebGpu(
  backend: WebGpuBackend, model: Model, prompt: readonly number[], options: Omit<GenerateOptions, "kernels">,
): Promise<Omit<GenerateResult, "cache">> {
  const { onToken, ...rest } = options;
  if (!deviceRunsModel(model).yes) {
    const args: GenerateTaskArgs = { model, prompt, options: rest };
    return backend.runSynchronously<Omit<GenerateResult, "cache">>({ module: TASKS, export: "generateTask" }, args, (event) => {
      const { token, step } = event as TokenEvent;
      onToken?.(token, step);
    });
  }
  // The loop never runs its last sampled token, so prompt + maxTokens positions always suffice.
  const capacity = Math.min(prompt.length + options.maxTokens, model.config.max_position_embeddings);
  const cache = createDeviceCache(backend.context, model, Math.max(capacity, 1));
  try {
    return await generateWith((tokens) => backend.forwardModel(model, tokens, { cache, exitThreshold: options.exitThreshold }), model, prompt, options);
  } finally {
    releaseDeviceCache(backend.context, cache);
  }
}

/** Continuous batching (src/model/batching.ts) on WebGPU, in the bridge's worker. */
export function batchOnWebGpu(
  backend: WebGpuBackend, model: Model, requests: readonly BatchRequest[], options: Omit<SchedulerOptions, "kernels">,
): Promise<BatchingResult> {
  const args: BatchTaskArgs = { model, requests, options };
  return backend.runSynchronously<BatchingResult>({ module: TASKS, export: "batchTask" }, args);
}
