// The layers of the resident forward (src/model/resident.ts), on a backend's resident operations: MLA in absorb
// form and multi-head attention (plain or with relative decay) writing their new keys and values into the cache
// in place, and the feed-forward (dense SwiGLU, or the MoE with routing run on the host by the reference's code).

import { checkMlaConfig, mlaSoftmaxScale, mlaYarn, type MlaWeights } from "../attention/mla.ts";
import { type Routing } from "../moe/experts.ts";
import { routeTokens, type MoeWeights } from "../moe/layer.ts";
import { type MoeStats } from "../moe/stats.ts";
import { ropeFrequencies, yarnSoftmaxFactor } from "../rope.ts";
import { type Tensor } from "../tensor.ts";
import { type Trace } from "../trace.ts";
import { checkedMlaConfig } from "./attention.ts";
import { checkedMoeConfig } from "./block.ts";
import { headDim, layerKind } from "./config.ts";
import { decayGammas } from "./mha.ts";
import { type ResidentOps, type ResidentTensor } from "./resident-ops.ts";
import { type DenseMlpWeights, type Model } from "./weights.ts";

/** What one forward call's layers share: the operations, the positions, the temporaries list, the rope tables. */
export interface LayerRun<X extends ResidentTensor> {
  ops: ResidentOps<X>;
  model: Model;
  /** New tokens, their first position, and the cache's capacity. */
  T: number;
  start: number;
  capacity: number;
  trace?: Trace;
  /** Marks a temporary: released when the layer ends. */
  keep: (t: X) => X;
  /** A weight's resident handle. */
  W: (t: Tensor) => X;
  /** Rotary tables for these positions, one per rotated width (MLA's qk_rope_head_dim, the plain kinds' Dh). */
  tables: Map<number, X>;
  /** Records a tensor when the trace wants it (reading it back). */
  show: (name: string, t: X) => Promise<void>;
}

/** The layer's attention over new tokens x [T, D], its keys and values appended to `place`. */
export function attentionLayer<X extends ResidentTensor>(run: LayerRun<X>, l: number, x: X, place: { keys: X; values: X }): X {
  const { model } = run;
  const kind = layerKind(model.config, l);
  const w = model.weights.layers[l]!.self_attn;
  return kind === "mla" ? mlaAbsorb(run, x, w as unknown as MlaWeights, place) : multiHead(run, x, w, place, kind === "decay");
}

function ropeTableFor<X extends ResidentTensor>(run: LayerRun<X>, dim: number): X {
  let table = run.tables.get(dim);
  if (!table) {
    const c = run.model.config;
    const freqs = ropeFrequencies({ dim, theta: c.rope_theta, yarn: mlaYarn(c) });
    const positions = Array.from({ length: run.T }, (_, t) => run.start + t);
    run.tables.set(dim, (table = run.ops.ropeTable(positions, freqs)));
  }
  return table;
}

/** MLA in absorb form for new tokens x [T, D] (src/attention/mla.ts mla → absorb). */
function mlaAbsorb<X extends ResidentTensor>(run: LayerRun<X>, x: X, w: MlaWeights, place: { keys: X; values: X }): X {
  const { ops, keep, W, T, start } = run;
  const c = checkedMlaConfig(run.model.config) as ReturnType<typeof checkMlaConfig>;
  const [H, dn, dr, dv, r] = [c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank];
  const dq = dn + dr;
  const table = ropeTableFor(run, dr);
  const q = keep(c.q_lora_rank === 0
    ? ops.linear(x, W(w.q_proj!))
    : ops.linear(keep(ops.rmsnorm(keep(ops.linear(x, W(w.q_a_proj!))), W(w.q_a_layernorm!), c.rms_norm_eps)), W(w.q_b_proj!)));
  // splitHeads: q [T, H·dq] → q_nope [H, T, dn] and q_pe [H, T, dr].
  const qNope = keep(ops.empty([1, H, T, dn]));
  ops.copyBlocks(q, qNope, { batches: H, rows: T, width: dn, srcBatch: dq, srcRow: H * dq, dstBatch: T * dn, dstRow: dn });
  const qPeRaw = keep(ops.empty([1, H, T, dr]));
  ops.copyBlocks(q, qPeRaw, { batches: H, rows: T, width: dr, srcOff: dn, srcBatch: dq, srcRow: H * dq, dstBatch: T * dr, dstRow: dr });
  const kv = keep(ops.linear(x, W(w.kv_a_proj_with_mqa))); // [T, r + dr]
  const latentRaw = keep(ops.empty([1, T, r]));
  ops.copyBlocks(kv, latentRaw, { rows: T, width: r, srcRow: r + dr, dstRow: r });
  const kPeRaw = keep(ops.empty([1, T, dr]));
  ops.copyBlocks(kv, kPeRaw, { rows: T, width: dr, srcOff: r, srcRow: r + dr, dstRow: dr });
  const qPe = keep(ops.rope(qPeRaw, table, T));
  const kPe = keep(ops.rope(kPeRaw, table, T));
  const latent = keep(ops.rmsnorm(latentRaw, W(w.kv_a_layernorm), c.rms_norm_eps));
  // q_nope·W_uk,h: W_uk,h is rows [h·(dn+dv), h·(dn+dv) + dn) of kv_b_proj, [dn, r], read in place.
  const kvB = W(w.kv_b_proj);
  const headStride = (dn + dv) * r;
  const qLatent = keep(ops.empty([1, H, T, r]));
  ops.gemm(qNope, kvB, qLatent, { M: T, N: r, K: dn, transB: false, batches: H, strideA: T * dn, strideB: headStride, strideC: T * r });
  // Queries [q_latent ; q_pe] against keys [latent ; k_pe] (one kv head), values the latent.
  const query = keep(ops.empty([1, H, T, r + dr]));
  ops.copyBlocks(qLatent, query, { rows: H * T, width: r, srcRow: r, dstRow: r + dr });
  ops.copyBlocks(qPe, query, { rows: H * T, width: dr, srcRow: dr, dstOff: r, dstRow: r + dr });
  // The new positions' keys and values are appended to the cache in place.
  ops.copyBlocks(latent, place.keys, { rows: T, width: r, srcRow: r, dstOff: start * (r + dr), dstRow: r + dr });
  ops.copyBlocks(kPe, place.keys, { rows: T, width: dr, srcRow: dr, dstOff: start * (r + dr) + r, dstRow: r + dr });
  ops.copyBlocks(latent, place.values, { rows: T, width: r, srcRow: r, dstOff: start * r, dstRow: r });
  const outLatent = keep(ops.attention(query, ops.view(place.keys, [1, 1, run.capacity, r + dr]), ops.view(place.values, [1, 1, run.capacity, r]), {
    H, Hkv: 1, Tq: T, Tk: start + T, Dh: r + dr, Dv: r, scale: mlaSoftmaxScale(c), offset: start, kvRows: run.capacity,
  }));
  // ·W_uvᵀ per head: W_uv,h is rows [h·(dn+dv) + dn, (h+1)·(dn+dv)) of kv_b_proj, [dv, r], read transposed in place.
  const heads = keep(ops.empty([1, H, T, dv]));
  ops.gemm(outLatent, kvB, heads, { M: T, N: dv, K: r, transB: true, batches: H, strideA: T * r, offB: dn * r, strideB: headStride, strideC: T * dv });
  return ops.linear(mergeHeads(run, heads, H, dv), W(w.o_proj));
}

/** Multi-head (grouped-query) attention with rotary positions, plain or with relative decay (src/model/mha.ts). */
function multiHead<X extends ResidentTensor>(run: LayerRun<X>, x: X, w: Record<string, Tensor>, place: { keys: X; values: X }, decay: boolean): X {
  const { ops, keep, W, T, start, capacity: cap } = run;
  const c = run.model.config;
  const [H, Hkv, Dh] = [c.num_attention_heads, c.num_key_value_heads, headDim(c)];
  const table = ropeTableFor(run, Dh);
  // splitHeads: [T, heads·Dh] → [heads, T, Dh]; keys (after rotation) and values go straight into the cache.
  const split = (t: X, heads: number) => {
    const out = keep(ops.empty([1, heads, T, Dh]));
    ops.copyBlocks(t, out, { batches: heads, rows: T, width: Dh, srcBatch: Dh, srcRow: heads * Dh, dstBatch: T * Dh, dstRow: Dh });
    return out;
  };
  const q = keep(ops.rope(split(keep(ops.linear(x, W(w.q_proj!))), H), table, T));
  const k = keep(ops.rope(split(keep(ops.linear(x, W(w.k_proj!))), Hkv), table, T));
  const v = split(keep(ops.linear(x, W(w.v_proj!))), Hkv);
  const toCache = { batches: Hkv, rows: T, width: Dh, srcBatch: T * Dh, srcRow: Dh, dstOff: start * Dh, dstBatch: cap * Dh, dstRow: Dh };
  ops.copyBlocks(k, place.keys, toCache);
  ops.copyBlocks(v, place.values, toCache);
  const heads = keep(ops.attention(q, ops.view(place.keys, [1, Hkv, cap, Dh]), ops.view(place.values, [1, Hkv, cap, Dh]), {
    H, Hkv, Tq: T, Tk: start + T, Dh, Dv: Dh, offset: start, kvRows: cap,
    scale: yarnSoftmaxFactor(mlaYarn(c)) / Math.sqrt(Dh),
    logGammas: decay ? Float32Array.from(decayGammas(c), Math.log) : undefined,
  }));
  return ops.linear(mergeHeads(run, heads, H, Dh), W(w.o_proj!));
}

/** mergeHeads: [1, H, T, dv] → [T, H·dv]. */
function mergeHeads<X extends ResidentTensor>(run: LayerRun<X>, heads: X, H: number, dv: number): X {
  const { ops, T } = run;
  const merged = run.keep(ops.empty([T, H * dv]));
  ops.copyBlocks(heads, merged, { batches: H, rows: T, width: dv, srcBatch: T * dv, srcRow: dv, dstBatch: dv, dstRow: H * dv });
  return merged;
}

export interface FeedForward<X> {
  out: X;
  routing: Routing | null;
  stats: MoeStats | null;
  /** The router's logits and scores (MoE layers), for the trace. */
  logits?: Tensor;
  scores?: Tensor;
}

/** The dense SwiGLU MLP or the MoE layer on x [N, D]; `out` is a temporary of the layer. */
export async function feedForward<X extends ResidentTensor>(run: LayerRun<X>, x: X, w: DenseMlpWeights | MoeWeights, moe: boolean): Promise<FeedForward<X>> {
  if (!moe) return { out: run.keep(swigluMlp(run, x, w as DenseMlpWeights)), routing: null, stats: null };
  return moeLayer(run, x, w as MoeWeights);
}

/** down(silu(gate·x) ⊙ up·x), as src/model/block.ts denseMlp. */
function swigluMlp<X extends ResidentTensor>(run: LayerRun<X>, x: X, w: DenseMlpWeights): X {
  const { ops, keep, W } = run;
  const gate = keep(ops.linear(x, W(w.gate_proj)));
  const up = keep(ops.linear(x, W(w.up_proj)));
  return ops.linear(keep(ops.swiglu(gate, up)), W(w.down_proj));
}

/** The MoE layer (src/moe/layer.ts moeLayer): router logits read back, routed by the reference, experts resident. */
async function moeLayer<X extends ResidentTensor>(run: LayerRun<X>, x: X, w: MoeWeights): Promise<FeedForward<X>> {
  const { ops, keep, W } = run;
  const config = checkedMoeConfig(run.model.config);
  const [T, D] = x.shape as [number, number];
  const E = config.n_routed_experts;
  const logits = { shape: [T, E], data: await ops.read(keep(ops.linear(x, W(w.gate.weight)))) };
  const { routing, scores, stats } = routeTokens(logits, config, w.gate.e_score_correction_bias);
  const experts = { gate: W(w.experts.gate), up: W(w.experts.up), down: W(w.experts.down), E, F: config.moe_intermediate_size, D };
  const routed = keep(ops.moe(x, routing, experts));
  const out = w.shared_experts ? keep(ops.add(routed, keep(swigluMlp(run, x, w.shared_experts)))) : routed;
  return { out, routing, stats, logits, scores };
}
