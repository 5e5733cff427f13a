// NSA (native sparse attention: spec/sparse-attention.md, src/attention/sparse.ts) in the one forward:
//   o_t = W_o · concat_h (g_cmp·o_cmp + g_slc·o_slc + g_win·o_win),   [g_cmp | g_slc | g_win] = sigmoid(x_t·W_gᵀ)
// Every branch runs on the backend's operations. Compressed: the blocks a chunk ends are compressed on the device at
// once, k_cmp_i = W_k^c · flatten(K_[i·d, i·d+l) + E_k) (values alike: a gather of their rows, an addition, one
// product), and query t attends its first compressedBlockCount(p_t) blocks; its probabilities p_cmp [H, T, NB] come
// back to the host, where they choose each kv group's selected blocks (host work, as DSA's top-k). The gated sum is
// host work: a per-head scaling no operation does; the three branches' outputs and the gate logits come back in one
// read. State, all on the device: the selected branch's rotated keys and values [Hkv, rows, Dh] in the layer's
// cache; `blocks` beside them, the compressed branch's unrotated keys and values of every position and one
// compressed key and value per finished block; and `sparse`: the window's last w rotated keys and values, a ring
// [Hkv, w, Dh]. The selected branch gathers its rows straight from the cache (attendSelected); the window attends its
// ring in place, from its oldest row on: no step copies a cache.

import { gatedSum, groupSelection, resolveSparseConfig, type ResolvedSparseConfig } from "../attention/sparse.ts";
import { mergeHeads } from "../attention/heads.ts";
import { compressedBlockCount, type NsaBlocks } from "../attention/sparse-select.ts";
import { read, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { TinyseekError } from "../errors.ts";
import { sigmoid } from "../ops.ts";
import { ropeFrequencies } from "../rope.ts";
import type { Tensor } from "../tensor.ts";
import { record } from "../trace.ts";
import { sparseConfig } from "./attention.ts";
import type { LayerCache } from "./cache.ts";
import { attendSelected, eachToken, type Selection } from "./dsa-layer.ts";
import type { Run } from "./layers.ts";
import { oncePerConfig } from "./once.ts";
import { hookHost } from "./points.ts";

/** What an NSA layer keeps beside its device cache of keys and values. */
export interface SparseLayerState<X extends Value = Value> {
  /** Positions it has taken in: the cache's length (a forward that fails after this layer leaves the cache broken). */
  position: number;
  /** The window's rotated keys and values of the last w positions, a ring [Hkv, w, Dh] (position p at row p mod w)
   *  made once and written in place, one row per token; null before the layer's first forward. */
  windowKeys: X | null;
  windowValues: X | null;
}

/**
 * Layer l's NSA over one sequence's new tokens x [T, D] at `positions`, through `layer` (its device cache, with room
 * for them). `keep` makes the values that outlive the forward (the cache's own operations). Records
 * `<prefix>.selected` [Hkv, T, n] and `<prefix>.gates` [T, 3·H].
 */
export function* sparseLayer<X extends Value>(
  run: Run<X>, l: number, x: X, w: Record<string, Tensor>, layer: LayerCache<X>, positions: Int32Array, keep: Ops<X>,
): Reading<X> {
  const { ops, listen } = run;
  const prefix = `layers.${l}.attn`;
  const { c, freqs, scale } = setup(run);
  const { H, Hkv, Dh, blocks } = c;
  const T = positions.length, start = positions[0]!;
  const s = (layer.sparse ??= { position: 0, windowKeys: null, windowValues: null });
  if (s.position !== start) throw new TinyseekError(`${prefix}: the sparse state holds ${s.position} positions, the cache ${start}`);
  const heads = (name: string, n: number) => (ops.splitHeads(ops.linear(x, w[name]!), n, [Dh]) as [X])[0];
  const rotate = (v: X) => ops.rope(v, positions, freqs);
  const at = Array.from(positions);
  const row = (v: X, t: number) => (T === 1 ? v : ops.gatherRows(v, Int32Array.of(t)));

  // Compressed: the unrotated query against the finished blocks of unrotated keys, NB of them after this chunk, which
  // compresses the blocks it ends (a block ends at its last position, i·d + l - 1).
  const q = heads("q_proj", H);
  const cmp = layer.blocks!;
  ops.writeRows(cmp.rawKeys, heads("k_cmp_proj", Hkv), start);
  ops.writeRows(cmp.rawValues, heads("v_cmp_proj", Hkv), start);
  const ended = compressedBlockCount(start - 1, blocks);
  const NB = compressedBlockCount(start + T - 1, blocks);
  if (NB > ended) {
    ops.writeRows(cmp.keys, compressedBlocks(ops, cmp.rawKeys, w.compress_k!, w.compress_k_pos!, ended, NB, blocks), ended);
    ops.writeRows(cmp.values, compressedBlocks(ops, cmp.rawValues, w.compress_v!, w.compress_v_pos!, ended, NB, blocks), ended);
  }
  const cmpArgs = { H, Hkv, Tq: T, Tk: NB, Dh, Dv: Dh, scale, offset: 0, kvRows: cmp.rows };
  // Query t sees the blocks that end by its position, the first compressedBlockCount(p_t): blocks 0 … offset.
  // (Argument objects written out whole, as everywhere in the forward: a spread copy slows V8's attention path.)
  const probs = NB === 0 ? null : eachToken(ops, q, H, Dh, NB, (qt, t) => ops.attentionProbs(qt, cmp.keys,
    { H, Hkv, Tq: 1, Tk: NB, Dh, Dv: Dh, scale, offset: compressedBlockCount(start + t, blocks) - 1, kvRows: cmp.rows }));
  const pCmp = { shape: [1, H, T, NB], data: probs ? yield* read(ops, probs) : new Float32Array(0) };
  const { selected } = groupSelection(pCmp, at, Hkv, blocks);
  record(listen.trace, `${prefix}.selected`, { shape: [Hkv, T, blocks.selectCount], data: selected });
  const cmpOut = probs && ops.attendWith(probs, cmp.values, cmpArgs);

  // Selected: each group's blocks, gathered from every position's keys. Window: the last w keys of each query.
  ops.writeRows(layer.keys!, rotate(heads("k_slc_proj", Hkv)), start);
  ops.writeRows(layer.values!, heads("v_slc_proj", Hkv), start);
  const qRot = rotate(q);
  const args = { H, Hkv, Tq: T, Tk: start + T, Dh, Dv: Dh, scale, offset: start, kvRows: layer.rows };
  const slc = attendSelected(ops, qRot, layer.keys!, layer.values!, args, selectedRows(selected, at, Hkv, blocks));
  const span = blocks.window; // w
  const ringKeys = (s.windowKeys ??= keep.empty([Hkv, span, Dh])), ringValues = (s.windowValues ??= keep.empty([Hkv, span, Dh]));
  const kWin = rotate(heads("k_win_proj", Hkv)), vWin = heads("v_win_proj", Hkv);
  // Token t's key goes into the ring just before it attends: the ring then holds exactly its window, positions
  // p - n + 1 … p, the oldest at row (p - n + 1) mod w, where the attention starts reading in place.
  const win = eachToken(ops, qRot, H, Dh, Dh, (qt, t) => {
    const p = start + t, n = Math.min(p + 1, span);
    ops.writeRows(ringKeys, row(kWin, t), p % span);
    ops.writeRows(ringValues, row(vWin, t), p % span);
    return ops.attention(qt, ringKeys, ringValues, { H, Hkv, Tq: 1, Tk: n, Dh, Dv: Dh, scale, offset: n - 1, kvRows: span, firstRow: (p - n + 1) % span });
  });
  s.position = start + T;

  // One read, [H, T, 2·Dh (+ Dh) + 3·H]: the branches' outputs (the compressed one is zeros while no block has
  // ended), then the gate logits [1, T, 3·H], which concatLast repeats over the heads (the host takes head 0's).
  const gateLogits = ops.linear(ops.splitHeads(x, 1, [c.D])[0]!, w.gate_proj!);
  const branches = columns(yield* read(ops, ops.concatLast(cmpOut ? [slc, win, cmpOut, gateLogits] : [slc, win, gateLogits])), H * T);
  const slcHost: Tensor = { shape: [1, H, T, Dh], data: branches(Dh) };
  const winHost: Tensor = { shape: [1, H, T, Dh], data: branches(Dh) };
  const cmpHost: Tensor = { shape: [1, H, T, Dh], data: cmpOut ? branches(Dh) : new Float32Array(H * T * Dh) };
  const gates = sigmoid({ shape: [T, 3 * H], data: branches(3 * H).subarray(0, T * 3 * H) });
  record(listen.trace, `${prefix}.gates`, gates);
  const mixed = gatedSum(gates, cmpHost, slcHost, winHost);
  const flowing = hookHost(listen, `${prefix}.heads`, { shape: [H, T, Dh], data: mixed.data }, { layer: l, positions });
  // Heads merged on the host, one operation fewer; [H, 1, Dh] is [1, H·Dh] already.
  const merged = T === 1 ? flowing.data : mergeHeads({ shape: [1, H, T, Dh], data: flowing.data }).data;
  return ops.linear(ops.upload({ shape: [T, H * Dh], data: merged }), w.o_proj!);
}

/**
 * Blocks [from, to) compressed, as src/attention/sparse.ts's compressBlocks computes them: W · flatten(K_block + E),
 * K_block the l rows i·d … i·d + l - 1 of every kv head's plane of raw [Hkv, rows, Dh]. → [Hkv, to - from, Dh].
 */
function compressedBlocks<X extends Value>(ops: Ops<X>, raw: X, weight: Tensor, positionEmbedding: Tensor, from: number, to: number, b: NsaBlocks): X {
  const [Hkv, , Dh] = raw.shape as [number, number, number];
  const n = to - from, l = b.block;
  const rows = new Int32Array(n * l);
  for (let i = 0; i < n; i++) for (let j = 0; j < l; j++) rows[i * l + j] = (from + i) * b.stride + j;
  // [Hkv, n·l, Dh] holds each head's blocks one after another: read as [Hkv·n, l·Dh], a block flattened a row.
  const gathered = ops.add(ops.gatherRows(raw, rows), ops.upload(tiled(positionEmbedding, Hkv, n)));
  return ops.reshape(ops.linear(ops.reshape(gathered, [Hkv * n, l * Dh]), weight), [Hkv, n, Dh]);
}

/** E [l, Dh] repeated for n blocks of each of Hkv heads, [Hkv, n·l, Dh]: made once per weight and block count (a
 *  decode step ends one block at a time). */
function tiled(E: Tensor, Hkv: number, n: number): Tensor {
  const [l, Dh] = E.shape as [number, number];
  let t = tiles.get(E.data);
  if (t?.shape[0] !== Hkv || t.shape[1] !== n * l) {
    const data = new Float32Array(Hkv * n * l * Dh);
    for (let i = 0; i < Hkv * n; i++) data.set(E.data, i * l * Dh);
    tiles.set(E.data, (t = { shape: [Hkv, n * l, Dh], data }));
  }
  return t;
}
const tiles = new WeakMap<Float32Array, Tensor>();

/** The resolved config, rotary frequencies (no YaRN: the module's) and scale, made once per config. */
function setup<X extends Value>(run: Run<X>): { c: ResolvedSparseConfig; freqs: Float64Array; scale: number } {
  return oncePerConfig(run, "sparse", () => {
    const c = resolveSparseConfig(sparseConfig(run.config));
    return { c, freqs: ropeFrequencies({ dim: c.Dh, theta: c.ropeTheta }), scale: 1 / Math.sqrt(c.Dh) };
  });
}

/** Rows [R, W] read from the device, cut into consecutive column ranges from the left: each call takes the next d
 *  columns of every row, [R, d]. */
function columns(rows: Float32Array, R: number): (d: number) => Float32Array {
  const W = rows.length / R;
  let at = 0;
  return (d) => {
    const data = new Float32Array(R * d);
    // Element by element: a row's few numbers copy faster than subarray + set.
    for (let r = 0, to = 0; r < R; r++) for (let e = 0, from = r * W + at; e < d; e++) data[to++] = rows[from + e]!;
    at += d;
    return data;
  };
}

/**
 * Each group's selected blocks as cache rows, [Hkv, T, n·l']: the positions of its blocks up to the query's own.
 * Every block but the query's own is whole and the own block is always selected, so each group has as many.
 */
function selectedRows(selected: Int32Array, positions: readonly number[], Hkv: number, { selectCount: n, selectBlock: size }: NsaBlocks): Selection {
  const T = positions.length;
  const data = new Int32Array(Hkv * T * n * size).fill(-1);
  for (let row = 0; row < Hkv * T; row++) {
    let to = row * n * size;
    for (const j of selected.subarray(row * n, (row + 1) * n)) {
      if (j < 0) continue;
      const end = Math.min((j + 1) * size - 1, positions[row % T]!);
      for (let p = j * size; p <= end; p++) data[to++] = p;
    }
  }
  return { shape: [Hkv, T, n * size], data };
}
