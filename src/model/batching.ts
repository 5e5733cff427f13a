// Continuous batching (spec/model.md; Orca, Yu et al. 2022): requests of different lengths share forward
// passes. Each step the scheduler admits waiting requests into free rows (up to maxBatch), builds one padded batch
// [B, T] — a new request brings its whole prompt (prefill), a running one its last token (decode) — with per-row
// lengths as the padding mask, runs it, samples one token per row, and retires rows that hit EOS or their length,
// freeing them for the next waiting request at once rather than when the whole batch is done.
// Each row keeps its own cache and its own seeded PRNG, so a request's tokens are exactly those it gets alone
// (with dropless routing: a capacity factor makes drops depend on the batch, which is what capacity means).
// Utilisation is reported two ways: rows used / maxBatch, and real tokens / padded slots B·T.

import { argError, checkInteger } from "../errors.ts";
import type { Backend } from "../backend.ts";
import { Random } from "../random.ts";
import { createCache, releaseCache, type ModelCache } from "./cache.ts";
import { checkSampling, sample, type SamplingOptions } from "./generate.ts";
import { forwardBatch, forwardBatchAsync } from "./forward.ts";
import type { Tensor } from "../tensor.ts";
import { PAD } from "./tokenizer.ts";
import { checkModel, type Model } from "./weights.ts";

export interface BatchRequest extends SamplingOptions {
  readonly id: string;
  readonly prompt: readonly number[];
  readonly maxTokens: number;
  /** The request's own PRNG seed (default 0), as generate() takes it. */
  readonly seed?: number;
}

export interface SchedulerOptions {
  /** Rows per forward pass. */
  maxBatch: number;
  /** The backend to run on (default: the reference). */
  backend?: Pick<Backend, "ops">;
  exitThreshold?: number | null;
  /** Default config.eos_token_id; null: stop only at maxTokens. */
  stopToken?: number | null;
}

export interface BatchStep {
  step: number;
  /** Request ids in the batch's rows, in row order. */
  rows: string[];
  admitted: string[];
  finished: string[];
  /** Padded width T of the batch and real tokens in it (Σ lengths). */
  width: number;
  realTokens: number;
}

export interface BatchingResult {
  outputs: Map<string, number[]>;
  steps: BatchStep[];
  /** Mean rows used / maxBatch over the steps. */
  rowUtilisation: number;
  /** Σ real tokens / Σ padded slots B·T over the steps. */
  tokenUtilisation: number;
}

interface Running {
  request: BatchRequest;
  cache: ModelCache;
  rng: Random;
  pending: number[];
  output: number[];
}

/** Runs the requests to their ends on a backend whose reads are synchronous. */
export function runBatched(model: Model, requests: readonly BatchRequest[], options: SchedulerOptions): BatchingResult {
  const loop = schedule(model, requests, options);
  let next = loop.next();
  while (!next.done) next = loop.next(forwardBatch(model, next.value.tokens, next.value.lengths, { caches: next.value.caches, backend: options.backend, exitThreshold: options.exitThreshold }));
  return next.value;
}

/** `runBatched` on any backend (WebGPU reads asynchronously). */
export async function runBatchedAsync(model: Model, requests: readonly BatchRequest[], options: SchedulerOptions): Promise<BatchingResult> {
  const loop = schedule(model, requests, options);
  let next = loop.next();
  while (!next.done) next = loop.next(await forwardBatchAsync(model, next.value.tokens, next.value.lengths, { caches: next.value.caches, backend: options.backend, exitThreshold: options.exitThreshold }));
  return next.value;
}

interface Batch {
  tokens: number[][];
  lengths: number[];
  caches: ModelCache[];
}

/** The scheduler, for synchronous and asynchronous forwards alike: yields each padded batch, resumed with its result. */
function* schedule(model: Model, requests: readonly BatchRequest[], options: SchedulerOptions): Generator<Batch, BatchingResult, { logits: Tensor }> {
  checkModel(model);
  checkInteger("maxBatch", options.maxBatch, 1);
  const ids = new Set<string>();
  requests.forEach((r, i) => {
    if (typeof r.id !== "string" || ids.has(r.id)) throw argError(`requests[${i}].id`, "a string unique among the requests", r.id);
    ids.add(r.id);
    if (!Array.isArray(r.prompt) || r.prompt.length === 0) throw argError(`requests[${i}].prompt`, "at least one token", r.prompt?.length);
    checkInteger(`requests[${i}].maxTokens`, r.maxTokens, 1);
    checkSampling(r);
  });
  const stop = options.stopToken === undefined ? model.config.eos_token_id : options.stopToken;
  const waiting = [...requests];
  const running: Running[] = [];
  const outputs = new Map<string, number[]>();
  const steps: BatchStep[] = [];
  let [rowsUsed, real, slots] = [0, 0, 0];

  while (waiting.length > 0 || running.length > 0) {
    const admitted: string[] = [];
    while (running.length < options.maxBatch && waiting.length > 0) {
      const request = waiting.shift()!;
      running.push({ request, cache: createCache(model.config, { backend: options.backend }), rng: new Random(request.seed ?? 0), pending: [...request.prompt], output: [] });
      admitted.push(request.id);
    }
    const lengths = running.map((r) => r.pending.length);
    const width = Math.max(...lengths);
    const pad = PAD < model.config.vocab_size ? PAD : 0; // padding slots are masked out and compute nothing
    const tokens = running.map((r) => [...r.pending, ...Array<number>(width - r.pending.length).fill(pad)]);
    const { logits } = yield { tokens, lengths, caches: running.map((r) => r.cache) };

    const V = model.config.vocab_size;
    const finished: string[] = [];
    running.forEach((r, b) => {
      const last = (b * width + lengths[b]! - 1) * V;
      const token = sample({ shape: [V], data: logits.data.subarray(last, last + V) }, r.rng, r.request);
      r.output.push(token);
      r.pending = [token];
      const full = r.cache.length >= model.config.max_position_embeddings;
      if (token === stop || r.output.length >= r.request.maxTokens || full) finished.push(r.request.id);
    });
    steps.push({ step: steps.length, rows: running.map((r) => r.request.id), admitted, finished, width, realTokens: lengths.reduce((a, n) => a + n, 0) });
    rowsUsed += running.length;
    real += lengths.reduce((a, n) => a + n, 0);
    slots += running.length * width;
    for (const id of finished) {
      const at = running.findIndex((r) => r.request.id === id);
      outputs.set(id, running[at]!.output);
      releaseCache(running[at]!.cache);
      running.splice(at, 1);
    }
  }
  return {
    outputs,
    steps,
    rowUtilisation: steps.length === 0 ? 0 : rowsUsed / (steps.length * options.maxBatch),
    tokenUtilisation: slots === 0 ? 0 : real / slots,
  };
}
