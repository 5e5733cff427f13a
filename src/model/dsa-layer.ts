// DSA (DeepSeek-V3.2) in the one forward: MLA on the device (src/model/layers.ts) whose attention reads only the keys
// a light indexer picked. The indexer runs on the host through src/attention/dsa.ts (its scores, one number per
// cached key, decide the selection, and a top-k is host work); the selected cache rows are gathered on the device
// and attended there. The same selection, ties and all, as src/attention/dsa.ts's `dsa` makes.

import { indexerScores, topKeys } from "../attention/dsa.ts";
import { read, type Reading } from "../device/drive.ts";
import type { AttentionArgs, Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import type { Kernels } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";
import { record, type Trace } from "../trace.ts";
import { dsaWeights } from "./attention.ts";
import type { DeviceLayerCache } from "./cache.ts";
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
  ops: Ops<X>, config: ModelConfig, x: X, weights: Record<string, Tensor>, layer: DeviceLayerCache<X>, start: number,
  kernels: Kernels, trace: Trace | undefined, prefix: string,
): Reading<Selection> {
  const [T, D] = x.shape as [number, number];
  const dI = config.index_head_dim;
  const held = layer.indexKeys ?? { shape: [1, 0, dI], data: new Float32Array(0) };
  // A forward that failed after this layer's indexer left its keys past `start`, where the device cache has none.
  const indexKeys = held.shape[1] === start ? held : { shape: [1, start, dI], data: held.data.subarray(0, start * dI) };
  const state = { mla: { length: start }, indexKeys };
  const scores = indexerScores({ shape: [1, T, D], data: yield* read(ops, x) }, dsaWeights(weights), config, state, kernels);
  layer.indexKeys = state.indexKeys;
  const selected = topKeys(scores, config.index_topk);
  record(trace, `${prefix}.selected`, { shape: [T, selected.shape[2]!], data: selected.data });
  record(trace, `${prefix}.index_scores`, { shape: [T, scores.shape[2]!], data: scores.data });
  return selected;
}

/**
 * Attention of queries q [H, Tq, Dh] over only their selected cache rows: per token, the rows of keys and values
 * [Hkv, kvRows, ·] it selected are gathered into a dense block [Hkv, n, ·], every one visible to it, and the
 * backend's attention runs over that. → [H, Tq, Dv].
 */
export function attendSelected<X extends Value>(ops: Ops<X>, q: X, keys: X, values: X, a: AttentionArgs, selected: Selection): X {
  // One row per position, every kv head side by side, so that one gather takes a position from all of them.
  return attendRows(ops, q, ops.mergeHeads(keys), ops.mergeHeads(values), a, selected);
}

/** attendSelected over keys [N, Hkv·Dh] and values [N, Hkv·Dv] given as rows, one per position. */
export function attendRows<X extends Value>(ops: Ops<X>, q: X, keyRows: X, valueRows: X, a: AttentionArgs, selected: Selection): X {
  const { H, Hkv, Tq, Dh, Dv, scale } = a;
  const [G, , width] = selected.shape as [number, number, number];
  const queryRows = Tq === 1 ? q : ops.mergeHeads(q);
  const outs: X[] = [];
  for (let t = 0; t < Tq; t++) {
    const chosen = Array.from({ length: G }, (_, g) => selected.data.slice((g * Tq + t) * width, (g * Tq + t + 1) * width));
    const n = chosen[0]!.filter((s) => s >= 0).length;
    // A missing key repeats the first: every gather takes `width` rows, a size that does not change from step to step
    // (the backend's pool keeps it), and the attention reads only the first n.
    for (const rows of chosen) rows.fill(rows[0]!, n);
    const k = gatherHeads(ops, keyRows, chosen, Hkv, Dh);
    const v = gatherHeads(ops, valueRows, chosen, Hkv, Dv);
    const [qt] = Tq === 1 ? [q] : ops.splitHeads(ops.sliceRows(queryRows, t, 1), H, [Dh]) as [X];
    const o = ops.attention(qt, k, v, { H, Hkv, Tq: 1, Tk: n, Dh, Dv, scale, offset: n - 1, kvRows: width });
    outs.push(Tq === 1 ? o : ops.mergeHeads(o));
  }
  return Tq === 1 ? outs[0]! : (ops.splitHeads(ops.concatRows(outs), H, [Dv]) as [X])[0];
}

/** Rows [N, Hkv·d] gathered into [Hkv, n, d], kv head g from its own rows chosen[g] (as many for every g; one gather
 *  when all read the same). */
function gatherHeads<X extends Value>(ops: Ops<X>, rows: X, chosen: readonly Int32Array[], Hkv: number, d: number): X {
  const first = chosen[0]!;
  if (chosen.every((c) => c.every((s, i) => s === first[i]))) return (ops.splitHeads(ops.gatherRows(rows, first), Hkv, [d]) as [X])[0];
  const columns = new Array<number>(Hkv).fill(d);
  const own = chosen.map((c, g) => ops.splitHeads(ops.gatherRows(rows, c), 1, columns)[g]!); // [1, n, d]: kv head g's columns
  return (ops.splitHeads(ops.mergeHeads(ops.concatLast(own)), Hkv, [d]) as [X])[0];
}
