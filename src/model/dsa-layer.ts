// DSA (DeepSeek-V3.2) in the one forward: MLA on the device (src/model/layers.ts) whose attention reads only the keys
// a light indexer picked. The indexer runs on the device too, as src/attention/dsa.ts computes it: its keys grow
// beside MLA's cache, and one value comes back to the host per layer, the scores [T, L], whose top-k (host work)
// is the selection. The selected cache rows are then gathered on the device and attended there. The same
// selection, ties and all, as src/attention/dsa.ts's `dsa` makes.

import { checkDsaConfig, topKeys } from "../attention/dsa.ts";
import { read, type Reading } from "../device/drive.ts";
import type { AttentionArgs, Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import type { Tensor } from "../tensor.ts";
import { record } from "../trace.ts";
import type { LayerCache } from "./cache.ts";
import type { Run } from "./layers.ts";

/** Each new token's selected key positions [G, T, width], ascending, -1 where a token has fewer causal keys: G = 1,
 *  one list every kv head reads (DSA), or G = Hkv, kv head g's own (NSA's groups: a token selects as many in each). */
export type Selection = { shape: number[]; data: Int32Array };

/**
 * Layer l's indexer over the new tokens x [T, D] at `positions` (src/attention/dsa.ts):
 *   q^I = rotated(W^I_q · qr) [H_I, T, d_I],  k^I = rotated(LayerNorm(W^I_k · x)) [1, T, d_I] written into the
 *   layer's indexer keys,  I = indexScores(q^I, keys, W^I_w · x) [T, L],  selection = top index_topk of each row.
 * qr is MLA's normalised query latent (x itself when q_lora_rank = 0); `freqs` are MLA's rotary frequencies, which the
 * indexer shares. Records `layers.l.attn.selected` [T, width] and `layers.l.attn.index_scores` [T, L] when traced.
 */
export function* indexerSelection<X extends Value>(
  run: Run<X>, l: number, x: X, qr: X, w: Record<string, Tensor>, layer: LayerCache<X>, positions: Int32Array, freqs: Float64Array,
): Reading<Selection> {
  const { ops } = run;
  const c = checkDsaConfig(run.config); // checked once: a model's config is frozen, and checkDsaConfig keeps its answer
  const { index_n_heads: HI, index_head_dim: dI, qk_rope_head_dim: dr } = c;
  const T = positions.length, start = positions[0]!;
  // Each head's first dr features are rotated in halves, (i, i + dr/2): V3.2's layout since its 2025-11-17 fix.
  const rotated = (v: X, heads: number): X => {
    if (dI === dr) return ops.rope((ops.splitHeads(v, heads, [dr]) as [X])[0], positions, freqs, false);
    const [pe, rest] = ops.splitHeads(v, heads, [dr, dI - dr]) as [X, X];
    return ops.concatLast([ops.rope(pe, positions, freqs, false), rest]);
  };
  const q = rotated(ops.linear(qr, w["indexer.wq_b"]!), HI);
  const k = rotated(ops.layernorm(ops.linear(x, w["indexer.wk"]!), w["indexer.k_norm"]!, w["indexer.k_norm_bias"]!, 1e-6), 1);
  ops.writeRows(layer.indexKeys!, k, start);
  const L = start + T;
  const args = { H: HI, Tq: T, Tk: L, D: dI, offset: start, scale: 1 / Math.sqrt(HI * dI), kvRows: layer.rows };
  const scores = { shape: [1, T, L], data: yield* read(ops, ops.indexScores(q, layer.indexKeys!, ops.linear(x, w["indexer.weights_proj"]!), args)) };
  const selected = topKeys(scores, c.index_topk);
  const trace = run.listen.trace;
  if (trace) {
    record(trace, `layers.${l}.attn.selected`, { shape: [T, selected.shape[2]!], data: selected.data });
    record(trace, `layers.${l}.attn.index_scores`, { shape: [T, L], data: scores.data });
  }
  return selected;
}

/**
 * Attention of queries q [H, Tq, Dh] over only their selected rows of keys [Hkv, kvRows, Dh] and values
 * [Hkv, kvRows, Dv] (a layer's cache): per token, the rows it selected are gathered from every kv head's plane into
 * a dense block [Hkv, n, ·], every one visible to it, and the backend's attention runs over that. Nothing but the
 * selected rows is copied. → [H, Tq, Dv].
 */
export function attendSelected<X extends Value>(ops: Ops<X>, q: X, keys: X, values: X, a: AttentionArgs, selected: Selection): X {
  const { H, Hkv, Tq, Dh, Dv, scale } = a;
  const [G, , width] = selected.shape as [number, number, number];
  const rows = new Int32Array(G * width);
  return eachToken(ops, q, H, Dh, Dv, (qt, t) => {
    // Kv head g's rows at g·width when each group selects its own (G = Hkv), one list every head reads when G = 1.
    for (let g = 0; g < G; g++) rows.set(selected.data.subarray((g * Tq + t) * width, (g * Tq + t + 1) * width), g * width);
    let n = 0;
    for (let i = 0; i < width; i++) if (rows[i]! >= 0) n++;
    // A missing key repeats the first: every gather takes `width` rows, a size that does not change from step to step
    // (the backend's pool keeps it), and the attention reads only the first n.
    for (let g = 0; g < G; g++) rows.fill(rows[g * width]!, g * width + n, (g + 1) * width);
    const k = ops.gatherRows(keys, rows, G > 1);
    const v = ops.gatherRows(values, rows, G > 1);
    return ops.attention(qt, k, v, { H, Hkv, Tq: 1, Tk: n, Dh, Dv, scale, offset: n - 1, kvRows: width });
  });
}

/** q [H, Tq, Dh] one token at a time: attend(q_t [H, 1, Dh], t) → [H, 1, Dv], joined into [H, Tq, Dv]. */
export function eachToken<X extends Value>(ops: Ops<X>, q: X, H: number, Dh: number, Dv: number, attend: (qt: X, t: number) => X): X {
  const Tq = q.shape[1]!;
  if (Tq === 1) return attend(q, 0);
  const queryRows = ops.mergeHeads(q);
  const outs: X[] = [];
  for (let t = 0; t < Tq; t++) outs.push(ops.mergeHeads(attend((ops.splitHeads(ops.sliceRows(queryRows, t, 1), H, [Dh]) as [X])[0], t)));
  return (ops.splitHeads(ops.concatRows(outs), H, [Dv]) as [X])[0];
}
