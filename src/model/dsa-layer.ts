// DSA (DeepSeek-V3.2) in the one forward: MLA on the device (src/model/layers.ts) whose attention reads only the keys
// a light indexer picked. The indexer runs on the host through src/attention/dsa.ts (its scores, one number per
// cached key, decide the selection, and a top-k is host work); the selected cache rows are gathered on the device
// and attended there. The same selection, ties and all, as src/attention/dsa.ts's `dsa` makes.

import { checkDsaConfig, checkedIndexerScores, topKeys, type IndexerInputs } from "../attention/dsa.ts";
import { read, type Reading } from "../device/drive.ts";
import type { AttentionArgs, Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import type { Kernels } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";
import { record, type Trace } from "../trace.ts";
import type { LayerCache } from "./cache.ts";
import type { ModelConfig } from "./config.ts";

/** Each new token's selected key positions [G, T, width], ascending, -1 where a token has fewer causal keys: G = 1,
 *  one list every kv head reads (DSA), or G = Hkv, kv head g's own (NSA's groups: a token selects as many in each). */
export type Selection = { shape: number[]; data: Int32Array };

/**
 * The indexer over the new tokens x [T, D] at positions start … start + T - 1: appends their indexer keys to the
 * layer's and returns each token's top index_topk keys. Records `<prefix>.selected` [T, width] and
 * `<prefix>.index_scores` [T, L] when traced.
 */
export function* indexerSelection<X extends Value>(
  ops: Ops<X>, config: ModelConfig, x: X, weights: Record<string, Tensor>, layer: LayerCache<X>, start: number,
  kernels: Kernels, trace: Trace | undefined, prefix: string,
): Reading<Selection> {
  const [T, D] = x.shape as [number, number];
  const c = checkDsaConfig(config); // checked once: a model's config is frozen, and checkDsaConfig keeps its answer
  const dI = c.index_head_dim;
  const held = layer.indexKeys ?? { shape: [1, 0, dI], data: new Float32Array(0) };
  // A forward that failed after this layer's indexer left its keys past `start`, where the device cache has none.
  // The view of the first `start` is not where its buffer was last filled up to, so the append below copies it
  // into a fresh buffer rather than write over keys that other tensors of the old buffer hold (appendTime).
  const indexKeys = held.shape[1] === start ? held : { shape: [1, start, dI], data: held.data.subarray(0, start * dI) };
  const state = { mla: { length: start }, indexKeys };
  // The model's weights were checked against its config when it was made: the indexer's are read by name, in place.
  const inputs: IndexerInputs = {
    q_a_proj: weights.q_a_proj, q_a_layernorm: weights.q_a_layernorm,
    indexer: {
      wq_b: weights["indexer.wq_b"]!, wk: weights["indexer.wk"]!, k_norm: weights["indexer.k_norm"]!,
      k_norm_bias: weights["indexer.k_norm_bias"]!, weights_proj: weights["indexer.weights_proj"]!,
    },
  };
  const scores = checkedIndexerScores({ shape: [1, T, D], data: yield* read(ops, x) }, inputs, c, state, kernels);
  layer.indexKeys = state.indexKeys;
  const selected = topKeys(scores, c.index_topk);
  if (trace) {
    record(trace, `${prefix}.selected`, { shape: [T, selected.shape[2]!], data: selected.data });
    record(trace, `${prefix}.index_scores`, { shape: [T, scores.shape[2]!], data: scores.data });
  }
  return selected;
}

/**
 * Attention of queries q [H, Tq, Dh] over only their selected rows of keys [Hkv, kvRows, Dh] and values
 * [Hkv, kvRows, Dv] (a layer's cache, or the window's own keys): per token, the rows it selected are gathered from
 * every kv head's plane into a dense block [Hkv, n, ·], every one visible to it, and the backend's attention runs over
 * that. Nothing but the selected rows is copied. `beforeToken(t)` runs before token t gathers (the window writes its
 * own key into its ring there). → [H, Tq, Dv].
 */
export function attendSelected<X extends Value>(
  ops: Ops<X>, q: X, keys: X, values: X, a: AttentionArgs, selected: Selection, beforeToken?: (t: number) => void,
): X {
  const { H, Hkv, Tq, Dh, Dv, scale } = a;
  const [G, , width] = selected.shape as [number, number, number];
  const queryRows = Tq === 1 ? q : ops.mergeHeads(q);
  const outs: X[] = [];
  for (let t = 0; t < Tq; t++) {
    // Kv head g's rows at g·width when each group selects its own (G = Hkv), one list every head reads when G = 1.
    const rows = new Int32Array(G * width);
    for (let g = 0; g < G; g++) rows.set(selected.data.subarray((g * Tq + t) * width, (g * Tq + t + 1) * width), g * width);
    let n = 0;
    for (let i = 0; i < width; i++) if (rows[i]! >= 0) n++;
    // A missing key repeats the first: every gather takes `width` rows, a size that does not change from step to step
    // (the backend's pool keeps it), and the attention reads only the first n.
    for (let g = 0; g < G; g++) rows.fill(rows[g * width]!, g * width + n, (g + 1) * width);
    beforeToken?.(t);
    const k = ops.gatherRows(keys, rows, G > 1);
    const v = ops.gatherRows(values, rows, G > 1);
    const [qt] = Tq === 1 ? [q] : ops.splitHeads(ops.sliceRows(queryRows, t, 1), H, [Dh]) as [X];
    const o = ops.attention(qt, k, v, { H, Hkv, Tq: 1, Tk: n, Dh, Dv, scale, offset: n - 1, kvRows: width });
    outs.push(Tq === 1 ? o : ops.mergeHeads(o));
  }
  return Tq === 1 ? outs[0]! : (ops.splitHeads(ops.concatRows(outs), H, [Dv]) as [X])[0];
}
