// The attention sublayer of the one forward (src/model/forward.ts), over the checked operations (src/device/ops.ts),
// per sequence, through that sequence's cache: MLA (DeepSeek-V3 inference/model.py class MLA, naive and absorbed),
// DSA (MLA over the keys its indexer selects: dsa-layer.ts), multi-head / grouped-query attention with rotary
// positions, plain or with decay (relative, or "as-written" over keys decay-layer.ts scales); segmented attention
// over its bounded window and memory (segmented-layer.ts); sparse (NSA: sparse-layer.ts, its block selection and
// gated sum on the host). The feed-forward sublayer is feed-forward.ts.

import { attendWith, attention as sdpa } from "../attention/attention.ts";
import { mlaSoftmaxScale, yarnOptions, type MlaWeights } from "../attention/mla.ts";
import { read, settled, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { filled } from "../device/reference.ts";
import type { MoeConfig } from "../moe/layer.ts";
import { causal } from "../masks.ts";
import { ropeFrequencies, yarnSoftmaxFactor } from "../rope.ts";
import { reshape, type Tensor } from "../tensor.ts";
import { ensureRows, type ModelCache } from "./cache.ts";
import { decayedKeys } from "./decay-layer.ts";
import { attendSelected, indexerSelection, type Selection } from "./dsa-layer.ts";
import { sparseLayer } from "./sparse-layer.ts";
import { segmentedLayer } from "./segmented-layer.ts";
import { headDim, layerKind, type ModelConfig } from "./config.ts";
import { decayGammas } from "./mha.ts";
import { oncePerConfig } from "./once.ts";
import type { ExpertEdit } from "./interventions.ts";
import { hookHost, listened, point, readOnly, type Listeners } from "./points.ts";
import type { Model } from "./weights.ts";

/** What one forward's layers share. */
export interface Run<X extends Value> {
  readonly ops: Ops<X>;
  readonly model: Model;
  readonly config: ModelConfig;
  readonly moeConfig: MoeConfig | null;
  readonly listen: Listeners;
  /** The router edits of this forward's interventions (src/model/interventions.ts). */
  readonly experts: readonly ExpertEdit[];
  /** What the layers derive from the config (rotary frequencies, softmax scales, ln γ): made once per forward. */
  readonly derived: Map<string, unknown>;
}

/** One sequence's rows inside the packed x, that sequence's cache, and the absolute positions of its new tokens. */
export interface Segment<X extends Value> {
  readonly start: number;
  readonly length: number;
  readonly cache: ModelCache<X>;
  readonly positions: Int32Array;
}

const freqsFor = <X extends Value>(run: Run<X>, dim: number): Float64Array =>
  oncePerConfig(run, `freqs ${dim}`, () => ropeFrequencies({ dim, theta: run.config.rope_theta, yarn: yarnOptions(run.config) }));

// The functions below that only pass a computation on (by kind, or when nobody listens) are plain functions that
// return it, not generators delegating to it: a generator object per call and layer was garbage on every decode step.

/** Layer l's attention over the packed new tokens x [N, D], each segment through its own cache. */
export function attention<X extends Value>(run: Run<X>, l: number, x: X, segments: readonly Segment<X>[]): Reading<X> {
  const s = segments[0]!;
  if (segments.length === 1 && s.length === x.shape[0]) return sequenceAttention(run, l, x, s.cache, s.positions);
  return packedAttention(run, l, x, segments);
}

function* packedAttention<X extends Value>(run: Run<X>, l: number, x: X, segments: readonly Segment<X>[]): Reading<X> {
  const { ops } = run;
  const outs: X[] = [];
  for (const s of segments) outs.push(yield* sequenceAttention(run, l, ops.sliceRows(x, s.start, s.length), s.cache, s.positions));
  return outs.length === 1 ? outs[0]! : ops.concatRows(outs);
}

function sequenceAttention<X extends Value>(run: Run<X>, l: number, x: X, cache: ModelCache<X>, positions: Int32Array): Reading<X> {
  const w = run.model.weights.layers[l]!.self_attn;
  const T = x.shape[0]!;
  const start = cache.length;
  const kind = layerKind(run.config, l);
  if (kind === "segmented") return segmentedLayer(run, l, x, w, cache, positions); // bounded state, its own layout
  const place = ensureRows(cache, run.config, l, start + T);
  if (kind === "mla") return mla(run, l, x, w as unknown as MlaWeights, place, positions);
  if (kind === "dsa") return dsaAttention(run, l, x, w as unknown as MlaWeights, place, positions);
  if (kind === "sparse") return sparseLayer(run, l, x, w, place, positions, cache.ops);
  return multiHead(run, l, x, w, place, positions, kind === "decay");
}

/** DSA: MLA over the cache rows its indexer selects. The indexer reads MLA's own query latent (x itself without
 *  one): made once, for both. */
function* dsaAttention<X extends Value>(run: Run<X>, l: number, x: X, w: MlaWeights, place: Place<X>, positions: Int32Array): Reading<X> {
  const qr = run.config.q_lora_rank ? queryLatent(run, x, w) : x;
  const selected = yield* indexerSelection(run, l, x, qr, w as unknown as Record<string, Tensor>, place, positions, freqsFor(run, run.config.qk_rope_head_dim));
  return yield* mla(run, l, x, w, place, positions, selected, qr);
}

type Place<X> = { keys: X | null; values: X | null; rows: number };

/** MLA's normalised query latent RMSNorm(W_qa·x) [T, q_lora_rank]. */
const queryLatent = <X extends Value>(run: Run<X>, x: X, w: MlaWeights): X =>
  run.ops.rmsnorm(run.ops.linear(x, w.q_a_proj!), w.q_a_layernorm!, run.config.rms_norm_eps);

/**
 * MLA on one sequence's new tokens x [T, D]:
 *   q = W_qb·RMSNorm(W_qa·x) (or W_q·x), split per head into q_nope and q_pe (rotated)
 *   [c ; k_pe] = W_kva·x,  c ← RMSNorm(c),  k_pe rotated: one key shared by every head
 *   naive:  k_h = [W_uk,h·c ; k_pe], v_h = W_uv,h·c cached per head; attention of [q_nope ; q_pe] over them
 *   absorb: the cache holds [c ; k_pe]; q_nope·W_uk,h is attended over it with the latent c as values, and the
 *           result is taken through W_uv,h (W_kvb's slices read in place)
 *   out = W_o · concat_h heads
 * With `selected` (DSA), each new token attends only the cache rows its indexer picked (dsa-layer.ts), and `qr` is the
 * query latent the indexer read.
 */
function* mla<X extends Value>(run: Run<X>, l: number, x: X, w: MlaWeights, place: Place<X>, positions: Int32Array, selected?: Selection, qr?: X): Reading<X> {
  const { ops, config: c } = run;
  const { num_attention_heads: H, qk_nope_head_dim: dn, qk_rope_head_dim: dr, v_head_dim: dv, kv_lora_rank: r } = c;
  const T = positions.length;
  const start = positions[0]!;
  const { qNope, qPe } = mlaQuery(run, x, w, positions, qr);
  const kv = mlaKeyInputs(run, x, w, positions);
  const where = { layer: l, positions };
  const latent = yield* point(ops, run.listen, `layers.${l}.attn.latent`, kv.latent, where); // [1, T, r]
  const kPe = yield* point(ops, run.listen, `layers.${l}.attn.k_pe`, kv.kPe, where); // [1, T, dr]
  const keys = place.keys!, values = place.values!;
  const scale = oncePerConfig(run, "mla scale", () => mlaSoftmaxScale(c));
  let heads: X;
  if (c.mla_mode === "naive") {
    writeNaiveKeys(run, w, latent, kPe, place, start);
    const query = ops.concatLast([qNope, qPe]);
    // Argument objects are written out whole: a spread copy of one made V8's attention path several times slower.
    const args = { H, Hkv: H, Tq: T, Tk: start + T, Dh: dn + dr, Dv: dv, scale, offset: start, kvRows: place.rows };
    heads = selected ? attendSelected(ops, query, keys, values, args, selected) : yield* attend(run, l, query, keys, values, args, positions);
  } else {
    const perHead = (dn + dv) * r; // W_kvb rows of head h: W_uk,h [dn, r], then W_uv,h [dv, r]
    const qLatent = ops.empty([H, T, r]);
    ops.gemm(qNope, w.kv_b_proj, qLatent, { M: T, N: r, K: dn, transB: false, batches: H, strideA: T * dn, strideB: perHead, strideC: T * r });
    ops.writeRows(keys, ops.concatLast([latent, kPe]), start);
    ops.writeRows(values, latent, start);
    const query = ops.concatLast([qLatent, qPe]);
    const args = { H, Hkv: 1, Tq: T, Tk: start + T, Dh: r + dr, Dv: r, scale, offset: start, kvRows: place.rows };
    const outLatent = selected ? attendSelected(ops, query, keys, values, args, selected) : yield* attend(run, l, query, keys, values, args, positions);
    heads = ops.empty([H, T, dv]);
    ops.gemm(outLatent, w.kv_b_proj, heads, { M: T, N: dv, K: r, transB: true, batches: H, strideA: T * r, offB: dn * r, strideB: perHead, strideC: T * dv });
  }
  heads = yield* point(ops, run.listen, `layers.${l}.attn.heads`, heads, where);
  return ops.linear(ops.mergeHeads(heads), w.o_proj);
}

// The steps of MLA that read nothing back are plain functions: a generator's body destructures an array through the
// iterator protocol, an object a step, which an optimised plain function does not make.

/** q = W_qb·RMSNorm(W_qa·x) (or W_q·x), split per head into q_nope [H, T, dn] and q_pe [H, T, dr], q_pe rotated. */
function mlaQuery<X extends Value>(run: Run<X>, x: X, w: MlaWeights, positions: Int32Array, qr?: X): { qNope: X; qPe: X } {
  const { ops, config: c } = run;
  const q = c.q_lora_rank ? ops.linear(qr ?? queryLatent(run, x, w), w.q_b_proj!) : ops.linear(x, w.q_proj!);
  const [qNope, qPe] = ops.splitHeads(q, c.num_attention_heads, [c.qk_nope_head_dim, c.qk_rope_head_dim]) as [X, X];
  return { qNope, qPe: ops.rope(qPe, positions, freqsFor(run, c.qk_rope_head_dim)) };
}

/** [c ; k_pe] = W_kva·x, c ← RMSNorm(c) [1, T, r], k_pe rotated [1, T, dr]: one key shared by every head. */
function mlaKeyInputs<X extends Value>(run: Run<X>, x: X, w: MlaWeights, positions: Int32Array): { latent: X; kPe: X } {
  const { ops, config: c } = run;
  const [latent, kPe] = ops.splitHeads(ops.linear(x, w.kv_a_proj_with_mqa), 1, [c.kv_lora_rank, c.qk_rope_head_dim]) as [X, X];
  return { latent: ops.rmsnorm(latent, w.kv_a_layernorm, c.rms_norm_eps), kPe: ops.rope(kPe, positions, freqsFor(run, c.qk_rope_head_dim)) };
}

/** Naive MLA's cache rows from `start`: k_h = [W_uk,h·c ; k_pe], v_h = W_uv,h·c, per head. */
function writeNaiveKeys<X extends Value>(run: Run<X>, w: MlaWeights, latent: X, kPe: X, place: Place<X>, start: number): void {
  const { ops, config: c } = run;
  const [kNope, v] = ops.splitHeads(ops.linear(ops.mergeHeads(latent), w.kv_b_proj), c.num_attention_heads, [c.qk_nope_head_dim, c.v_head_dim]) as [X, X];
  ops.writeRows(place.keys!, ops.concatLast([kNope, kPe]), start);
  ops.writeRows(place.values!, v, start);
}

/** Multi-head (grouped-query) attention with rotary positions, plain or with decay, relative or as written (src/model/mha.ts). */
function* multiHead<X extends Value>(run: Run<X>, l: number, x: X, w: Record<string, Tensor>, place: Place<X>, positions: Int32Array, decay: boolean): Reading<X> {
  const { ops, config: c } = run;
  const H = c.num_attention_heads, Hkv = c.num_key_value_heads, Dh = headDim(c);
  const T = positions.length;
  const start = positions[0]!;
  const freqs = freqsFor(run, Dh);
  const q = ops.splitHeads(ops.linear(x, w.q_proj!), H, [Dh])[0]!;
  const k = ops.splitHeads(ops.linear(x, w.k_proj!), Hkv, [Dh])[0]!;
  const v = ops.splitHeads(ops.linear(x, w.v_proj!), Hkv, [Dh])[0]!;
  // As written, the cache holds each key already scaled by γ^j: the attention below then scores q_i·(γ^j·k_j)/√Dh,
  // with the module's 1/√Dh (no YaRN factor) and no relative term.
  const asWritten = decay && c.decay_mode === "as-written";
  const keys = ops.rope(k, positions, freqs);
  ops.writeRows(place.keys!, asWritten ? yield* decayedKeys(ops, c, keys, start) : keys, start);
  ops.writeRows(place.values!, v, start);
  const query = ops.rope(q, positions, freqs);
  const scale = asWritten ? 1 / Math.sqrt(Dh) : oncePerConfig(run, "mha scale", () => yarnSoftmaxFactor(yarnOptions(c)) / Math.sqrt(Dh));
  const logGammas = decay && !asWritten ? oncePerConfig(run, "ln gammas", () => decayGammas(c).map(Math.log)) : undefined;
  const args = { H, Hkv, Tq: T, Tk: start + T, Dh, Dv: Dh, scale, offset: start, kvRows: place.rows, logGammas };
  const heads = yield* attend(run, l, query, place.keys!, place.values!, args, positions);
  return ops.linear(ops.mergeHeads(yield* point(ops, run.listen, `layers.${l}.attn.heads`, heads, { layer: l, positions })), w.o_proj!);
}

type AttentionArgs = { H: number; Hkv: number; Tq: number; Tk: number; Dh: number; Dv: number; scale: number; offset: number; kvRows: number; logGammas?: readonly number[] };

/**
 * The backend's attention, with the hook points layers.L.attn.scores [H, Tq, Tk] (before the softmax, -∞ for hidden
 * keys; read-only) and layers.L.attn.probs [H, Tq, Tk] when someone listens: the reference's scores and
 * probabilities over this backend's q and k. A hook's replacement probabilities are applied to the values on the
 * host, in place of the backend's attention.
 */
function attend<X extends Value>(run: Run<X>, l: number, q: X, k: X, v: X, a: AttentionArgs, positions: Int32Array): Reading<X> {
  const { ops, listen } = run;
  if (!listen.hooks.length && !listen.trace) return settled(ops.attention(q, k, v, a)); // no names to build
  const [scoresName, probsName] = [`layers.${l}.attn.scores`, `layers.${l}.attn.probs`];
  if (!listened(listen, scoresName) && !listened(listen, probsName)) return settled(ops.attention(q, k, v, a));
  return probedAttention(run, l, q, k, v, a, positions, scoresName, probsName);
}

function* probedAttention<X extends Value>(run: Run<X>, l: number, q: X, k: X, v: X, a: AttentionArgs, positions: Int32Array, scoresName: string, probsName: string): Reading<X> {
  const { ops, listen } = run;
  const where = { layer: l, positions };
  const [qs, ks, vs] = [yield* read(ops, q), yield* read(ops, k), yield* read(ops, v)];
  const cached = (data: Float32Array, d: number) => filled({ shape: [a.Hkv, a.kvRows, d], data }, a.Hkv, a.kvRows, a.Tk);
  const values = cached(vs, a.Dv);
  const ref = sdpa({ shape: [1, a.H, a.Tq, a.Dh], data: qs }, cached(ks, a.Dh), values, {
    mask: causal(a.Tq, a.Tk, a.offset), logGammas: a.logGammas, offset: a.offset, scale: a.scale, withScores: listened(listen, scoresName),
  });
  if (ref.scores) readOnly(listen, scoresName, reshape(ref.scores, [a.H, a.Tq, a.Tk]), where);
  const p = reshape(ref.probs, [a.H, a.Tq, a.Tk]);
  const flowing = listened(listen, probsName) ? hookHost(listen, probsName, p, where) : p;
  if (flowing === p || flowing.data.every((x, i) => Object.is(x, p.data[i]))) return ops.attention(q, k, v, a);
  return ops.upload(reshape(attendWith(reshape(flowing, [1, a.H, a.Tq, a.Tk]), values), [a.H, a.Tq, a.Dv]));
}

