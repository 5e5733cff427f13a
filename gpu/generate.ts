// Generation on the WebGPU backend. Where the device-resident forward covers the model (gpu/model.ts: mla in
// absorb form, mha, decay; no bottleneck adapters or quantised activations), the decode loop runs it through a
// DeviceCache: weights uploaded once, the attention caches on the device, only logits read back. Otherwise, and for
// continuous batching, the reference's synchronous code runs in the sync bridge's worker over this backend's
// kernels (src/model/generate-task.ts). Either way the sampling is src/model/generate.ts's own.

import { type BatchingResult, type BatchRequest, type SchedulerOptions } from "../src/model/batching.ts";
import { type GenerateOptions, type GenerateResult } from "../src/model/generate.ts";
import { generateResident, residentRuns } from "../src/model/resident.ts";
import { type BatchTaskArgs, type GenerateTaskArgs, type TokenEvent } from "../src/model/generate-task.ts";
import { type Model } from "../src/model/weights.ts";
import { type WebGpuBackend } from "./backend.ts";
import { gpuOps } from "./model.ts";

const TASKS = new URL("../src/model/generate-task.ts", import.meta.url).href;

/** Whether the device-resident forward runs `model`, and if not why (NotSupportedError's message). */
export const deviceRunsModel = (model: Model) => residentRuns(model, "webgpu");

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
  return generateResident(gpuOps(backend.context), model, prompt, options);
}

/** Continuous batching (src/model/batching.ts) on WebGPU, in the bridge's worker. */
export function batchOnWebGpu(
  backend: WebGpuBackend, model: Model, requests: readonly BatchRequest[], options: Omit<SchedulerOptions, "kernels">,
): Promise<BatchingResult> {
  const args: BatchTaskArgs = { model, requests, options };
  return backend.runSynchronously<BatchingResult>({ module: TASKS, export: "batchTask" }, args);
}
