// The whole model (DeepSeek-V3 inference/model.py classes Transformer and Block), written once for every backend:
//   h_0 = Embed(tokens)
//   h   = x + Attention(RMSNorm(x))                    for each layer l = 1 … L: attention of the layer's kind,
//   h_l = h + FFN(RMSNorm(h))                          FFN dense for the first first_k_dense_replace, MoE after
//   logits = RMSNorm(h_L) · W_headᵀ
// x holds the new tokens of several sequences packed row after row ([N, D]); attention runs per sequence through
// its own cache, everything token-wise on all N rows at once (that is what batching buys).
// Early exit (spec/model.md; CALM, Schuster et al. 2022): after each layer from minLayers on, a still-running token computes
// confidence = p_top1 - p_top2 of softmax(RMSNorm(h_l)·W_headᵀ) and stops at the first layer where it reaches the
// threshold; its state passes unchanged to the output. Attention still runs on it, so deeper caches hold keys and
// values computed from the exited state (CALM's state copying), but the residual is not updated and the
// feed-forward, the expensive part, skips it.
// The forward is a generator over the backend's checked operations (src/device/ops.ts): it yields where it reads a
// value back (the router's logits, early exit's confidence, a hook, the logits), so that `forward` runs it
// synchronously (reference, WASM) and `forwardAsync` awaits (WebGPU) with no second copy (src/device/drive.ts).

import { bottleneck, type BottleneckAdapter } from "../adapters.ts";
import type { Backend } from "../backend.ts";
import { read, runAsync, runSync, settled, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import { referenceOps, type Ops } from "../device/ops.ts";
import { argError, checkInteger, checkNumber, TinyseekError } from "../errors.ts";
import type { MoeStats } from "../moe/stats.ts";
import type { Tensor } from "../tensor.ts";
import { record, wants, type Trace } from "../trace.ts";
import { checkCache, createCache, dropsPositions, releaseCache, type ModelCache } from "./cache.ts";
import { isMoeLayer, moeConfigOf } from "./config.ts";
import { feedForward } from "./feed-forward.ts";
import { checkExpertEdits, type Intervention } from "./interventions.ts";
import { attention, type Run, type Segment } from "./layers.ts";
import { hookPoints } from "./point-names.ts";
import { checkPatterns, hookHost, listeners, point, type Hooks } from "./points.ts";
import { scoped } from "../device/scope.ts";
import { checkModel, type Model } from "./weights.ts";

export interface ForwardOptions {
  /** The backend to run on (default: the reference). A cache must have been made for the same backend. */
  backend?: Pick<Backend, "ops">;
  /** Continue from (and append to) this cache; absent: a fresh sequence from position 0. */
  cache?: ModelCache;
  /** Records named intermediates (see src/trace.ts and spec/model.md for the names). */
  trace?: Trace;
  /** Reads or replaces named intermediates (src/model/points.ts): { "layers.*.attn.out": (value) => ... }. */
  hooks?: Hooks;
  /** Hooks and router edits (src/model/interventions.ts, src/research/): ablations, forced experts, patches, steering. */
  interventions?: readonly Intervention[];
  /** Early-exit confidence threshold; default config.exit_threshold (null: full depth). */
  exitThreshold?: number | null;
  /** Layers every token runs before it may exit; default config.exit_min_layers. */
  minLayers?: number;
  /** Called after each layer (progress for long runs). */
  onLayer?: (layer: number, layers: number) => void;
}

export interface RowsOptions extends Omit<ForwardOptions, "backend" | "cache"> {
  /** Also return the logits as the backend's value, not released (training differentiates through it: tfjs). */
  keepLogits?: boolean;
  /** Also return the final norm's output RMSNorm(h_L) [N, D] as the backend's value, not released: the
   *  multi-token-prediction module's input (src/model/mtp.ts). */
  keepHidden?: boolean;
}

export interface ForwardResult {
  logits: Tensor; // [T, V]
  /** Layers each token ran: num_hidden_layers unless it exited early. */
  exitLayers: Int32Array;
  /** Per layer: the MoE's statistics over the tokens that ran it, or null (dense layer, or nothing ran). */
  moe: (MoeStats | null)[];
  /** With keepLogits: the logits [N, V] on the backend; the caller releases it. */
  logitsValue?: Value;
  /** With keepHidden: RMSNorm(h_L) [N, D] on the backend; the caller releases it. */
  hiddenValue?: Value;
}

/** One sequence's new tokens → their next-token logits, on a backend whose reads are synchronous. */
export function forward(model: Model, tokens: ArrayLike<number>, options: ForwardOptions = {}): ForwardResult {
  const { ops, rows } = oneSequence(model, tokens, options);
  return runSync(forwardRows(ops, model, rows, options), ops.name);
}

/** `forward` on any backend (WebGPU's reads are asynchronous). */
export function forwardAsync(model: Model, tokens: ArrayLike<number>, options: ForwardOptions = {}): Promise<ForwardResult> {
  const { ops, rows } = oneSequence(model, tokens, options);
  return runAsync(forwardRows(ops, model, rows, options));
}

function oneSequence(model: Model, tokens: ArrayLike<number>, options: ForwardOptions) {
  checkModel(model);
  if (!tokens || typeof tokens.length !== "number" || tokens.length === 0) throw argError("tokens", "at least one token id", tokens?.length ?? tokens);
  const ops = opsOf(options.backend);
  const cache = options.cache ?? createCache(model.config, { backend: options.backend, capacity: Math.min(tokens.length, model.config.max_position_embeddings) });
  return { ops, rows: [{ tokens: Array.from(tokens), cache, own: !options.cache }] };
}

export const opsOf = (backend: Pick<Backend, "ops"> | undefined): Ops => {
  if (backend !== undefined && !backend?.ops) {
    const got = typeof backend === "object" && backend !== null ? "an object without ops" : String(backend);
    throw new TinyseekError(`backend: expected a Backend from loadBackend (with ops), got ${got}`);
  }
  return backend?.ops ?? referenceOps;
};

export interface BatchForwardOptions extends Omit<ForwardOptions, "cache" | "trace" | "hooks" | "interventions"> {
  /** One cache per batch row. */
  caches: ModelCache[];
}

/**
 * A padded batch: tokens [B][T] with per-row valid lengths (the padding mask: slots t >= lengths[b] are padding).
 * Each row continues its own cache. Padding computes nothing and its logits are zeros: logits [B, T, V].
 */
export function forwardBatch(model: Model, tokens: readonly (readonly number[])[], lengths: readonly number[], options: BatchForwardOptions): ForwardResult {
  const { ops, rows, unpack } = padded(model, tokens, lengths, options);
  return unpack(runSync(forwardRows(ops, model, rows, options), ops.name));
}

/** `forwardBatch` on any backend. */
export async function forwardBatchAsync(model: Model, tokens: readonly (readonly number[])[], lengths: readonly number[], options: BatchForwardOptions): Promise<ForwardResult> {
  const { ops, rows, unpack } = padded(model, tokens, lengths, options);
  return unpack(await runAsync(forwardRows(ops, model, rows, options)));
}

function padded(model: Model, tokens: readonly (readonly number[])[], lengths: readonly number[], options: BatchForwardOptions) {
  checkModel(model);
  const B = tokens.length;
  const T = B === 0 ? 0 : tokens[0]!.length;
  tokens.forEach((row, b) => {
    if (!Array.isArray(row) || row.length !== T) throw argError(`tokens[${b}]`, `${T} tokens (a padded batch)`, row?.length);
  });
  if (!Array.isArray(lengths) || lengths.length !== B) throw argError("lengths", `${B} lengths`, lengths?.length);
  lengths.forEach((n, b) => checkInteger(`lengths[${b}]`, n, 0, T));
  if (!Array.isArray(options.caches) || options.caches.length !== B) throw argError("caches", `${B} caches`, options.caches?.length);
  const rows = tokens.map((row, b) => ({ tokens: row.slice(0, lengths[b]), cache: options.caches[b]!, own: false }));
  const V = model.config.vocab_size;
  const unpack = (packed: ForwardResult): ForwardResult => {
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
  };
  return { ops: opsOf(options.backend), rows, unpack };
}

export interface Row<X extends Value> {
  tokens: readonly number[];
  cache: ModelCache<X>;
  /** A cache made for this call alone: freed when it ends. */
  own: boolean;
}

/** The one forward over several sequences' new tokens, packed row after row. */
export function* forwardRows<X extends Value>(ops: Ops<X>, model: Model, rows: Row<X>[], options: RowsOptions): Reading<ForwardResult> {
  const { config: c, weights } = model;
  const { trace } = options;
  if (trace && rows.length !== 1) throw new TinyseekError("trace: expected a single sequence (trace one request at a time)");
  const threshold = options.exitThreshold === undefined ? c.exit_threshold : options.exitThreshold;
  if (threshold !== null) checkNumber("exitThreshold", threshold, 0, Infinity);
  const minLayers = options.minLayers ?? c.exit_min_layers;
  checkInteger("minLayers", minLayers, 1, c.num_hidden_layers);
  rows.forEach(({ tokens, cache }, b) => checkCache(cache, c, ops, tokens.length, rows.length === 1 ? "cache" : `caches[${b}]`));
  const interventions = checkInterventions(options.interventions);
  const listen = listeners(trace, options.hooks, ...interventions.map((i) => i.hooks));
  const experts = interventions.flatMap((i) => i.experts ?? []);
  if (listen.hooks.length || experts.length) {
    if (rows.length !== 1) throw new TinyseekError("hooks: expected a single sequence (hook one request at a time)");
    checkPatterns(listen, hookPoints(c), c.num_hidden_layers);
    checkExpertEdits(c, experts);
  }
  const L = c.num_hidden_layers;
  const ids = Int32Array.from(rows.flatMap((r) => r.tokens));
  const N = ids.length;
  if (N === 0) return { logits: { shape: [0, c.vocab_size], data: new Float32Array(0) }, exitLayers: new Int32Array(0), moe: [] };

  const scope = scoped(ops);
  const o = scope.ops;
  const run: Run<X> = { ops: o, model, config: c, moeConfig: c.n_routed_experts > 0 ? moeConfigOf(c) : null, listen, experts, derived: new Map() };
  const segments: Segment<X>[] = [];
  let start = 0;
  for (const { tokens, cache } of rows) {
    // A row of padding only: nothing to do. Its new tokens sit at positions cache.length, cache.length + 1, …
    if (tokens.length > 0) segments.push({ start, length: tokens.length, cache, positions: Int32Array.from(tokens, (_, i) => cache.length + i) });
    start += tokens.length;
  }
  const kept: X[] = []; // the logits' and the hidden states' values, when the caller keeps them
  let done = false;
  try {
    record(trace, "tokens", { shape: [N], data: ids });
    const positions = segments.length === 1 ? segments[0]!.positions : Int32Array.from(segments.flatMap((s) => Array.from(s.positions)));
    let x = yield* point(o, listen, "embed", o.embed(weights.embed_tokens, ids), { positions });
    const exitLayers = new Int32Array(N).fill(L);
    const active = threshold === null ? undefined : new Uint8Array(N).fill(1);
    const moe: (MoeStats | null)[] = [];
    for (let l = 0; l < L; l++) {
      const layer = yield* block(run, l, x, segments, positions, active);
      scope.releaseExcept(layer.out); // every value of this layer goes back; the residual stream carries on
      x = layer.out;
      moe.push(layer.stats);
      if (active && l + 1 >= minLayers && l + 1 < L) yield* exitCheck(run, x, l, active, exitLayers, threshold!);
      options.onLayer?.(l, L);
    }
    rows.forEach((r) => (r.cache.length += r.tokens.length));
    done = true;
    if (active) record(trace, "exit.layers", { shape: [N], data: exitLayers });
    const normed = yield* point(o, listen, "norm", o.rmsnorm(x, weights.norm, c.rms_norm_eps), { positions });
    const head = o.linear(normed, weights.lm_head);
    const logits = hookHost(listen, "logits", { shape: [N, c.vocab_size], data: yield* read(o, head) }, { positions });
    const result: ForwardResult = { logits, exitLayers, moe };
    if (options.keepLogits) kept.push((result.logitsValue = head));
    if (options.keepHidden) kept.push((result.hiddenValue = normed));
    return result;
  } finally {
    // Also on an error half-way: nothing of this call stays out of the pool, and a cache with a layer that may
    // already hold this call's tokens and cannot drop them is marked so that it is not used again.
    if (!done) for (const r of rows) if (r.cache.layers.some((_, l) => !dropsPositions(c, l))) r.cache.broken = "a forward through it failed half-way";
    scope.releaseExcept(...kept);
    for (const r of rows) if (r.own) releaseCache(r.cache);
    ops.settle();
  }
}

/** One pre-norm block (Block.forward): attention and feed-forward, each added to the residual stream. */
export function* block<X extends Value>(run: Run<X>, l: number, input: X, segments: readonly Segment<X>[], positions: Int32Array, active: Uint8Array | undefined): Reading<{ out: X; stats: MoeStats | null }> {
  const { ops: o, listen, config: c } = run;
  const w = run.model.weights.layers[l]!;
  const name = `layers.${l}`;
  const eps = c.rms_norm_eps;
  const at = { layer: l, positions };
  const x = yield* point(o, listen, `${name}.in`, input, at);
  const attnIn = yield* point(o, listen, `${name}.attn.in`, o.rmsnorm(x, w.input_layernorm, eps), at);
  const attnOut = yield* point(o, listen, `${name}.attn.out`, yield* adapted(o, yield* attention(run, l, attnIn, segments), w.adapters?.attn), at);
  const h = yield* point(o, listen, `${name}.attn.residual`, residual(o, x, attnOut, active), at);

  const running = active ? rowsWhere(active) : null; // null: all rows
  if (running && running.length === 0) return { out: h, stats: null }; // every token has exited
  const ffnAt = { layer: l, positions: running ? Int32Array.from(running, (t) => positions[t]!) : positions };
  const ffnIn = yield* point(o, listen, `${name}.mlp.in`, o.rmsnorm(running ? o.gatherRows(h, running) : h, w.post_attention_layernorm, eps), ffnAt);
  const ffn = yield* feedForward(run, l, ffnIn, w.mlp, ffnAt.positions);
  const ffnOut = yield* point(o, listen, `${name}.mlp.out`, yield* adapted(o, ffn.out, w.adapters?.mlp), ffnAt);
  const out = yield* point(o, listen, `${name}.out`, residual(o, h, ffnOut, active, running), at);
  if (wants(listen.trace, `${name}.residual_norm`)) record(listen.trace, `${name}.residual_norm`, rowNorms({ shape: out.shape, data: yield* read(o, out) }));
  return { out, stats: isMoeLayer(c, l) ? ffn.stats : null };
}

/** The interventions option, checked to be a list of objects. */
function checkInterventions(list: readonly Intervention[] | undefined): readonly Intervention[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw argError("interventions", "a list of interventions ({ hooks?, experts? })", typeof list);
  list.forEach((item, i) => {
    if (!item || typeof item !== "object") throw argError(`interventions[${i}]`, "an intervention { hooks?, experts? }", item);
  });
  return list;
}

/** x + update on running rows (update holds one row per running token when `running` lists them); exited rows keep x. */
function residual<X extends Value>(o: Ops<X>, x: X, update: X, active?: Uint8Array, running?: Int32Array | null): X {
  if (!active) return o.add(x, update);
  const slot = running ? new Map(Array.from(running, (t, i) => [t, i])) : null;
  return o.addRows(x, update, Int32Array.from(active, (on, t) => (!on ? -1 : slot ? slot.get(t)! : t)));
}

/** A sublayer's output through its bottleneck adapter, if it has one (on the host: src/adapters.ts). */
function adapted<X extends Value>(o: Ops<X>, out: X, adapter: BottleneckAdapter | undefined): Reading<X> {
  return adapter ? adaptedOnHost(o, out, adapter) : settled(out);
}

function* adaptedOnHost<X extends Value>(o: Ops<X>, out: X, adapter: BottleneckAdapter): Reading<X> {
  return o.upload(bottleneck({ shape: out.shape, data: yield* read(o, out) }, adapter));
}

/** After layer l: running tokens whose confidence reaches the threshold stop (active 0, exitLayers l + 1). */
function* exitCheck<X extends Value>(run: Run<X>, x: X, l: number, active: Uint8Array, exitLayers: Int32Array, threshold: number): Reading<void> {
  const { ops: o, model: { weights, config } } = run;
  const probs = o.softmax(o.linear(o.rmsnorm(x, weights.norm, config.rms_norm_eps), weights.lm_head));
  const confidence = topTwoMargin({ shape: probs.shape, data: yield* read(o, probs) });
  record(run.listen.trace, `layers.${l}.exit.confidence`, confidence);
  for (let t = 0; t < active.length; t++) {
    if (active[t] && confidence.data[t]! >= threshold) {
      active[t] = 0;
      exitLayers[t] = l + 1;
    }
  }
}

/** p_top1 - p_top2 per row of probabilities [N, V] (p_top1 alone when V = 1). */
export function topTwoMargin(probs: Tensor): Tensor {
  const V = probs.shape[probs.shape.length - 1]!;
  const N = V === 0 ? 0 : probs.data.length / V;
  const out = new Float32Array(N);
  for (let t = 0; t < N; t++) {
    let [first, second] = [-Infinity, -Infinity];
    for (let v = t * V; v < (t + 1) * V; v++) {
      const p = probs.data[v]!;
      if (p > first) [first, second] = [p, first];
      else if (p > second) second = p;
    }
    out[t] = V < 2 ? first : first - second;
  }
  return { shape: [N], data: out };
}

/** The running rows, or null when every row runs. */
export function rowsWhere(flags: Uint8Array): Int32Array | null {
  const rows: number[] = [];
  flags.forEach((f, i) => f && rows.push(i));
  return rows.length === flags.length ? null : Int32Array.from(rows);
}

/** The L2 norm of each row: the residual stream's size, layer after layer. */
export function rowNorms(x: { readonly shape: readonly number[]; readonly data: ArrayLike<number> }): Tensor {
  const D = x.shape[x.shape.length - 1]!;
  const rows = D === 0 ? 0 : x.data.length / D;
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = r * D; i < (r + 1) * D; i++) sum += x.data[i]! ** 2;
    out[r] = Math.sqrt(sum);
  }
  return { shape: [rows], data: out };
}


