// DeepSeek-V3's multi-token-prediction (MTP) module, depth 1 (technical report §2.2), over the same checked
// operations as the main forward (src/model/forward.ts), so it runs on every backend:
//   h'_i     = W_eh · [RMSNorm_e(Emb(t_(i+1))) ; RMSNorm_h(h_i)]      eh_proj [D, 2D], enorm, hnorm
//   h''_i    = Block(h'_i)                                            attention (its own cache) and MoE: layer L
//   logits_i = RMSNorm_s(h''_i) · W_headᵀ                             shared_head.norm; the main model's head
// h_i is the main model's final hidden state after its final norm, RMSNorm(h_L) (what its head reads). Position i
// of the module predicts token i + 2. The concatenation puts the embedding first: the report writes
// [RMSNorm(h) ; RMSNorm(Emb)], but the published checkpoints' eh_proj reads [enorm(Emb) ; hnorm(h)] (as the serving
// engines that load them concatenate). The block is checkpoint layer N = L, run as layer L of a model one layer
// deeper (mtpBlockConfig), so its weight names, cache and trace names (layers.L.…) follow the main layers'.
// The checkpoint's own copies of the embedding and the head (model.layers.L.embed_tokens, shared_head.head) are
// used when present; absent, the main model's are.

import type { Backend } from "../backend.ts";
import { read, runAsync, runSync, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { scoped } from "../device/scope.ts";
import { argError, TinyseekError } from "../errors.ts";
import type { MoeStats } from "../moe/stats.ts";
import { shapeString, type Tensor } from "../tensor.ts";
import { record, type Trace } from "../trace.ts";
import { checkCache, createCache, dropsPositions, releaseCache, type CacheOptions, type ModelCache } from "./cache.ts";
import { moeConfigOf } from "./config.ts";
import { block, opsOf } from "./forward.ts";
import type { Run } from "./layers.ts";
import { mtpBlockConfig } from "./params.ts";
import { listeners } from "./points.ts";
import { checkModel, type Model, type MtpWeights } from "./weights.ts";

export interface MtpResult {
  /** [T, V]: row i predicts the token two places after position i. */
  logits: Tensor;
  /** The block's MoE statistics (null: a dense block). */
  moe: MoeStats | null;
}

/** The module's weights, or one line saying the model has none. */
export function mtpWeights(model: Model): MtpWeights {
  checkModel(model);
  const w = model.weights.mtp;
  if (!w) {
    const n = model.config.num_nextn_predict_layers;
    throw argError("model", "a model with a multi-token-prediction layer (num_nextn_predict_layers 1)", n === 0 ? "num_nextn_predict_layers 0" : `no model.layers.${model.config.num_hidden_layers}.* tensors in its weights`);
  }
  return w;
}

/** The module's own cache: layer L of a cache one layer deeper than the main model's (the layers below stay empty). */
export function createMtpCache(model: Model, options: CacheOptions = {}): ModelCache {
  mtpWeights(model);
  return createCache(mtpBlockConfig(model.config), options);
}

/**
 * The module at the positions cache.length … cache.length + T - 1: `hidden` [T, D] the main model's RMSNorm(h_L)
 * there, `next` [T] the token after each (t_(i+1)). Appends T positions to the module's cache.
 */
export function* mtpRows<X extends Value>(ops: Ops<X>, model: Model, hidden: X, next: Int32Array, cache: ModelCache<X>, trace?: Trace): Reading<MtpResult> {
  const w = mtpWeights(model);
  const { config: main, weights } = model;
  const c = mtpBlockConfig(main);
  const [T, D, L, eps] = [next.length, main.hidden_size, main.num_hidden_layers, main.rms_norm_eps];
  if (hidden.shape.length !== 2 || hidden.shape[0] !== T || hidden.shape[1] !== D) throw argError("hidden", `shape [${T}, ${D}] (one row per next token)`, shapeString(hidden.shape));
  checkCache(cache, c, ops, T);
  if (T === 0) return { logits: { shape: [0, main.vocab_size], data: new Float32Array(0) }, moe: null };
  const positions = Int32Array.from({ length: T }, (_, i) => cache.length + i);
  const scope = scoped(ops);
  const o = scope.ops;
  // The model one layer deeper whose layer L is the module's block: the main layers are never run here.
  const deeper: Model = { config: c, weights: { ...weights, layers: [...weights.layers, w.block] } };
  const run: Run<X> = { ops: o, model: deeper, config: c, moeConfig: c.n_routed_experts > 0 ? moeConfigOf(c) : null, listen: listeners(trace), experts: [], derived: new Map() };
  let done = false;
  try {
    const embedded = o.rmsnorm(o.embed(w.embed_tokens ?? weights.embed_tokens, next), w.enorm, eps);
    const state = o.rmsnorm(hidden, w.hnorm, eps);
    // [e ; h] per row, by block copies: one head of width D each, concatenated, merged back to rows [T, 2D].
    const joined = o.mergeHeads(o.concatLast([o.splitHeads(embedded, 1, [D])[0]!, o.splitHeads(state, 1, [D])[0]!]));
    const input = o.linear(joined, w.eh_proj);
    if (trace) record(trace, "mtp.in", { shape: [T, D], data: yield* read(o, input) });
    const layer = yield* block(run, L, input, [{ start: 0, length: T, cache, positions }], positions, undefined);
    cache.length += T;
    done = true;
    const logits = o.linear(o.rmsnorm(layer.out, w.norm, eps), w.head ?? weights.lm_head);
    const result = { logits: { shape: [T, main.vocab_size], data: yield* read(o, logits) }, moe: layer.stats };
    record(trace, "mtp.logits", result.logits);
    return result;
  } finally {
    if (!done && cache.layers.some((_, l) => !dropsPositions(c, l))) cache.broken = "a forward through it failed half-way";
    scope.releaseExcept();
    ops.settle();
  }
}

export interface MtpOptions {
  backend?: Pick<Backend, "ops">;
  /** Continue the module's cache (createMtpCache); absent: a fresh one from position 0. */
  cache?: ModelCache;
  /** Records mtp.in, the block's layers.L.… names and mtp.logits. */
  trace?: Trace;
}

/** The module on host values: `hidden` [T, D] (the main model's RMSNorm(h_L)), `next` the token after each position. */
export function mtpForward(model: Model, hidden: Tensor, next: ArrayLike<number>, options: MtpOptions = {}): MtpResult {
  const { ops, cache, ids, own } = prepared(model, hidden, next, options);
  try {
    return runSync(hostRows(ops, model, hidden, ids, cache, options.trace), ops.name);
  } finally {
    if (own) releaseCache(cache);
  }
}

/** `mtpForward` on any backend. */
export async function mtpForwardAsync(model: Model, hidden: Tensor, next: ArrayLike<number>, options: MtpOptions = {}): Promise<MtpResult> {
  const { ops, cache, ids, own } = prepared(model, hidden, next, options);
  try {
    return await runAsync(hostRows(ops, model, hidden, ids, cache, options.trace));
  } finally {
    if (own) releaseCache(cache);
  }
}

function prepared(model: Model, hidden: Tensor, next: ArrayLike<number>, options: MtpOptions) {
  mtpWeights(model);
  if (!next || typeof next.length !== "number" || next.length === 0) throw argError("next", "at least one token id", next?.length ?? next);
  if (!hidden?.shape || !(hidden.data instanceof Float32Array)) throw new TinyseekError(`hidden: expected a tensor [T, D] with Float32Array data, got ${hidden === null ? "null" : typeof hidden}`);
  const ops = opsOf(options.backend);
  const own = !options.cache;
  const cache = options.cache ?? createMtpCache(model, { backend: options.backend, capacity: Math.min(next.length, model.config.max_position_embeddings) });
  return { ops, cache, ids: Int32Array.from(next), own };
}

function* hostRows<X extends Value>(ops: Ops<X>, model: Model, hidden: Tensor, next: Int32Array, cache: ModelCache<X>, trace?: Trace): Reading<MtpResult> {
  const value = ops.upload(hidden);
  try {
    return yield* mtpRows(ops, model, value, next, cache, trace);
  } finally {
    ops.release(value);
  }
}
