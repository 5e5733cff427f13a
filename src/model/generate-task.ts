// Generation as tasks for a worker thread over synchronous kernels handed in (gpu/sync-bridge.ts): how a backend
// without synchronous kernels of its own (webgpu) runs the model configurations its device-resident forward does
// not cover, and continuous batching. The model crosses by structured clone (plain data: hooks included); each
// new token is emitted as it comes, so the caller can print it.

import { type Kernels } from "../kernels.ts";
import { runBatched, type BatchingResult, type BatchRequest, type SchedulerOptions } from "./batching.ts";
import { generate, type GenerateOptions, type GenerateResult, type GenerateStep } from "./generate.ts";
import { type Model } from "./weights.ts";

export interface GenerateTaskArgs {
  model: Model;
  prompt: readonly number[];
  /** Without kernels and onToken, which cannot cross threads. */
  options: Omit<GenerateOptions, "kernels" | "onToken">;
}

/** What generateTask emits per token. */
export interface TokenEvent {
  token: number;
  step: GenerateStep;
}

export function generateTask(kernels: Kernels, { model, prompt, options }: GenerateTaskArgs, emit: (event: TokenEvent) => void): Omit<GenerateResult, "cache"> {
  const { cache: _cache, ...result } = generate(model, prompt, { ...options, kernels, onToken: (token, step) => emit({ token, step }) });
  return result;
}

export interface BatchTaskArgs {
  model: Model;
  requests: readonly BatchRequest[];
  options: Omit<SchedulerOptions, "kernels">;
}

export function batchTask(kernels: Kernels, { model, requests, options }: BatchTaskArgs): BatchingResult {
  return runBatched(model, requests, { ...options, kernels });
}
