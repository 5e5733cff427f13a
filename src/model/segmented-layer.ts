// Segmented attention (spec/segmented-attention.md, src/attention/segmented.ts) in the one forward, on the device.
// The state is bounded, so it is allocated once at its largest and rewritten in place:
//   keys, values [Hkv, M + S + W, Dh]   rows 0 … M-1: the memory's keys W_k·mem_s and values W_v·mem_s (no rotary
//                                       phase); rows M …: the window, positions max(0, floor(p/S)·S - W) … p
//   pool [1, M + S, D]                  (M > 0) rows 0 … M-1: mem_s; rows M …: the current segment's inputs x'
// Every query of a piece (the part of a chunk inside one segment) sees the same memory and window start, so a piece
// is one causal attention over keys [memory; window; piece] at offset M + cached: query i sees key j iff
// j <= M + cached + i, as the module's mask. At a segment's first token the memory is pooled from the pool buffer and
// the window's last W keys move to its front. How many rows are filled follows from the position alone.

import { absolutePositions, resolveSegmentedConfig, type ResolvedSegmentedConfig } from "../attention/segmented.ts";
import type { Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { ropeFrequencies } from "../rope.ts";
import type { Tensor } from "../tensor.ts";
import { segmentedConfig } from "./attention.ts";
import type { LayerCache, ModelCache } from "./cache.ts";
import type { Run } from "./layers.ts";
import { once, oncePerConfig } from "./once.ts";
import { point } from "./points.ts";

/** The first position whose key the window holds while the query at position p is computed. */
const windowStart = (c: ResolvedSegmentedConfig, p: number) => Math.max(0, Math.floor(p / c.segment_size) * c.segment_size - c.segment_overlap);

/** The resolved config and rotary frequencies, made once per forward (the module's: plain rotary, no YaRN). */
function derived<X extends Value>(run: Run<X>): { c: ResolvedSegmentedConfig; freqs: Float64Array } {
  return oncePerConfig(run, "segmented", () => {
    const c = resolveSegmentedConfig(segmentedConfig(run.config));
    return { c, freqs: ropeFrequencies({ dim: c.headDim, theta: c.rope_theta }) };
  });
}

/**
 * Layer l's segmented attention over one sequence's new tokens x [T, D] at `positions` (cache.length on):
 *   x' = x + E_abs(p);  q = rope(W_q x'), k = rope(W_k x'), v = W_v x';  per piece: attention over [memory; window]
 *   out = W_o · concat_h heads
 */
export function* segmentedLayer<X extends Value>(run: Run<X>, l: number, x: X, w: Record<string, Tensor>, cache: ModelCache<X>, positions: Int32Array): Reading<X> {
  const { ops } = run;
  const { c, freqs } = derived(run);
  const { num_attention_heads: H, num_key_value_heads: Hkv, headDim: Dh, memory_slots: M, segment_size: S, hidden_size: D } = c;
  const layer = allocate(cache, c, l, run.config.max_position_embeddings);
  const T = positions.length;
  const start = positions[0]!;
  // E_abs of this forward's positions, the same for every layer: computed once per forward (a sine or cosine per feature).
  const absolute = once(run, `absolute positions ${positions.join(",")}`, () => absolutePositions(c, Array.from(positions)).data);
  const input = ops.add(x, ops.upload({ shape: [T, D], data: absolute }));
  const pieces: X[] = [];
  for (let a = start; a < start + T; ) {
    const b = Math.min(start + T, (Math.floor(a / S) + 1) * S);
    // mem_0 as a value, not a weight: a backend may keep its weights in a layout only linear reads (wasm's panels).
    if (a === 0 && M > 0) setMemory(ops, c, layer, w, ops.upload(w.memory!));
    else if (a % S === 0 && a > 0) startSegment(ops, c, layer, w, a);
    const [from, n] = [a - start, b - a];
    const rows = n === T ? input : ops.sliceRows(input, from, n);
    const at = positions.subarray(from, from + n);
    const [q] = ops.splitHeads(ops.linear(rows, w.q_proj!), H, [Dh]) as [X];
    const [k] = ops.splitHeads(ops.linear(rows, w.k_proj!), Hkv, [Dh]) as [X];
    const [v] = ops.splitHeads(ops.linear(rows, w.v_proj!), Hkv, [Dh]) as [X];
    const cached = a - windowStart(c, a);
    ops.writeRows(layer.keys!, ops.rope(k, at, freqs), M + cached);
    ops.writeRows(layer.values!, v, M + cached);
    if (M > 0) ops.writeRows(layer.segmentPool!, ops.splitHeads(rows, 1, [D])[0]!, M + a % S);
    const args = { H, Hkv, Tq: n, Tk: M + cached + n, Dh, Dv: Dh, scale: 1 / Math.sqrt(Dh), offset: M + cached, kvRows: layer.rows };
    pieces.push(ops.attention(ops.rope(q, at, freqs), layer.keys!, layer.values!, args));
    a = b;
  }
  const merged = pieces.length === 1 ? pieces[0]! : (ops.splitHeads(ops.concatRows(pieces.map((p) => ops.mergeHeads(p))), H, [Dh]) as [X])[0];
  const heads = yield* point(ops, run.listen, `layers.${l}.attn.heads`, merged, { layer: l, positions });
  return ops.linear(ops.mergeHeads(heads), w.o_proj!);
}

/** The layer's state at its largest (a window never holds more than max_position_embeddings tokens), allocated on
 *  first use through the cache's own operations, whose values outlive the forward. */
function allocate<X extends Value>(cache: ModelCache<X>, c: ResolvedSegmentedConfig, l: number, maxPositions: number): LayerCache<X> {
  const layer = cache.layers[l]!;
  if (!layer.keys) {
    const { num_key_value_heads: Hkv, headDim: Dh, memory_slots: M, segment_size: S, segment_overlap: W, hidden_size: D } = c;
    layer.rows = M + Math.min(S + W, maxPositions);
    layer.keys = cache.ops.empty([Hkv, layer.rows, Dh]);
    layer.values = cache.ops.empty([Hkv, layer.rows, Dh]);
    if (M > 0) layer.segmentPool = cache.ops.empty([1, M + S, D]);
  }
  return layer;
}

/**
 * The first token of a new segment arrives at position a: mem_s = softmax(P·Zᵀ/√D)·Z over Z = [mem_(s-1); x'_(s-1)]
 * (the whole pool buffer), then the window keeps only its last min(W, a) keys, moved to just after the memory.
 */
function startSegment<X extends Value>(ops: Ops<X>, c: ResolvedSegmentedConfig, layer: LayerCache<X>, w: Record<string, Tensor>, a: number): void {
  const { memory_slots: M, segment_size: S, hidden_size: D, num_key_value_heads: Hkv, headDim: Dh } = c;
  if (M > 0) {
    // Each pooling query as a head of its own over the one shared key plane: a single-query causal attention whose
    // offset puts every one of the M + S rows before it, so nothing is hidden.
    const queries = ops.upload({ shape: [M, 1, D], data: w.memory_queries!.data });
    const Z = M + S;
    const pooled = ops.attention(queries, layer.segmentPool!, layer.segmentPool!, { H: M, Hkv: 1, Tq: 1, Tk: Z, Dh: D, Dv: D, scale: 1 / Math.sqrt(D), offset: Z - 1, kvRows: Z });
    setMemory(ops, c, layer, w, planesToRows(ops, pooled));
  }
  const [held, keep] = [a - windowStart(c, a - 1), a - windowStart(c, a)];
  if (keep === 0 || held === keep) return; // no overlap, or the window has not reached W yet: it stays where it is
  // No rank-3 slice: rows of every kv head side by side, cut, split back, written to the front of the window.
  for (const plane of [layer.keys!, layer.values!]) {
    const [kept] = ops.splitHeads(ops.sliceRows(ops.mergeHeads(plane), M + held - keep, keep), Hkv, [Dh]) as [X];
    ops.writeRows(plane, kept, M);
  }
}

/** mem [M, D] into the pool's first rows, and its keys and values (through k_proj and v_proj, no rotary) into the cache's. */
function setMemory<X extends Value>(ops: Ops<X>, c: ResolvedSegmentedConfig, layer: LayerCache<X>, w: Record<string, Tensor>, mem: X): void {
  ops.writeRows(layer.segmentPool!, ops.splitHeads(mem, 1, [c.hidden_size])[0]!, 0);
  ops.writeRows(layer.keys!, ops.splitHeads(ops.linear(mem, w.k_proj!), c.num_key_value_heads, [c.headDim])[0]!, 0);
  ops.writeRows(layer.values!, ops.splitHeads(ops.linear(mem, w.v_proj!), c.num_key_value_heads, [c.headDim])[0]!, 0);
}

/** x [A, 1, d] as rows [A, d]: the same numbers in the same order, but no reshape op exists, so row by row. */
function planesToRows<X extends Value>(ops: Ops<X>, x: X): X {
  const [A, , d] = x.shape as [number, number, number];
  const parts = ops.splitHeads(ops.mergeHeads(x), 1, Array<number>(A).fill(d)); // A values [1, 1, d]
  return ops.concatRows(parts.map((p) => ops.mergeHeads(p)));
}
