// The whole model's forward pass with weights, activations and the attention caches resident on a backend's device
// (WebGPU's GPU buffers, WASM's linear memory), written once against src/model/resident-ops.ts: the same structure
// as model.ts and block.ts (pre-norm blocks, attention, dense SwiGLU or MoE feed-forward, final norm and head).
// What comes back to the host: the logits, the traced tensors the caller asks for, and per MoE layer the router
// logits [T, E] (a few numbers per token), so that routing (top-k, groups, bias, capacity) runs in the reference's
// own code (src/moe/layer.ts routeTokens) and picks exactly the experts it would.
//
// Supported: attention kinds "mla" (mla_mode "absorb"), "mha" and "decay" (decay_mode "relative"), per layer; one
// sequence, fresh or continuing a ResidentCache; early exit, with the head's probabilities [T, V] read back after
// each eligible layer for the confidence test (src/model/depth.ts). Anything else throws NotSupportedError naming
// the feature, so that callers fall back to the kernel-by-kernel forward. The trace has every name the reference
// records except layers.*.attn.probs: the fused attention never forms the probability matrix.

import { NotSupportedError } from "../backend.ts";
import { argError, checkInteger, checkNumber } from "../errors.ts";
import { type Routing } from "../moe/experts.ts";
import { type MoeStats } from "../moe/stats.ts";
import { namedWeights, type HookedWeight } from "../model-adapters.ts";
import { type Tensor } from "../tensor.ts";
import { record, wants, type Trace } from "../trace.ts";
import { recordRouting, rowNorms, rowsWhere } from "./block.ts";
import { headDim, isMoeLayer, layerKind, type AttentionKind } from "./config.ts";
import { topTwoMargin } from "./depth.ts";
import { generateWith, type GenerateOptions, type GenerateResult } from "./generate.ts";
import { attentionLayer, feedForward, type LayerRun } from "./resident-layers.ts";
import { type ResidentOps, type ResidentTensor } from "./resident-ops.ts";
import { type Model } from "./weights.ts";

export interface ResidentForwardOptions<X extends ResidentTensor> {
  /** Named intermediates to read back, with src/model's names (embed, layers.0.attn.out, norm, logits, ...). */
  trace?: Trace;
  /** Continue from (and append to) this resident cache; absent: a fresh sequence from position 0. */
  cache?: ResidentCache<X>;
  /** Early-exit confidence threshold; default config.exit_threshold (null: full depth). */
  exitThreshold?: number | null;
  /** Layers every token runs before it may exit; default config.exit_min_layers. */
  minLayers?: number;
}

export interface ResidentForwardResult {
  logits: Tensor; // [T, V]
  /** Per layer: the MoE routing it used (over the tokens still running), or null (dense layer, or none ran). */
  routing: (Routing | null)[];
  /** Per layer: the MoE's statistics over the tokens that ran it, or null, as the reference's forward gives them. */
  moe: (MoeStats | null)[];
  /** Layers each token ran: num_hidden_layers unless it exited early. */
  exitLayers: Int32Array;
}

/**
 * The attention caches on the device, per layer. MLA (absorb): keys [capacity, kv_lora_rank + qk_rope_head_dim]
 * (the normalised latent and the rotated shared key) and values [capacity, kv_lora_rank] (the latent again,
 * contiguous for the attention kernel). mha, decay: rotated keys and values [Hkv, capacity, Dh]. `length`
 * positions are filled; the next token sits at position `length`.
 */
export interface ResidentCache<X extends ResidentTensor> {
  length: number;
  readonly capacity: number;
  readonly layers: readonly { keys: X; values: X }[];
}

/** A cache for up to `capacity` positions (default max_position_embeddings); free it with releaseResidentCache. */
export function createResidentCache<X extends ResidentTensor>(ops: ResidentOps<X>, model: Model, capacity = model.config.max_position_embeddings): ResidentCache<X> {
  const c = model.config;
  checkResidentSupport(model, ops.name);
  checkInteger("capacity", capacity, 1, c.max_position_embeddings);
  const [r, dr, kv] = [c.kv_lora_rank, c.qk_rope_head_dim, c.num_key_value_heads * headDim(c)];
  const layers = Array.from({ length: c.num_hidden_layers }, (_, l) => layerKind(c, l) === "mla"
    ? { keys: ops.empty([capacity, r + dr]), values: ops.empty([capacity, r]) }
    : { keys: ops.empty([capacity, kv]), values: ops.empty([capacity, kv]) });
  return { length: 0, capacity, layers };
}

/** Frees the cache's memory; the cache must not be used afterwards. */
export function releaseResidentCache<X extends ResidentTensor>(ops: ResidentOps<X>, cache: ResidentCache<X>): void {
  for (const layer of cache.layers) {
    ops.free(layer.keys);
    ops.free(layer.values);
  }
  (cache.layers as unknown[]).length = 0; // a later forward through it fails on its layer count
}

const RESIDENT_KINDS: readonly AttentionKind[] = ["mla", "mha", "decay"];

/** Throws NotSupportedError unless the resident forward covers `model`'s configuration. */
export function checkResidentSupport(model: Model, backend: string): void {
  const c = model.config;
  // Listing every weight costs more than a decode step: a model passes once per config and weights object.
  const seen = supported.get(model);
  if (seen && seen.config === c && seen.weights === model.weights) return;
  const who = `${backend} model`;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const kind = layerKind(c, l);
    if (!RESIDENT_KINDS.includes(kind)) {
      throw new NotSupportedError(`${who}: attention kind "${kind}" (layer ${l}) runs only kernel by kernel; the resident forward supports ${RESIDENT_KINDS.map((k) => `"${k}"`).join(", ")}`);
    }
    if (kind === "mla" && c.mla_mode !== "absorb") throw new NotSupportedError(`${who}: mla_mode "${c.mla_mode}"; the resident forward supports "absorb"`);
    if (kind === "decay" && c.decay_mode !== "relative") throw new NotSupportedError(`${who}: decay_mode "${c.decay_mode}"; the resident forward supports "relative"`);
    if (model.weights.layers[l]?.adapters) throw new NotSupportedError(`${who}: bottleneck adapters (layer ${l}); run adapters kernel by kernel`);
  }
  // Weight-only quantisation and unmerged LoRAs run as the weights they stand for (`data` holds them: dequantised,
  // or W + ΔW); quantised activations change the arithmetic itself, which the resident forward does not emulate.
  for (const [name, w] of namedWeights(model)) {
    if ((w as HookedWeight).quant?.activations) throw new NotSupportedError(`${who}: quantised activations (${name}); the resident forward supports weight-only schemes`);
  }
  supported.set(model, { config: c, weights: model.weights });
}

const supported = new WeakMap<Model, Pick<Model, "config" | "weights">>();

/** Whether the resident forward runs `model`, and if not why (NotSupportedError's message). */
export function residentRuns(model: Model, backend: string): { yes: boolean; why?: string } {
  try {
    checkResidentSupport(model, backend);
    return { yes: true };
  } catch (error) {
    if (error instanceof NotSupportedError) return { yes: false, why: error.message };
    throw error;
  }
}

/** One sequence's new tokens → their next-token logits, on the backend's device (through `cache` when given). */
export async function forwardResident<X extends ResidentTensor>(
  ops: ResidentOps<X>, model: Model, tokens: ArrayLike<number>, options: ResidentForwardOptions<X> = {},
): Promise<ResidentForwardResult> {
  checkResidentSupport(model, ops.name);
  const { config: c, weights } = model;
  const T = tokens?.length;
  if (!T) throw argError("tokens", "at least one token id", T);
  if (T > c.max_position_embeddings) throw argError("tokens", `at most max_position_embeddings = ${c.max_position_embeddings}`, T);
  const ids = new Uint32Array(T);
  for (let t = 0; t < T; t++) {
    const id = tokens[t]!;
    if (!Number.isInteger(id) || id < 0 || id >= c.vocab_size) throw argError(`tokens[${t}]`, `an integer in [0, ${c.vocab_size - 1}]`, id);
    ids[t] = id;
  }
  const { trace } = options;
  const L = c.num_hidden_layers;
  const threshold = options.exitThreshold === undefined ? c.exit_threshold : options.exitThreshold;
  if (threshold !== null) checkNumber("exitThreshold", threshold, 0, Infinity);
  const minLayers = options.minLayers ?? c.exit_min_layers;
  checkInteger("minLayers", minLayers, 1, L);
  if (options.cache && options.cache.layers?.length !== L) throw argError("cache", `a resident cache of ${L} layers for this model`, options.cache.layers?.length);
  const exitLayers = new Int32Array(T).fill(L);
  const active = threshold === null ? undefined : new Uint8Array(T).fill(1);
  const cache = options.cache ?? createResidentCache(ops, model, T);
  const start = cache.length;
  if (start + T > cache.capacity) throw argError("tokens", `at most ${cache.capacity - start} more (the cache's capacity)`, T);
  const temps: X[] = [];
  const run: LayerRun<X> = {
    ops, model, T, start, capacity: cache.capacity, trace,
    keep: (t) => (temps.push(t), t),
    W: (t) => ops.weight(t),
    tables: new Map(),
    show: async (name, t) => {
      if (wants(trace, name)) record(trace, name, { shape: t.shape, data: await ops.read(t) });
    },
  };
  const { show, W } = run;
  const eps = c.rms_norm_eps;

  let x = ops.embed(weights.embed_tokens, ids);
  if (trace) record(trace, "tokens", { shape: [T], data: Int32Array.from(ids) });
  const routing: (Routing | null)[] = [];
  const moeStats: (MoeStats | null)[] = [];
  try {
    await show("embed", x);
    for (let l = 0; l < L; l++) {
      const layer = weights.layers[l]!;
      const name = `layers.${l}`;
      const attnIn = run.keep(ops.rmsnorm(x, W(layer.input_layernorm), eps));
      await show(`${name}.attn.in`, attnIn);
      const attnOut = run.keep(attentionLayer(run, l, attnIn, cache.layers[l]!));
      await show(`${name}.attn.out`, attnOut);
      // Early exit (src/model/block.ts): exited tokens keep their state, and only running tokens run the FFN.
      const running = active ? rowsWhere(active) : null;
      const h = run.keep(active ? ops.addRows(x, attnOut, slotsOf(T, (t) => (active[t] ? t : -1))) : ops.add(x, attnOut));
      await show(`${name}.attn.residual`, h);
      temps.push(x);
      if (running && running.length === 0) { // every token has exited
        routing.push(null);
        moeStats.push(null);
        ops.release(...temps.splice(0).filter((b) => b !== h));
        x = h;
        continue;
      }
      const subset = running && running.length < T ? running : null;
      const ffnIn = run.keep(ops.rmsnorm(subset ? run.keep(ops.gatherRows(h, subset)) : h, W(layer.post_attention_layernorm), eps));
      await show(`${name}.mlp.in`, ffnIn);
      const ffn = await feedForward(run, ffnIn, layer.mlp, isMoeLayer(c, l));
      routing.push(ffn.routing);
      moeStats.push(ffn.stats);
      if (ffn.routing) recordRouting(trace, `${name}.mlp.router`, { routing: ffn.routing, logits: ffn.logits!, scores: ffn.scores! });
      await show(`${name}.mlp.out`, ffn.out);
      const slotOf = subset ? new Map(subset.map((t, i) => [t, i])) : null;
      const out = active ? ops.addRows(h, ffn.out, slotsOf(T, (t) => (!active[t] ? -1 : slotOf ? slotOf.get(t)! : t))) : ops.add(h, ffn.out);
      await show(`${name}.out`, out);
      if (wants(trace, `${name}.residual_norm`)) record(trace, `${name}.residual_norm`, rowNorms({ shape: out.shape, data: await ops.read(out) }));
      ops.release(...temps.splice(0)); // every tensor of this layer goes back to the pool; `out` carries on
      x = out;
      if (active && l + 1 >= minLayers && l + 1 < L) await exitCheck(run, x, l, active, exitLayers, threshold!);
    }
    if (active) record(trace, "exit.layers", { shape: [T], data: exitLayers });
    const normed = run.keep(ops.rmsnorm(x, W(weights.norm), eps));
    await show("norm", normed);
    const head = run.keep(ops.linear(normed, W(weights.lm_head)));
    const logits = { shape: [T, c.vocab_size], data: await ops.read(head) };
    record(trace, "logits", logits);
    cache.length = start + T;
    return { logits, routing, moe: moeStats, exitLayers };
  } finally {
    // Also on an error half-way: nothing of this call stays out of the pool.
    ops.release(...temps, x, ...run.tables.values());
    if (!options.cache) releaseResidentCache(ops, cache);
    ops.settle?.();
  }
}

/** src/model/depth.ts exitCheck with the head on the device: only the probabilities [T, V] come back. */
async function exitCheck<X extends ResidentTensor>(
  run: LayerRun<X>, x: X, l: number, active: Uint8Array, exitLayers: Int32Array, threshold: number,
): Promise<void> {
  const { ops, model: { weights, config }, W } = run;
  const normed = ops.rmsnorm(x, W(weights.norm), config.rms_norm_eps);
  const head = ops.linear(normed, W(weights.lm_head));
  const probs = ops.softmax(head);
  const data = await ops.read(probs);
  ops.release(normed, head, probs);
  const confidence = topTwoMargin({ shape: probs.shape, data });
  record(run.trace, `layers.${l}.exit.confidence`, confidence);
  for (let t = 0; t < active.length; t++) {
    if (active[t] && confidence.data[t]! >= threshold) {
      active[t] = 0;
      exitLayers[t] = l + 1;
    }
  }
}

const slotsOf = (T: number, of: (t: number) => number) => Int32Array.from({ length: T }, (_, t) => of(t));

/**
 * `generate` (src/model/generate.ts: the same decode loop and sampling) through the resident forward, with a
 * resident cache of prompt + maxTokens positions (the loop never runs its last sampled token) freed at the end.
 */
export async function generateResident<X extends ResidentTensor>(
  ops: ResidentOps<X>, model: Model, prompt: readonly number[], options: GenerateOptions,
): Promise<Omit<GenerateResult, "cache">> {
  const capacity = Math.max(1, Math.min(prompt.length + options.maxTokens, model.config.max_position_embeddings));
  const cache = createResidentCache(ops, model, capacity);
  try {
    return await generateWith((tokens) => forwardResident(ops, model, tokens, { cache, exitThreshold: options.exitThreshold }), model, prompt, options);
  } finally {
    releaseResidentCache(ops, cache);
  }
}
