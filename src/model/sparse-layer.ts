// NSA (native sparse attention: spec/sparse-attention.md, src/attention/sparse.ts) in the one forward:
//   o_t = W_o · concat_h (g_cmp·o_cmp + g_slc·o_slc + g_win·o_win),   [g_cmp | g_slc | g_win] = sigmoid(x_t·W_gᵀ)
// The projections, rotary and the attention of the selected and window branches run on the backend's operations.
// The compressed branch runs on the host through the module's own code: its probabilities choose the selected blocks
// (host work, as DSA's top-k), and its state, one key per d positions, is small. The gated sum is host work too: a
// per-head scaling no operation does. State (LayerCache): the selected branch's rotated keys and values of
// every position in the layer's device cache [Hkv, rows, Dh]; `sparse` holds the compressed blocks with their pending
// raw keys on the host and the window's last w rotated keys and values on the device, a ring [Hkv, w, Dh]. The
// selected branch gathers its rows straight from the cache (attendSelected); the window attends its ring in place,
// from its oldest row on: no step copies a cache.

import { compressedBranch, createSparseState, gatedSum, groupSelection, resolveSparseConfig, type CompressedState, type ResolvedSparseConfig, type SparseWeights } from "../attention/sparse.ts";
import { mergeHeads } from "../attention/heads.ts";
import type { NsaBlocks } from "../attention/sparse-select.ts";
import { read, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import { TinyseekError } from "../errors.ts";
import type { Kernels } from "../kernels.ts";
import { sigmoid } from "../ops.ts";
import { ropeFrequencies } from "../rope.ts";
import type { Tensor } from "../tensor.ts";
import { record } from "../trace.ts";
import { sparseConfig } from "./attention.ts";
import type { LayerCache } from "./cache.ts";
import { attendSelected, eachToken, type Selection } from "./dsa-layer.ts";
import type { Run } from "./layers.ts";
import { once } from "./once.ts";
import { hookHost } from "./points.ts";

/** What an NSA layer keeps beside its device cache of selected-branch keys and values. */
export interface SparseLayerState<X extends Value = Value> {
  /** Positions it has taken in: the cache's length (a forward that fails after this layer leaves the cache broken). */
  position: number;
  /** The compressed branch's pending raw keys and values and one compressed pair per finished block, [1, Hkv, n, Dh]. */
  compressed: CompressedState;
  /** The window's rotated keys and values of the last w positions, a ring [Hkv, w, Dh] (position p at row p mod w)
   *  made once and written in place, one row per token; null before the layer's first forward. */
  windowKeys: X | null;
  windowValues: X | null;
}

/**
 * Layer l's NSA over one sequence's new tokens x [T, D] at `positions`, through `layer` (its device cache, with room
 * for them). `keep` makes the values that outlive the forward (the cache's own operations); `kernels` are the host
 * kernels the compressed branch runs on. Records `<prefix>.selected` [Hkv, T, n] and `<prefix>.gates` [T, 3·H].
 */
export function* sparseLayer<X extends Value>(
  run: Run<X>, l: number, x: X, w: Record<string, Tensor>, layer: LayerCache<X>, positions: Int32Array, keep: Ops<X>, kernels: Kernels,
): Reading<X> {
  const { ops, listen } = run;
  const prefix = `layers.${l}.attn`;
  const { c, freqs, scale } = setup(run);
  const { H, Hkv, Dh, blocks } = c;
  const [T, start] = [positions.length, positions[0]!];
  const s = (layer.sparse ??= { position: 0, compressed: createSparseState(sparseConfig(run.config)), windowKeys: null, windowValues: null });
  if (s.position !== start) throw new TinyseekError(`${prefix}: the sparse state holds ${s.position} positions, the cache ${start}`);
  const heads = (name: string, n: number) => (ops.splitHeads(ops.linear(x, w[name]!), n, [Dh]) as [X])[0];
  const rotate = (v: X) => ops.rope(v, positions, freqs);
  const at = Array.from(positions);

  // What the host needs from x, in one read (a read costs more than a product): the unrotated query, the compressed
  // branch's keys and values and the gate logits side by side, [1, T, H·Dh + 2·Hkv·Dh + 3·H]. x as [1, T, D] makes
  // every product a part concatLast takes; the query's product is made once more, in heads, for the device's rotary.
  const x1 = ops.splitHeads(x, 1, [c.D])[0]!;
  const hostIn = yield* read(ops, ops.concatLast(HOST_INPUTS.map((name) => ops.linear(x1, w[name]!))));
  const fromX = columns(hostIn, T);
  const [qHost, kCmp, vCmp] = [H, Hkv, Hkv].map((n): Tensor => ({ shape: [1, n, T, Dh], data: fromX(n, Dh) }));
  const gates = sigmoid({ shape: [T, 3 * H], data: fromX(1, 3 * H) });

  // Compressed: the unrotated query against compressed blocks of unrotated keys, on the host.
  const q = heads("q_proj", H);
  const cmp = compressedBranch(s.compressed, qHost, kCmp, vCmp, w as unknown as SparseWeights, at, c, kernels);
  const { selected } = groupSelection(cmp.probs, at, Hkv, blocks);
  record(listen.trace, `${prefix}.selected`, { shape: [Hkv, T, blocks.selectCount], data: selected });

  // Selected: each group's blocks, gathered from every position's keys. Window: the last w keys of each query.
  ops.writeRows(layer.keys!, rotate(heads("k_slc_proj", Hkv)), start);
  ops.writeRows(layer.values!, heads("v_slc_proj", Hkv), start);
  const qRot = rotate(q);
  const args = { H, Hkv, Tq: T, Tk: start + T, Dh, Dv: Dh, scale, offset: start, kvRows: layer.rows };
  const slc = attendSelected(ops, qRot, layer.keys!, layer.values!, args, selectedRows(selected, at, Hkv, blocks));
  const span = blocks.window; // w
  const [ringKeys, ringValues] = [(s.windowKeys ??= keep.empty([Hkv, span, Dh])), (s.windowValues ??= keep.empty([Hkv, span, Dh]))];
  const [kWin, vWin] = [rotate(heads("k_win_proj", Hkv)), heads("v_win_proj", Hkv)];
  const row = (v: X, t: number) => (T === 1 ? v : ops.gatherRows(v, Int32Array.of(t)));
  // Token t's key goes into the ring just before it attends: the ring then holds exactly its window, positions
  // p - n + 1 … p, the oldest at row (p - n + 1) mod w, where the attention starts reading in place.
  const win = eachToken(ops, qRot, H, Dh, Dh, (qt, t) => {
    const p = start + t, n = Math.min(p + 1, span);
    ops.writeRows(ringKeys, row(kWin, t), p % span);
    ops.writeRows(ringValues, row(vWin, t), p % span);
    return ops.attention(qt, ringKeys, ringValues, { H, Hkv, Tq: 1, Tk: n, Dh, Dv: Dh, scale, offset: n - 1, kvRows: span, firstRow: (p - n + 1) % span });
  });
  s.position = start + T;

  record(listen.trace, `${prefix}.gates`, gates);
  const branches = columns(yield* read(ops, ops.concatLast([slc, win])), H * T); // [H, T, 2·Dh]: one read
  const slcHost = { shape: [1, H, T, Dh], data: branches(1, Dh) };
  const mixed = gatedSum(gates, cmp.out, slcHost, { shape: [1, H, T, Dh], data: branches(1, Dh) });
  const flowing = hookHost(listen, `${prefix}.heads`, { shape: [H, T, Dh], data: mixed.data }, { layer: l, positions });
  // Heads merged on the host, one operation fewer; [H, 1, Dh] is [1, H·Dh] already.
  const merged = T === 1 ? flowing.data : mergeHeads({ shape: [1, H, T, Dh], data: flowing.data }).data;
  return ops.linear(ops.upload({ shape: [T, H * Dh], data: merged }), w.o_proj!);
}

/** The resolved config, rotary frequencies (no YaRN: the module's) and scale, made once per forward. */
function setup<X extends Value>(run: Run<X>): { c: ResolvedSparseConfig; freqs: Float64Array; scale: number } {
  return once(run, "sparse", () => {
    const c = resolveSparseConfig(sparseConfig(run.config));
    return { c, freqs: ropeFrequencies({ dim: c.Dh, theta: c.ropeTheta }), scale: 1 / Math.sqrt(c.Dh) };
  });
}

/** The products of x the host reads, in the order their columns are cut. */
const HOST_INPUTS = ["q_proj", "k_cmp_proj", "v_cmp_proj", "gate_proj"] as const;

/**
 * Rows [R, W] read from the device, cut into consecutive column ranges from the left: each call takes the next n·d
 * columns as n parts of d, [n, R, d] (heads of a [R, n·d] row, as splitHeads lays them out).
 */
function columns(rows: Float32Array, R: number): (n: number, d: number) => Float32Array {
  const W = rows.length / R;
  let at = 0;
  return (n, d) => {
    const data = new Float32Array(n * R * d);
    for (let h = 0, to = 0; h < n; h++) { // element by element: a head's few numbers copy faster than subarray + set
      for (let r = 0; r < R; r++) for (let e = 0, from = r * W + at + h * d; e < d; e++) data[to++] = rows[from + e]!;
    }
    at += n * d;
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
