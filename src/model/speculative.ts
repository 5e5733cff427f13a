// Greedy speculative decoding with the multi-token-prediction module as the draft (src/model/mtp.ts): the module
// drafts the token after next, the main model verifies it in the same forward that produces the next token.
// With s_m the last chosen token (not yet fed) and d the module's draft of s_(m+1):
//   main forward over [s_m, d] at positions m, m+1 → y_(m+1) = argmax row 0, y_(m+2) = argmax row 1
//   y_(m+1) = d: both are greedy's next tokens (row 1 saw exactly the sequence greedy would feed): emit d, y_(m+2)
//   else:        emit y_(m+1); position m+1 (the rejected draft) is dropped from the main cache
// then the module runs on the positions just confirmed (the main model's RMSNorm(h) there and the token after
// each) and drafts again from the last. Each step emits one or two tokens, always greedy's own, so the output
// equals plain greedy decoding token for token. acceptance rate = accepted drafts / drafts verified.
// Greedy only: sampling would need the speculative-sampling acceptance rule, which is not implemented.

import { runAsync, runSync, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { argError, checkInteger } from "../errors.ts";
import { argmax } from "../ops.ts";
import type { Tensor } from "../tensor.ts";
import { createCache, dropsPositions, releaseCache, type ModelCache } from "./cache.ts";
import { layerKind } from "./config.ts";
import { forwardRows, opsOf } from "./forward.ts";
import type { GenerateOptions, GenerateResult, GenerateStep } from "./generate.ts";
import { createMtpCache, mtpRows, mtpWeights } from "./mtp.ts";
import { checkModel, type Model } from "./weights.ts";

export interface SpeculativeStats {
  /** Drafts the main model verified. */
  drafted: number;
  accepted: number;
  /** accepted / drafted (0 when nothing was drafted). */
  acceptanceRate: number;
}

/** `generate` with speculative "mtp", on a backend whose reads are synchronous; the main model's cache comes back. */
export function generateSpeculative(model: Model, prompt: readonly number[], options: GenerateOptions): GenerateResult & { speculative: SpeculativeStats } {
  const { ops, cache, mtpCache } = prepare(model, prompt, options);
  try {
    return { ...runSync(decode(ops, model, prompt, options, cache, mtpCache), ops.name), cache };
  } finally {
    releaseCache(mtpCache);
  }
}

/** `generateSpeculative` on any backend; both caches are freed at the end. */
export async function generateSpeculativeAsync(model: Model, prompt: readonly number[], options: GenerateOptions): Promise<Omit<GenerateResult, "cache"> & { speculative: SpeculativeStats }> {
  const { ops, cache, mtpCache } = prepare(model, prompt, options);
  try {
    return await runAsync(decode(ops, model, prompt, options, cache, mtpCache));
  } finally {
    releaseCache(mtpCache);
    releaseCache(cache);
  }
}

function prepare(model: Model, prompt: readonly number[], options: GenerateOptions) {
  checkModel(model);
  const { config } = model;
  mtpWeights(model);
  checkInteger("maxTokens", options.maxTokens, 0);
  if ((options.temperature ?? 0) !== 0) throw argError("temperature", "0 with speculative decoding (greedy only: the draft is verified by the greedy choice)", options.temperature);
  if (options.interventions?.length) throw argError("interventions", "none with speculative decoding (they run with plain decoding)", options.interventions.length);
  // A rejected draft is dropped by shortening the cache; a layer whose state a forward changes in place cannot drop it.
  for (let l = 0; l < config.num_hidden_layers; l++) {
    if (!dropsPositions(config, l)) throw argError("speculative", "a model whose every layer's cache can drop a rejected draft (mla, dsa, mha, decay)", `layer ${l} ${layerKind(config, l)}`);
  }
  if (!Array.isArray(prompt) || prompt.length === 0) throw argError("prompt", "at least one token", prompt?.length);
  if (prompt.length > config.max_position_embeddings) throw argError("prompt", `at most max_position_embeddings = ${config.max_position_embeddings} tokens`, prompt.length);
  const ops = opsOf(options.backend);
  // The prompt, every token but the last, and one draft position.
  const capacity = Math.max(1, Math.min(prompt.length + options.maxTokens + 1, config.max_position_embeddings));
  const cache = createCache(config, { backend: options.backend, capacity });
  const mtpCache = createMtpCache(model, { backend: options.backend, capacity });
  return { ops, cache, mtpCache };
}

const lastArgmax = (logits: Tensor, row: number): number => {
  const V = logits.shape[1]!;
  return argmax(logits.data.subarray(row * V, (row + 1) * V));
};

function* decode<X extends Value>(ops: Ops<X>, model: Model, prompt: readonly number[], options: GenerateOptions, cache: ModelCache<X>, mtpCache: ModelCache<X>): Reading<Omit<GenerateResult, "cache"> & { speculative: SpeculativeStats }> {
  const { config } = model;
  const max = config.max_position_embeddings;
  const stop = options.stopToken === undefined ? config.eos_token_id : options.stopToken;
  const tokens: number[] = [];
  const steps: GenerateStep[] = [];
  let [drafted, accepted] = [0, 0];
  let stopReason: GenerateResult["stopReason"] = "length";
  /** Emits a token; true when generation ends with it. */
  const emit = (token: number, exitLayer: number, ms: number): boolean => {
    const step = { token, exitLayer, ms };
    tokens.push(token);
    steps.push(step);
    options.onToken?.(token, step);
    if (token === stop) stopReason = "eos";
    return token === stop || tokens.length === options.maxTokens;
  };
  /** The main model over `fed`, keeping RMSNorm(h) for the module. */
  const main = (fed: number[]) => forwardRows(ops, model, [{ tokens: fed, cache, own: false }], { exitThreshold: options.exitThreshold, keepHidden: true });
  /** The module over the first `rows` rows of `hidden`, the token after each being `next`: its draft after the last. */
  function* draft(hidden: X, rows: number, next: number[]): Reading<number> {
    const h = rows === hidden.shape[0] ? hidden : ops.sliceRows(hidden, 0, rows);
    try {
      const out = yield* mtpRows(ops, model, h, Int32Array.from(next), mtpCache);
      return lastArgmax(out.logits, rows - 1);
    } finally {
      ops.release(...(h === hidden ? [hidden] : [h, hidden]));
    }
  }

  let started = performance.now();
  const prefill = yield* main([...prompt]);
  const prefillMs = performance.now() - started;
  let hidden = prefill.hiddenValue as X;
  const result = () => ({ tokens, steps, stopReason, prefillMs, speculative: { drafted, accepted, acceptanceRate: drafted === 0 ? 0 : accepted / drafted } });
  if (options.maxTokens === 0) {
    ops.release(hidden);
    return result();
  }
  let next = lastArgmax(prefill.logits, prompt.length - 1);
  if (emit(next, prefill.exitLayers[prompt.length - 1]!, prefillMs)) {
    ops.release(hidden);
    return result();
  }
  let guess = yield* draft(hidden, prompt.length, [...prompt.slice(1), next]);
  for (;;) {
    const m = cache.length; // `next` sits at position m
    if (m >= max) {
      stopReason = "context";
      break;
    }
    started = performance.now();
    if (m + 1 === max) {
      // Room for `next` alone: a plain step, as greedy decoding takes it.
      const out = yield* main([next]);
      ops.release(out.hiddenValue as X);
      if (emit((next = lastArgmax(out.logits, 0)), out.exitLayers[0]!, performance.now() - started)) break;
      continue;
    }
    const out = yield* main([next, guess]);
    hidden = out.hiddenValue as X;
    drafted++;
    const [first, second] = [lastArgmax(out.logits, 0), lastArgmax(out.logits, 1)];
    const ok = first === guess;
    if (ok) accepted++;
    else cache.length -= 1; // the rejected draft's position: overwritten by the next forward
    const ended = emit(first, out.exitLayers[0]!, performance.now() - started);
    // Ending on an accepted draft: its position is dropped too, so the cache holds what greedy decoding fed.
    if (ended && ok) cache.length -= 1;
    if (ended || (ok && emit(second, out.exitLayers[1]!, 0))) {
      ops.release(hidden);
      break;
    }
    guess = ok ? yield* draft(hidden, 2, [first, second]) : yield* draft(hidden, 1, [first]);
    next = ok ? second : first;
  }
  return result();
}
