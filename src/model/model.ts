// The whole model (DeepSeek-V3 inference/model.py class Transformer), written once:
//   h_0 = Embed(tokens)
//   h_l = Block_l(h_(l-1))                 l = 1 … L, dense for the first first_k_dense_replace, MoE after
//   logits = RMSNorm(h_L) · W_headᵀ
// With early exit on (section 9, CALM): after each layer from minLayers on, a still-running token computes
// confidence = p_top1 - p_top2 of softmax(RMSNorm(h_l)·W_headᵀ) and stops at the first layer where it reaches the
// threshold; its state h_l then passes unchanged to the output (and fills the deeper layers' caches).
// Every hot operation goes through the Kernels value given, so the same forward runs on any backend.

import { argError, checkInteger, checkNumber, TinyseekError } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { hookedKernels } from "../model-adapters.ts";
import { type MoeStats } from "../moe/stats.ts";
import { embedding } from "../ops.ts";
import { type Tensor } from "../tensor.ts";
import { record, type Trace } from "../trace.ts";
import { block, type Segment } from "./block.ts";
import { checkCache, createCache, type ModelCache } from "./cache.ts";
import { exitCheck } from "./depth.ts";
import { checkModel, type Model } from "./weights.ts";

export interface ForwardOptions {
  /** Continue from (and append to) this cache; absent: a fresh sequence from position 0. */
  cache?: ModelCache;
  kernels?: Kernels;
  /** Records named intermediates (see src/trace.ts and spec/model.md for the names). */
  trace?: Trace;
  /** Early-exit confidence threshold; default config.exit_threshold (null: full depth). */
  exitThreshold?: number | null;
  /** Layers every token runs before it may exit; default config.exit_min_layers. */
  minLayers?: number;
  /** Called after each layer (progress for long runs). */
  onLayer?: (layer: number, layers: number) => void;
}

export interface ForwardResult {
  logits: Tensor; // [T, V]
  /** Layers each token ran: num_hidden_layers unless it exited early. */
  exitLayers: Int32Array;
  /** Per layer: the MoE's statistics over the tokens that ran it, or null (dense layer, or nothing ran). */
  moe: (MoeStats | null)[];
}

/** One sequence's new tokens → their next-token logits. */
export function forward(model: Model, tokens: ArrayLike<number>, options: ForwardOptions = {}): ForwardResult {
  checkModel(model);
  if (!tokens || typeof tokens.length !== "number" || tokens.length === 0) throw argError("tokens", "at least one token id", tokens?.length ?? tokens);
  const cache = options.cache ?? createCache(model.config);
  return forwardPacked(model, [{ tokens: Array.from(tokens), cache }], options);
}

export interface BatchForwardOptions extends Omit<ForwardOptions, "cache" | "trace"> {
  /** One cache per batch row. */
  caches: ModelCache[];
}

/**
 * A padded batch: tokens [B][T] with per-row valid lengths (the padding mask: slots t >= lengths[b] are padding).
 * Each row continues its own cache. Padding computes nothing and its logits are zeros: logits [B, T, V].
 */
export function forwardBatch(model: Model, tokens: readonly (readonly number[])[], lengths: readonly number[], options: BatchForwardOptions): ForwardResult {
  checkModel(model);
  const B = tokens.length;
  const T = B === 0 ? 0 : tokens[0]!.length;
  tokens.forEach((row, b) => {
    if (!Array.isArray(row) || row.length !== T) throw argError(`tokens[${b}]`, `${T} tokens (a padded batch)`, row?.length);
  });
  if (!Array.isArray(lengths) || lengths.length !== B) throw argError("lengths", `${B} lengths`, lengths?.length);
  lengths.forEach((n, b) => checkInteger(`lengths[${b}]`, n, 0, T));
  if (!Array.isArray(options.caches) || options.caches.length !== B) throw argError("caches", `${B} caches`, options.caches?.length);
  const rows = tokens.map((row, b) => ({ tokens: row.slice(0, lengths[b]), cache: options.caches[b]! }));
  const packed = forwardPacked(model, rows, options);
  const V = model.config.vocab_size;
  const logits = new Float32Array(B * T * V);
  const exitLayers = new Int32Array(B * T);
  let at = 0;
  rows.forEach((row, b) => {
    for (let t = 0; t < row.tokens.length; t++, at++) {
      logits.set(packed.logits.data.subarray(at * V, (at + 1) * V), (b * T + t) * V);
      exitLayers[b * T + t] = packed.exitLayers[at]!;
    }
  });
  return { logits: { shape: [B, T, V], data: logits }, exitLayers, moe: packed.moe };
}

/** The forward pass over several sequences' new tokens, packed row after row. */
function forwardPacked(model: Model, rows: { tokens: number[]; cache: ModelCache }[], options: ForwardOptions): ForwardResult {
  const { config, weights } = model;
  // Quantised weights and unmerged LoRAs apply themselves through the kernels (src/model-adapters.ts).
  const kernels = hookedKernels(options.kernels ?? reference);
  const { trace } = options;
  if (trace && rows.length !== 1) throw new TinyseekError("trace: expected a single sequence (trace one request at a time)");
  const threshold = options.exitThreshold === undefined ? config.exit_threshold : options.exitThreshold;
  if (threshold !== null) checkNumber("exitThreshold", threshold, 0, Infinity);
  const minLayers = options.minLayers ?? config.exit_min_layers;
  checkInteger("minLayers", minLayers, 1, config.num_hidden_layers);
  rows.forEach(({ tokens, cache }, b) => checkCache(cache, config, tokens.length, rows.length === 1 ? "cache" : `caches[${b}]`));

  const L = config.num_hidden_layers;
  const ids = rows.flatMap((r) => r.tokens);
  const N = ids.length;
  if (N === 0) return { logits: { shape: [0, config.vocab_size], data: new Float32Array(0) }, exitLayers: new Int32Array(0), moe: [] };
  let x = embedding(weights.embed_tokens, ids);
  record(trace, "tokens", { shape: [N], data: Int32Array.from(ids) });
  record(trace, "embed", x);

  const exitLayers = new Int32Array(N).fill(L);
  const active = threshold === null ? undefined : new Uint8Array(N).fill(1);
  const moe: (MoeStats | null)[] = [];
  for (let l = 0; l < L; l++) {
    let start = 0;
    const segments: Segment[] = [];
    for (const { tokens, cache } of rows) {
      if (tokens.length > 0) segments.push({ start, length: tokens.length, cache: cache.layers[l]! }); // a row of padding only: nothing to do
      start += tokens.length;
    }
    const result = block(x, l, weights.layers[l]!, config, segments, { kernels, trace, active });
    x = result.out;
    moe.push(result.moe?.stats ?? null);
    if (active && l + 1 >= minLayers && l + 1 < L) exitCheck(x, l, active, exitLayers, threshold!, model, kernels, trace);
    options.onLayer?.(l, L);
  }
  rows.forEach((r) => (r.cache.length += r.tokens.length));
  if (active) record(trace, "exit.layers", { shape: [N], data: exitLayers });

  const normed = kernels.rmsnorm(x, weights.norm, config.rms_norm_eps);
  record(trace, "norm", normed);
  const logits = kernels.linear(normed, weights.lm_head);
  record(trace, "logits", logits);
  return { logits, exitLayers, moe };
}
