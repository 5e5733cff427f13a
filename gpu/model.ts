// The tiny model's forward pass kept on the device: the same structure as src/model/model.ts and block.ts
// (pre-norm blocks, MLA attention in "absorb" form, dense SwiGLU or MoE feed-forward, final norm and head), with
// weights uploaded once (cached by their Float32Array) and activations in pooled GPU buffers from the embedding
// to the logits. What comes back to the host: the logits, the traced tensors the caller asks for, and per MoE
// layer the router logits [T, E] (a few numbers per token), so that routing (top-k, groups, bias, capacity) runs
// in the reference's own code (src/moe/layer.ts routeTokens) and picks exactly the experts it would. The weights,
// config and routing code are the model's; only the data movement is this file's.
//
// Supported: attention kinds "mla" (mla_mode "absorb"), "mha" and "decay" (decay_mode "relative"), per layer; one
// sequence, fresh or continuing a DeviceCache (the attention caches, on the device); early exit, with the head's
// probabilities [T, V] read back after each eligible layer for the confidence test (src/model/depth.ts). Anything else
// throws NotSupportedError naming the feature. The trace has every name the reference records except
// layers.*.attn.probs: the fused attention never forms the probability matrix.

import { mlaSoftmaxScale, mlaYarn, checkMlaConfig, type MlaWeights } from "../src/attention/mla.ts";
import { NotSupportedError } from "../src/backend.ts";
import { argError, checkInteger, checkNumber } from "../src/errors.ts";
import { type Routing } from "../src/moe/experts.ts";
import { routeTokens, type MoeWeights } from "../src/moe/layer.ts";
import { type MoeStats } from "../src/moe/stats.ts";
import { namedWeights, type HookedWeight } from "../src/model-adapters.ts";
import { moeConfigOf, rowNorms } from "../src/model/block.ts";
import { headDim, isMoeLayer, layerKind, type AttentionKind } from "../src/model/config.ts";
import { topTwoMargin } from "../src/model/depth.ts";
import { decayGammas } from "../src/model/mha.ts";
import { type DenseMlpWeights, type Model } from "../src/model/weights.ts";
import { ropeFrequencies, yarnSoftmaxFactor } from "../src/rope.ts";
import { numel, type Tensor } from "../src/tensor.ts";
import { record, wants, type Trace } from "../src/trace.ts";
import { type GpuContext, type GpuTensor } from "./context.ts";
import { attention } from "./kernels/attention.ts";
import { add, addRows, copyBlocks, gatherRows, rope, ropeTable, swiglu } from "./kernels/elementwise.ts";
import { gemmInto, linear } from "./kernels/matmul.ts";
import { moe } from "./kernels/moe.ts";
import { rmsnorm, softmax } from "./kernels/rows.ts";

export interface DeviceForwardOptions {
  /** Named intermediates to read back, with src/model's names (embed, layers.0.attn.out, norm, logits, ...). */
  trace?: Trace;
  /** Continue from (and append to) this device-resident cache; absent: a fresh sequence from position 0. */
  cache?: DeviceCache;
  /** Early-exit confidence threshold; default config.exit_threshold (null: full depth). */
  exitThreshold?: number | null;
  /** Layers every token runs before it may exit; default config.exit_min_layers. */
  minLayers?: number;
}

/**
 * The attention caches on the device, per layer. MLA (absorb): keys [capacity, kv_lora_rank + qk_rope_head_dim]
 * (the normalised latent and the rotated shared key) and values [capacity, kv_lora_rank] (the latent again,
 * contiguous for the attention kernel). mha, decay: rotated keys and values [Hkv, capacity, Dh]. `length`
 * positions are filled; the next token sits at position `length`.
 */
export interface DeviceCache {
  length: number;
  readonly capacity: number;
  readonly layers: readonly { keys: GPUBuffer; values: GPUBuffer }[];
}

/** A cache for up to `capacity` positions (default max_position_embeddings); free it with releaseDeviceCache. */
export function createDeviceCache(ctx: GpuContext, model: Model, capacity = model.config.max_position_embeddings): DeviceCache {
  const c = model.config;
  checkDeviceSupport(model);
  const [r, dr, kv] = [c.kv_lora_rank, c.qk_rope_head_dim, c.num_key_value_heads * headDim(c)];
  const layers = Array.from({ length: c.num_hidden_layers }, (_, l) => layerKind(c, l) === "mla"
    ? { keys: ctx.acquire(capacity * (r + dr)), values: ctx.acquire(capacity * r) }
    : { keys: ctx.acquire(capacity * kv), values: ctx.acquire(capacity * kv) });
  return { length: 0, capacity, layers };
}

export function releaseDeviceCache(ctx: GpuContext, cache: DeviceCache): void {
  for (const layer of cache.layers) ctx.release(layer.keys, layer.values);
}

export interface DeviceForwardResult {
  logits: Tensor; // [T, V]
  /** Per layer: the MoE routing it used (over the tokens still running), or null (dense layer, or none ran). */
  routing: (Routing | null)[];
  /** Per layer: the MoE's statistics over the tokens that ran it, or null, as the reference's forward gives them. */
  moe: (MoeStats | null)[];
  /** Layers each token ran: num_hidden_layers unless it exited early. */
  exitLayers: Int32Array;
}

const DEVICE_KINDS: readonly AttentionKind[] = ["mla", "mha", "decay"];

/** Throws NotSupportedError unless the device runner covers `model`'s configuration. */
export function checkDeviceSupport(model: Model): void {
  const c = model.config;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const kind = layerKind(c, l);
    if (!DEVICE_KINDS.includes(kind)) {
      throw new NotSupportedError(`webgpu model: attention kind "${kind}" (layer ${l}) runs only through synchronous kernels; the device runner supports ${DEVICE_KINDS.map((k) => `"${k}"`).join(", ")}`);
    }
    if (kind === "mla" && c.mla_mode !== "absorb") throw new NotSupportedError(`webgpu model: mla_mode "${c.mla_mode}"; the device runner supports "absorb"`);
    if (kind === "decay" && c.decay_mode !== "relative") throw new NotSupportedError(`webgpu model: decay_mode "${c.decay_mode}"; the device runner supports "relative"`);
    if (model.weights.layers[l]?.adapters) throw new NotSupportedError(`webgpu model: bottleneck adapters (layer ${l}); run adapters on reference or wasm`);
  }
  // Weight-only quantisation and unmerged LoRAs run as the weights they stand for (`data` holds them: dequantised,
  // or W + ΔW); quantised activations change the arithmetic itself, which the device runner does not emulate.
  for (const [name, w] of namedWeights(model)) {
    if ((w as HookedWeight).quant?.activations) throw new NotSupportedError(`webgpu model: quantised activations (${name}); the device runner supports weight-only schemes`);
  }
}

/** One sequence's new tokens → their next-token logits, on the device (through `cache` when given). */
export async function forwardOnDevice(ctx: GpuContext, model: Model, tokens: ArrayLike<number>, options: DeviceForwardOptions = {}): Promise<DeviceForwardResult> {
  checkDeviceSupport(model);
  const { config: c, weights } = model;
  const T = tokens.length;
  if (T === 0) throw argError("tokens", "at least one token id", 0);
  if (T > c.max_position_embeddings) throw argError("tokens", `at most max_position_embeddings = ${c.max_position_embeddings}`, T);
  const ids = Uint32Array.from(tokens, (id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= c.vocab_size) throw argError(`tokens[${t}]`, `an integer in [0, ${c.vocab_size - 1}]`, id);
    return id;
  });
  const { trace } = options;
  const L = c.num_hidden_layers;
  const threshold = options.exitThreshold === undefined ? c.exit_threshold : options.exitThreshold;
  if (threshold !== null) checkNumber("exitThreshold", threshold, 0, Infinity);
  const minLayers = options.minLayers ?? c.exit_min_layers;
  checkInteger("minLayers", minLayers, 1, L);
  const exitLayers = new Int32Array(T).fill(L);
  const active = threshold === null ? undefined : new Uint8Array(T).fill(1);
  const cache = options.cache ?? createDeviceCache(ctx, model, T);
  const start = cache.length;
  if (start + T > cache.capacity) throw argError("tokens", `at most ${cache.capacity - start} more (the cache's capacity)`, T);
  const W = (t: Tensor): GpuTensor => ({ shape: t.shape, buffer: ctx.weight(t.data) });
  const D = c.hidden_size;
  const eps = c.rms_norm_eps;
  const temps: GPUBuffer[] = [];
  const keep = (t: GpuTensor) => (temps.push(t.buffer), t);
  const show = async (name: string, t: GpuTensor) => {
    if (wants(trace, name)) record(trace, name, { shape: t.shape, data: await ctx.read(t.buffer, numel(t.shape)) });
  };

  const idBuffer = ctx.upload(ids);
  let x = gatherRows(ctx, ctx.weight(weights.embed_tokens.data), D, idBuffer, T);
  ctx.release(idBuffer);
  record(trace, "tokens", { shape: [T], data: Int32Array.from(ids) });
  await show("embed", x);
  const routing: (Routing | null)[] = [];
  const moeStats: (MoeStats | null)[] = [];
  // Rotary tables for these positions, one per rotated width (MLA's qk_rope_head_dim, the plain kinds' Dh).
  const tables = new Map<number, GPUBuffer>();
  const tableFor = (dim: number) => {
    let table = tables.get(dim);
    if (!table) {
      const freqs = ropeFrequencies({ dim, theta: c.rope_theta, yarn: mlaYarn(c) });
      tables.set(dim, (table = ctx.upload(ropeTable(Array.from({ length: T }, (_, t) => start + t), freqs))));
    }
    return table;
  };

  try {
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const layer = weights.layers[l]!;
      const name = `layers.${l}`;
      const attnIn = keep(rmsnorm(ctx, x, W(layer.input_layernorm), eps));
      await show(`${name}.attn.in`, attnIn);
      const kind = layerKind(c, l);
      const place = { start, capacity: cache.capacity, ...cache.layers[l]! };
      const attnOut = keep(kind === "mla"
        ? mlaAbsorb(ctx, attnIn, layer.self_attn as unknown as MlaWeights, model, { ...place, table: tableFor(c.qk_rope_head_dim) }, keep, W)
        : multiHead(ctx, attnIn, layer.self_attn, model, { ...place, table: tableFor(headDim(c)) }, kind === "decay", keep, W));
      await show(`${name}.attn.out`, attnOut);
      // Early exit (src/model/block.ts): exited tokens keep their state, and only running tokens run the FFN.
      const running = active ? [...active.keys()].filter((t) => active[t]) : null;
      const slots = (of: (t: number) => number) => keep({ shape: [T], buffer: ctx.upload(Int32Array.from({ length: T }, (_, t) => of(t))) }).buffer;
      const h = keep(active ? addRows(ctx, x, attnOut, slots((t) => (active[t] ? t : -1))) : add(ctx, x, attnOut));
      await show(`${name}.attn.residual`, h);
      if (running && running.length === 0) { // every token has exited
        routing.push(null);
        moeStats.push(null);
        temps.push(x.buffer);
        ctx.release(...temps.splice(0).filter((b) => b !== h.buffer));
        x = h;
        continue;
      }
      const subset = running && running.length < T ? running : null;
      const ffnSource = subset ? keep(gatherRows(ctx, h.buffer, D, keep({ shape: [subset.length], buffer: ctx.upload(Uint32Array.from(subset)) }).buffer, subset.length)) : h;
      const ffnIn = keep(rmsnorm(ctx, ffnSource, W(layer.post_attention_layernorm), eps));
      await show(`${name}.mlp.in`, ffnIn);
      const rows = ffnIn.shape[0]!;
      let ffnOut: GpuTensor;
      if (isMoeLayer(c, l)) {
        const result = await moeOnDevice(ctx, ffnIn, layer.mlp as MoeWeights, model, keep, W);
        ffnOut = result.out;
        routing.push(result.routing);
        moeStats.push(result.stats);
        if (trace) {
          const k = result.routing.k;
          record(trace, `${name}.mlp.router.logits`, result.logits);
          record(trace, `${name}.mlp.router.scores`, result.scores);
          record(trace, `${name}.mlp.router.indices`, { shape: [rows, k], data: result.routing.experts });
          record(trace, `${name}.mlp.router.weights`, { shape: [rows, k], data: result.routing.weights });
          record(trace, `${name}.mlp.router.kept`, { shape: [rows, k], data: result.routing.kept });
        }
      } else {
        ffnOut = keep(swigluMlp(ctx, ffnIn, layer.mlp as DenseMlpWeights, keep, W));
        routing.push(null);
        moeStats.push(null);
      }
      await show(`${name}.mlp.out`, ffnOut);
      const slotOf = subset ? new Map(subset.map((t, i) => [t, i])) : null;
      const out = active ? addRows(ctx, h, ffnOut, slots((t) => (!active[t] ? -1 : slotOf ? slotOf.get(t)! : t))) : add(ctx, h, ffnOut);
      await show(`${name}.out`, out);
      if (wants(trace, `${name}.residual_norm`)) {
        record(trace, `${name}.residual_norm`, rowNorms({ shape: out.shape, data: await ctx.read(out.buffer, T * D) }));
      }
      temps.push(x.buffer);
      ctx.release(...temps.splice(0)); // every buffer of this layer goes back to the pool; `out` carries on
      x = out;
      if (active && l + 1 >= minLayers && l + 1 < L) await exitCheckOnDevice(ctx, x, l, active, exitLayers, threshold!, model, trace);
    }
    if (active) record(trace, "exit.layers", { shape: [T], data: exitLayers });
    const normed = rmsnorm(ctx, x, W(weights.norm), eps);
    await show("norm", normed);
    const logitsOnDevice = linear(ctx, normed, W(weights.lm_head));
    const logits = { shape: [T, c.vocab_size], data: await ctx.read(logitsOnDevice.buffer, T * c.vocab_size) };
    record(trace, "logits", logits);
    ctx.release(x.buffer, normed.buffer, logitsOnDevice.buffer);
    cache.length = start + T;
    return { logits, routing, moe: moeStats, exitLayers };
  } finally {
    // Also on an error half-way: nothing of this call stays out of the pool.
    ctx.release(...temps, ...tables.values());
    if (!options.cache) releaseDeviceCache(ctx, cache);
  }
}

/** src/model/depth.ts exitCheck with the head on the device: only the probabilities [T, V] come back. */
async function exitCheckOnDevice(
  ctx: GpuContext, x: GpuTensor, l: number, active: Uint8Array, exitLayers: Int32Array, threshold: number, model: Model, trace?: Trace,
): Promise<void> {
  const { weights, config } = model;
  const normed = rmsnorm(ctx, x, { shape: weights.norm.shape, buffer: ctx.weight(weights.norm.data) }, config.rms_norm_eps);
  const head = linear(ctx, normed, { shape: weights.lm_head.shape, buffer: ctx.weight(weights.lm_head.data) });
  const probs = softmax(ctx, head);
  const data = await ctx.read(probs.buffer, numel(probs.shape));
  ctx.release(normed.buffer, head.buffer, probs.buffer);
  const confidence = topTwoMargin({ shape: probs.shape, data });
  record(trace, `layers.${l}.exit.confidence`, confidence);
  for (let t = 0; t < active.length; t++) {
    if (active[t] && confidence.data[t]! >= threshold) {
      active[t] = 0;
      exitLayers[t] = l + 1;
    }
  }
}

type Keep = (t: GpuTensor) => GpuTensor;
type Resident = (t: Tensor) => GpuTensor;

/** down(silu(gate·x) ⊙ up·x), as src/model/block.ts denseMlp. */
function swigluMlp(ctx: GpuContext, x: GpuTensor, w: DenseMlpWeights, keep: Keep, W: Resident): GpuTensor {
  const gate = keep(linear(ctx, x, W(w.gate_proj)));
  const up = keep(linear(ctx, x, W(w.up_proj)));
  return linear(ctx, keep(swiglu(ctx, gate, up)), W(w.down_proj));
}

/** Where a layer's new tokens go: the rope table of their positions, the first position, the cache buffers. */
interface LayerPlace {
  table: GPUBuffer;
  start: number;
  capacity: number;
  keys: GPUBuffer;
  values: GPUBuffer;
}

/** MLA in absorb form for new tokens x [T, D] (src/attention/mla.ts mla → absorb), all on the device. */
function mlaAbsorb(ctx: GpuContext, x: GpuTensor, w: MlaWeights, model: Model, place: LayerPlace, keep: Keep, W: Resident): GpuTensor {
  const { table, start } = place;
  const c = checkMlaConfig(model.config);
  const T = x.shape[0]!;
  const [H, dn, dr, dv, r] = [c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank];
  const dq = dn + dr;
  const q = keep(c.q_lora_rank === 0
    ? linear(ctx, x, W(w.q_proj!))
    : linear(ctx, keep(rmsnorm(ctx, keep(linear(ctx, x, W(w.q_a_proj!))), W(w.q_a_layernorm!), c.rms_norm_eps)), W(w.q_b_proj!)));
  // splitHeads: q [T, H·dq] → q_nope [H, T, dn] and q_pe [H, T, dr].
  const qNope = keep(ctx.empty([1, H, T, dn]));
  copyBlocks(ctx, q.buffer, qNope.buffer, { batches: H, rows: T, width: dn, srcBatch: dq, srcRow: H * dq, dstBatch: T * dn, dstRow: dn });
  const qPeRaw = keep(ctx.empty([1, H, T, dr]));
  copyBlocks(ctx, q.buffer, qPeRaw.buffer, { batches: H, rows: T, width: dr, srcOff: dn, srcBatch: dq, srcRow: H * dq, dstBatch: T * dr, dstRow: dr });
  const kv = keep(linear(ctx, x, W(w.kv_a_proj_with_mqa))); // [T, r + dr]
  const latentRaw = keep(ctx.empty([1, T, r]));
  copyBlocks(ctx, kv.buffer, latentRaw.buffer, { rows: T, width: r, srcRow: r + dr, dstRow: r });
  const kPeRaw = keep(ctx.empty([1, T, dr]));
  copyBlocks(ctx, kv.buffer, kPeRaw.buffer, { rows: T, width: dr, srcOff: r, srcRow: r + dr, dstRow: dr });
  const qPe = keep(rope(ctx, qPeRaw, table, T));
  const kPe = keep(rope(ctx, kPeRaw, table, T));
  const latent = keep(rmsnorm(ctx, latentRaw, W(w.kv_a_layernorm), c.rms_norm_eps));
  // q_nope·W_uk,h: W_uk,h is rows [h·(dn+dv), h·(dn+dv) + dn) of kv_b_proj, [dn, r], read in place.
  const kvB = ctx.weight(w.kv_b_proj.data);
  const headStride = (dn + dv) * r;
  const qLatent = keep(ctx.empty([1, H, T, r]));
  gemmInto(ctx, qNope.buffer, kvB, qLatent.buffer, { M: T, N: r, K: dn, transB: false, batches: H, strideA: T * dn, strideB: headStride, strideC: T * r });
  // Queries [q_latent ; q_pe] against keys [latent ; k_pe] (one kv head), values the latent.
  const query = keep(ctx.empty([1, H, T, r + dr]));
  copyBlocks(ctx, qLatent.buffer, query.buffer, { rows: H * T, width: r, srcRow: r, dstRow: r + dr });
  copyBlocks(ctx, qPe.buffer, query.buffer, { rows: H * T, width: dr, srcRow: dr, dstOff: r, dstRow: r + dr });
  // The new positions' keys and values are appended to the cache in place.
  copyBlocks(ctx, latent.buffer, place.keys, { rows: T, width: r, srcRow: r, dstOff: start * (r + dr), dstRow: r + dr });
  copyBlocks(ctx, kPe.buffer, place.keys, { rows: T, width: dr, srcRow: dr, dstOff: start * (r + dr) + r, dstRow: r + dr });
  copyBlocks(ctx, latent.buffer, place.values, { rows: T, width: r, srcRow: r, dstOff: start * r, dstRow: r });
  const Tk = start + T;
  const keys = { shape: [1, 1, Tk, r + dr], buffer: place.keys };
  const values = { shape: [1, 1, Tk, r], buffer: place.values };
  const scale = mlaSoftmaxScale(c);
  const mask = { causal: true, offset: start };
  const outLatent = keep(attention(ctx, query, keys, values, { B: 1, H, Hkv: 1, Tq: T, Tk, Dh: r + dr, Dv: r, scale, mask, kvRows: place.capacity }));
  // ·W_uvᵀ per head: W_uv,h is rows [h·(dn+dv) + dn, (h+1)·(dn+dv)) of kv_b_proj, [dv, r], read transposed in place.
  const heads = keep(ctx.empty([1, H, T, dv]));
  gemmInto(ctx, outLatent.buffer, kvB, heads.buffer, { M: T, N: dv, K: r, transB: true, batches: H, strideA: T * r, offB: dn * r, strideB: headStride, strideC: T * dv });
  // mergeHeads: [H, T, dv] → [T, H·dv].
  const merged = keep(ctx.empty([T, H * dv]));
  copyBlocks(ctx, heads.buffer, merged.buffer, { batches: H, rows: T, width: dv, srcBatch: T * dv, srcRow: dv, dstBatch: dv, dstRow: H * dv });
  return linear(ctx, merged, W(w.o_proj));
}

/** Multi-head (grouped-query) attention with rotary positions, plain or with relative decay (src/model/mha.ts). */
function multiHead(
  ctx: GpuContext, x: GpuTensor, w: Record<string, Tensor>, model: Model, place: LayerPlace, decay: boolean, keep: Keep, W: Resident,
): GpuTensor {
  const c = model.config;
  const T = x.shape[0]!;
  const [H, Hkv, Dh, cap, start] = [c.num_attention_heads, c.num_key_value_heads, headDim(c), place.capacity, place.start];
  // splitHeads: [T, heads·Dh] → [heads, T, Dh]; keys (after rotation) and values go straight into the cache.
  const split = (t: GpuTensor, heads: number) => {
    const out = keep(ctx.empty([1, heads, T, Dh]));
    copyBlocks(ctx, t.buffer, out.buffer, { batches: heads, rows: T, width: Dh, srcBatch: Dh, srcRow: heads * Dh, dstBatch: T * Dh, dstRow: Dh });
    return out;
  };
  const q = keep(rope(ctx, split(keep(linear(ctx, x, W(w.q_proj!))), H), place.table, T));
  const k = keep(rope(ctx, split(keep(linear(ctx, x, W(w.k_proj!))), Hkv), place.table, T));
  const v = split(keep(linear(ctx, x, W(w.v_proj!))), Hkv);
  const toCache = { batches: Hkv, rows: T, width: Dh, srcBatch: T * Dh, srcRow: Dh, dstOff: start * Dh, dstBatch: cap * Dh, dstRow: Dh };
  copyBlocks(ctx, k.buffer, place.keys, toCache);
  copyBlocks(ctx, v.buffer, place.values, toCache);
  const Tk = start + T;
  const gammas = decay ? ctx.upload(Float32Array.from(decayGammas(c), Math.log)) : undefined;
  const scale = yarnSoftmaxFactor(mlaYarn(c)) / Math.sqrt(Dh);
  const heads = keep(attention(ctx, q, { shape: [1, Hkv, Tk, Dh], buffer: place.keys }, { shape: [1, Hkv, Tk, Dh], buffer: place.values }, {
    B: 1, H, Hkv, Tq: T, Tk, Dh, Dv: Dh, scale, mask: { causal: true, offset: start }, logGammas: gammas, kvRows: cap,
  }));
  if (gammas) ctx.release(gammas);
  const merged = keep(ctx.empty([T, H * Dh]));
  copyBlocks(ctx, heads.buffer, merged.buffer, { batches: H, rows: T, width: Dh, srcBatch: T * Dh, srcRow: Dh, dstBatch: Dh, dstRow: H * Dh });
  return linear(ctx, merged, W(w.o_proj!));
}

/** The MoE layer (src/moe/layer.ts moeLayer): router logits read back, routed by the reference, experts on device. */
async function moeOnDevice(ctx: GpuContext, x: GpuTensor, w: MoeWeights, model: Model, keep: Keep, W: Resident) {
  const config = moeConfigOf(model.config);
  const [T, D] = x.shape as [number, number];
  const E = config.n_routed_experts;
  const logitsOnDevice = keep(linear(ctx, x, W(w.gate.weight)));
  const logits = { shape: [T, E], data: await ctx.read(logitsOnDevice.buffer, T * E) };
  const { routing, scores, stats } = routeTokens(logits, config, w.gate.e_score_correction_bias);
  const experts = {
    gate: ctx.weight(w.experts.gate.data),
    up: ctx.weight(w.experts.up.data),
    down: ctx.weight(w.experts.down.data),
    E, F: config.moe_intermediate_size, D,
  };
  const routed = keep(moe(ctx, x, routing, experts));
  const shared = w.shared_experts ? keep(swigluMlp(ctx, x, w.shared_experts, keep, W)) : null;
  const out = shared ? keep(add(ctx, routed, shared)) : routed;
  return { out, routing, stats, logits, scores };
}
