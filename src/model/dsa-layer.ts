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

/** Each new token's selected key positions [1, T, width], ascending, -1 where a token has fewer causal keys. */
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
  const { H, Hkv, Tq, Dh, Dv, scale } = a;
  const width = selected.shape[2]!;
  // One row per position, every kv head side by side, so that one gather takes a position from all of them.
  const [keyRows, valueRows] = [ops.mergeHeads(keys), ops.mergeHeads(values)];
  const queryRows = Tq === 1 ? q : ops.mergeHeads(q);
  const outs: X[] = [];
  for (let t = 0; t < Tq; t++) {
    const chosen = selected.data.subarray(t * width, (t + 1) * width).filter((s) => s >= 0);
    const n = chosen.length;
    const [k] = ops.splitHeads(ops.gatherRows(keyRows, chosen), Hkv, [Dh]) as [X];
    const [v] = ops.splitHeads(ops.gatherRows(valueRows, chosen), Hkv, [Dv]) as [X];
    const [qt] = Tq === 1 ? [q] : ops.splitHeads(ops.sliceRows(queryRows, t, 1), H, [Dh]) as [X];
    const o = ops.attention(qt, k, v, { H, Hkv, Tq: 1, Tk: n, Dh, Dv, scale, offset: n - 1, kvRows: n });
    outs.push(Tq === 1 ? o : ops.mergeHeads(o));
  }
  return Tq === 1 ? outs[0]! : (ops.splitHeads(ops.concatRows(outs), H, [Dv]) as [X])[0];
}
