// Generation (spec/model.md): prefill the prompt into the cache in one forward pass, then decode one token at
// a time, each step feeding the token just chosen. Sampling uses only the seeded PRNG:
//   greedy          temperature 0: the highest logit, ties to the lower token id
//   temperature     softmax(logits / temperature)
//   top-k           keep the k most probable tokens (ties to the lower id)
//   top-p (nucleus) keep the smallest most-probable set whose mass reaches p (Holtzman et al. 2020)
// then draw from what is left, renormalised. Stops at EOS or after maxTokens.

import { argError, checkInteger, checkNumber } from "../errors.ts";
import type { Backend } from "../backend.ts";
import { argmax } from "../ops.ts";
import { Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { createCache, releaseCache, type ModelCache } from "./cache.ts";
import { forward, forwardAsync } from "./forward.ts";
import { generateSpeculative, generateSpeculativeAsync, type SpeculativeStats } from "./speculative.ts";
import type { Intervention } from "./interventions.ts";
import { checkModel, type Model } from "./weights.ts";

export interface SamplingOptions {
  /** 0 = greedy (default 0). */
  temperature?: number;
  /** Keep the k most probable tokens; 0 = all (default 0). */
  topK?: number;
  /** Keep the smallest set of mass >= topP; 1 = all (default 1). */
  topP?: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  seed?: number;
  /** The backend to run on (default: the reference). */
  backend?: Pick<Backend, "ops">;
  /** Stop at this token (default config.eos_token_id); null: only at maxTokens. */
  stopToken?: number | null;
  exitThreshold?: number | null;
  /** Applied at every forward, prefill and each decoded token (src/model/interventions.ts). */
  interventions?: readonly Intervention[];
  /** Called after each new token, e.g. to print it as it comes. */
  onToken?: (token: number, step: GenerateStep) => void;
  /** "mtp": greedy speculative decoding with the multi-token-prediction module as the draft (src/model/speculative.ts). */
  speculative?: "mtp";
}

export interface GenerateStep {
  token: number;
  /** Layers the token's forward pass ran at its last position (early exit). */
  exitLayer: number;
  ms: number;
}

export interface GenerateResult {
  tokens: number[];
  steps: GenerateStep[];
  /** eos: the stop token; length: maxTokens; context: the sequence filled max_position_embeddings. */
  stopReason: "eos" | "length" | "context";
  prefillMs: number;
  cache: ModelCache;
  /** With speculative "mtp": drafts verified, accepted, and the acceptance rate. */
  speculative?: SpeculativeStats;
}

export function checkSampling({ temperature = 0, topK = 0, topP = 1 }: SamplingOptions): void {
  checkNumber("temperature", temperature, 0, Infinity);
  checkInteger("topK", topK, 0);
  checkNumber("topP", topP, 0, 1, " (0 excluded)");
  if (topP === 0) throw argError("topP", "a number in (0, 1]", topP);
}

/** One token from logits [V] (or the last row of [T, V]). */
export function sample(logits: Tensor, rng: Random, options: SamplingOptions = {}): number {
  checkSampling(options);
  const { temperature = 0, topK = 0, topP = 1 } = options;
  const V = logits.shape[logits.shape.length - 1]!;
  if (!(V > 0)) throw argError("logits", "shape [..., V] with V >= 1", logits.shape);
  const row = logits.data.subarray(logits.data.length - V);
  if (temperature === 0) return argmax(row);
  // Candidates by descending logit, ties to the lower id; then cut by top-k and top-p.
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
  const kept = order.slice(0, topK > 0 ? Math.min(topK, V) : V);
  const max = row[kept[0]!]!;
  const weights = kept.map((i) => Math.exp((row[i]! - max) / temperature));
  const total = weights.reduce((a, w) => a + w, 0);
  let count = 0;
  for (let mass = 0; count < kept.length && mass < topP * total; count++) mass += weights[count]!;
  const nucleus = weights.slice(0, Math.max(count, 1));
  const sum = nucleus.reduce((a, w) => a + w, 0);
  let u = rng.uniform() * sum;
  for (let i = 0; i < nucleus.length; i++) {
    u -= nucleus[i]!;
    if (u < 0) return kept[i]!;
  }
  return kept[nucleus.length - 1]!;
}

/** What the decode loop needs from one forward pass over the tokens it asked for. */
export interface StepResult {
  logits: Tensor;
  exitLayers: Int32Array;
}

/**
 * The decode loop, for synchronous and asynchronous forwards alike: it yields the tokens to run next (the prompt,
 * then each new token) and is resumed with their forward's result; it returns the tokens and timings.
 */
function* decodeLoop(model: Model, prompt: readonly number[], options: GenerateOptions): Generator<readonly number[], Omit<GenerateResult, "cache">, StepResult> {
  checkModel(model);
  const { config } = model;
  checkInteger("maxTokens", options.maxTokens, 0);
  checkSampling(options);
  if (!Array.isArray(prompt) || prompt.length === 0) throw argError("prompt", "at least one token", prompt?.length);
  if (prompt.length > config.max_position_embeddings) throw argError("prompt", `at most max_position_embeddings = ${config.max_position_embeddings} tokens`, prompt.length);
  const rng = new Random(options.seed ?? 0);
  const stop = options.stopToken === undefined ? config.eos_token_id : options.stopToken;

  let started = performance.now();
  let result = yield prompt;
  const prefillMs = performance.now() - started;
  let length = prompt.length; // positions in the cache
  const tokens: number[] = [];
  const steps: GenerateStep[] = [];
  let stopReason: GenerateResult["stopReason"] = "length";
  for (let i = 0; i < options.maxTokens; i++) {
    const token = sample(result.logits, rng, options);
    const step = { token, exitLayer: result.exitLayers[result.exitLayers.length - 1]!, ms: i === 0 ? prefillMs : performance.now() - started };
    tokens.push(token);
    steps.push(step);
    options.onToken?.(token, step);
    if (token === stop) {
      stopReason = "eos";
      break;
    }
    if (i + 1 === options.maxTokens) break;
    if (length >= config.max_position_embeddings) {
      stopReason = "context"; // the next token has no position left to run at
      break;
    }
    started = performance.now();
    result = yield [token];
    length++;
  }
  return { tokens, steps, stopReason, prefillMs };
}

/** Continues `prompt` (token ids, BOS included if wanted) by up to maxTokens tokens, on a backend whose reads are
 *  synchronous; the cache comes back, holding the prompt and every token fed. */
export function generate(model: Model, prompt: readonly number[], options: GenerateOptions): GenerateResult {
  if (speculative(options)) return generateSpeculative(model, prompt, options);
  const loop = decodeLoop(model, prompt, options);
  let next = loop.next(); // validates before the cache is made
  const cache = createCache(model.config, { backend: options.backend, capacity: capacityFor(model, prompt, options) });
  while (!next.done) next = loop.next(forward(model, next.value, { cache, backend: options.backend, exitThreshold: options.exitThreshold, interventions: options.interventions }));
  return { ...next.value, cache };
}

/** `generate` on any backend (WebGPU reads asynchronously); the cache is freed at the end. */
export async function generateAsync(model: Model, prompt: readonly number[], options: GenerateOptions): Promise<Omit<GenerateResult, "cache">> {
  if (speculative(options)) return generateSpeculativeAsync(model, prompt, options);
  const loop = decodeLoop(model, prompt, options);
  let next = loop.next();
  const cache = createCache(model.config, { backend: options.backend, capacity: capacityFor(model, prompt, options) });
  try {
    while (!next.done) next = loop.next(await forwardAsync(model, next.value, { cache, backend: options.backend, exitThreshold: options.exitThreshold, interventions: options.interventions }));
    return next.value;
  } finally {
    releaseCache(cache);
  }
}

/** Whether to decode speculatively (only "mtp" is known). */
function speculative(options: GenerateOptions): boolean {
  if (options?.speculative === undefined) return false;
  if (options.speculative !== "mtp") throw argError("speculative", '"mtp" (the multi-token-prediction module drafts) or absent', options.speculative);
  return true;
}

/** The positions a generation can fill: the prompt and every token but the last sampled one. */
const capacityFor = (model: Model, prompt: readonly number[], options: GenerateOptions) =>
  Math.max(1, Math.min(prompt.length + options.maxTokens, model.config.max_position_embeddings));
