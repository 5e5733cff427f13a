// The researcher's entry points (TransformerLens's run_with_hooks and run_with_cache): one forward over a prompt's
// tokens on any backend, with hooks and interventions, optionally keeping every named activation it passed.

import { forwardAsync, type ForwardOptions, type ForwardResult } from "../model/forward.ts";
import type { Model } from "../model/weights.ts";
import { createTrace, type TracedTensor } from "../trace.ts";

export type RunOptions = Omit<ForwardOptions, "cache" | "trace">;

/** One forward of `tokens` (a fresh sequence) with `hooks` and `interventions`; full depth unless exitThreshold asks. */
export function run(model: Model, tokens: ArrayLike<number>, options: RunOptions = {}): Promise<ForwardResult> {
  return forwardAsync(model, tokens, { exitThreshold: null, ...options });
}

export interface RunWithCache extends ForwardResult {
  /** Every hook point (and traced tensor) whose name matches `names`, in forward order, as it flowed. */
  activations: Map<string, TracedTensor>;
}

/** `run`, keeping the activations named by `names` (globs, comma-separated; default every one). */
export async function runWithCache(model: Model, tokens: ArrayLike<number>, options: RunOptions & { names?: string | readonly string[] } = {}): Promise<RunWithCache> {
  const { names = "*", ...rest } = options;
  const trace = createTrace(names);
  const result = await forwardAsync(model, tokens, { exitThreshold: null, ...rest, trace });
  return { ...result, activations: trace.tensors };
}
