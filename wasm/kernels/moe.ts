// MoE dispatch and combine: the kept assignments grouped by expert (a counting sort on the host, where the routing
// is), each expert's chain in the module (wasm/assembly/moe.ts: its tokens gathered into contiguous rows, its gate
// and up products on its packed, resident weights, SwiGLU, its down product), and the weighted sum over a token's
// experts in float64, as the reference sums, in expert order (moeCombine, in the module too). A large call runs its
// experts over the pool, whole experts per thread, a busy expert cut into row blocks (runExperts); the sum is the
// same either way. Pointer-level: moeAt (the device kernels call it on x where it lies); host kernel: moe over
// Tensors.

import { argError } from "../../src/errors.ts";
import type { ExpertWeights, Routing } from "../../src/moe/experts.ts";
import { expectShape, type Tensor } from "../../src/tensor.ts";
import { CHUNKS_PER_THREAD, fits, type WasmCore } from "../core.ts";
import { bf16PanelBytes, bf16Weight } from "./bf16.ts";
import { packedWeight, panelBytes } from "./matmul.ts";

// Each expert's gate, up and down weights as views of the stacked tensors, made once per stacked array (the
// model passes the same [E, F, D] tensors every step), so the weight cache's per-view memo hits every call. The
// views are of host arrays, so every core can share them.
const expertViews = new WeakMap<Float32Array, { size: number; views: Float32Array[] }>();
function expertWeight(stacked: Float32Array, e: number, size: number): Float32Array {
  let held = expertViews.get(stacked);
  if (!held || held.size !== size) expertViews.set(stacked, (held = { size, views: [] }));
  return (held.views[e] ??= stacked.subarray(e * size, (e + 1) * size));
}

// moeAt's index arrays (see there). Every kernel runs to its end before the next starts, so every core can share them.
let moeIndex = new Int32Array(0), moeWeights = new Float32Array(0);

/**
 * The mixture for x at px [N, D] in memory, written as float32 at out [N, D]: Σ over kept assignments of
 * w · SwiGLU expert (x), summed in float64 as the reference does (wasm/assembly/moe.ts moeCombine). Inside a
 * kernel's try.
 */
export function moeAt(core: WasmCore, px: number, N: number, D: number, routing: Routing, gate: Float32Array, up: Float32Array, down: Float32Array, E: number, F: number, out: number): void {
  const { k } = routing;
  const A = N * k;
  if (routing.experts.length !== A) throw argError("routing.experts", `${A} entries (N=${N} · k=${k})`, routing.experts.length);
  if (routing.weights.length !== A) throw argError("routing.weights", `${A} entries (N=${N} · k=${k})`, routing.weights.length);
  if (routing.kept.length !== A) throw argError("routing.kept", `${A} entries (N=${N} · k=${k})`, routing.kept.length);
  // Kept assignments grouped by expert, in token order within each (a counting sort). The index arrays are kept
  // between calls, grown when too small.
  if (moeIndex.length < 2 * E + 1 + A) moeIndex = new Int32Array(2 * (2 * E + 1 + A));
  const start = moeIndex, next = E + 1, order = 2 * E + 1; // start[0..E], next[0..E), order[0..A)
  start.fill(0, 0, E + 1);
  for (let a = 0; a < A; a++) {
    const chosen = routing.experts[a]!;
    if (!Number.isInteger(chosen) || chosen < 0 || chosen >= E) {
      throw argError(`routing.experts[${a}]`, `an expert in [0, ${E - 1}]`, chosen);
    }
    if (routing.kept[a]) start[chosen + 1]!++;
  }
  for (let e = 0; e < E; e++) {
    start[e + 1]! += start[e]!;
    start[next + e] = start[e]!;
  }
  for (let a = 0; a < A; a++) if (routing.kept[a]) start[order + start[next + routing.experts[a]!]!++] = a;
  const kept = start[E]!;
  // Each token's experts added in expert order, whichever thread computed them: the same sums as on one thread.
  const rows = core.alloc(kept * 4); // the token of each sorted assignment
  const ys = kept > 0 ? runExperts(core, px, D, F, E, k, gate, up, down, rows) : 0;
  if (moeWeights.length < kept) moeWeights = new Float32Array(2 * kept);
  for (let j = 0; j < kept; j++) moeWeights[j] = routing.weights[start[order + j]!]!;
  const weights = core.put(moeWeights.subarray(0, kept)), sum = core.alloc(N * D * 8);
  core.ex.moeCombine(kept, rows, weights, ys, N, D, sum, out);
  core.verify("moe");
}

/** i32 words of one item of the expert table (wasm/assembly/moe.ts): from, n, gate, up, down, kinds. */
const ITEM = 6;
// The table's host copy (one item per used expert), the split job's items (experts cut into row blocks) and their
// order by work, grown when too small (shared by every core, as moeIndex).
let moeItems = new Int32Array(0), moeJob = new Int32Array(0), moeSlots = new Int32Array(0);
const heavierFirst = (a: number, b: number) => moeJob[b * ITEM + 1]! - moeJob[a * ITEM + 1]! || a - b;

/**
 * Every used expert's chain (wasm/assembly/moe.ts moeExperts: gather, gate, up, SwiGLU, down) on its tokens, each
 * expert's rows at its place in moeIndex's sorted order. Over the pool when the call has expertFlops, and every
 * used expert's weights fit the weight budget together (all are packed before the job, since packing may grow the
 * memory; the budget keeps the most recent, so none is evicted by the next); else one expert at a time on this
 * thread. Writes each sorted assignment's token index into rows (i32, kept of them); returns the address of the
 * outputs [kept, D].
 */
function runExperts(core: WasmCore, px: number, D: number, F: number, E: number, k: number, gate: Float32Array, up: Float32Array, down: Float32Array, rows: number): number {
  const start = moeIndex, order = 2 * E + 1, kept = start[E]!;
  let used = 0;
  for (let e = 0; e < E; e++) if (start[e + 1]! > start[e]!) used++;
  // Upper bounds (float32 panels; BF16 ones are half) of one packed gate or up, one down, one expert.
  const upBytes = panelBytes(D, F), downBytes = panelBytes(F, D), expertBytes = 2 * upBytes + downBytes;
  // Rows per item of a split: an expert with more (a long prompt's busy expert) is cut into blocks of this many,
  // so that threads share it; a product's rows are independent, so the bits stay the same.
  const block = Math.max(4, Math.ceil(kept / (CHUNKS_PER_THREAD * core.threads) / 4) * 4);
  const split = core.pool !== undefined && (used > 1 || kept > block) && 6 * kept * D * F >= core.expertFlops &&
    used * expertBytes <= core.weights.budget;
  const xs = core.alloc(kept * D * 4), gs = core.alloc(kept * F * 4), us = core.alloc(kept * F * 4);
  const ys = core.alloc(kept * D * 4);
  const single = split ? 0 : core.alloc(ITEM * 4);
  // Under a weight budget of less than one expert's three weights, fetching one may evict the one before: each is
  // then copied into the arena as soon as it is fetched.
  const pinned = !split && expertBytes > core.weights.budget ? [core.alloc(upBytes), core.alloc(upBytes), core.alloc(downBytes)] : undefined;
  if (moeItems.length < used * ITEM) moeItems = new Int32Array(2 * used * ITEM);
  let slot = 0;
  for (let e = 0; e < E; e++) {
    const from = start[e]!, n = start[e + 1]! - from;
    if (n === 0) continue;
    const at = split ? slot++ * ITEM : 0;
    moeItems[at] = from;
    moeItems[at + 1] = n;
    moeItems[at + 5] = 0;
    fetchPanels(core, expertWeight(gate, e, F * D), F, D, at, 0, pinned?.[0]);
    fetchPanels(core, expertWeight(up, e, F * D), F, D, at, 1, pinned?.[1]);
    fetchPanels(core, expertWeight(down, e, D * F), D, F, at, 2, pinned?.[2]);
    if (split) continue;
    writeRows(core, rows, from, n, order, k);
    core.heap.I32.set(moeItems.subarray(0, ITEM), single >>> 2);
    core.ex.moeExperts(single, rows, px, D, F, xs, gs, us, ys, core.localScratch, 0, 1);
  }
  if (!split) return ys;
  // The job: every expert's rows in blocks of at most `block`, heaviest first (threads claim items in table order,
  // so the last ones claimed are the lightest).
  let count = 0;
  for (let u = 0; u < used; u++) count += Math.ceil(moeItems[u * ITEM + 1]! / block);
  if (moeJob.length < count * ITEM) [moeJob, moeSlots] = [new Int32Array(2 * count * ITEM), new Int32Array(2 * count)];
  for (let u = 0, i = 0; u < used; u++) {
    const at = u * ITEM, from = moeItems[at]!, n = moeItems[at + 1]!;
    for (let r = 0; r < n; r += block, i++) {
      moeJob.set(moeItems.subarray(at, at + ITEM), i * ITEM);
      moeJob[i * ITEM] = from + r;
      moeJob[i * ITEM + 1] = Math.min(block, n - r);
      moeSlots[i] = i;
    }
  }
  moeSlots.subarray(0, count).sort(heavierFirst);
  const items = core.alloc(count * ITEM * 4), scratch = core.alloc(count * core.gemmScratch);
  writeRows(core, rows, 0, kept, order, k);
  const I32 = core.heap.I32; // after the allocations, which may grow the memory
  for (let i = 0; i < count; i++) {
    const s = moeSlots[i]! * ITEM;
    I32.set(moeJob.subarray(s, s + ITEM), (items >>> 2) + i * ITEM);
  }
  core.pool!.run("moeExperts", [items, rows, px, D, F, xs, gs, us, ys, scratch], core.ex.moeExperts, count);
  return ys;
}

/**
 * W [N, K]'s resident panels, packed as linearAt packs them (BF16 when exact and the core keeps BF16), into word
 * 2 + w of the item at moeItems[at] and its kind into bit w of word 5; copied to `pin` when given.
 */
function fetchPanels(core: WasmCore, data: Float32Array, N: number, K: number, at: number, w: number, pin: number | undefined): void {
  const bf16 = bf16Weight(core, data, N, K);
  let ptr = bf16 || packedWeight(core, data, N, K);
  if (pin !== undefined) {
    core.heap.U8.copyWithin(pin, ptr, ptr + (bf16 ? bf16PanelBytes(K, N) : panelBytes(K, N)));
    ptr = pin;
  }
  moeItems[at + 2 + w] = ptr;
  if (bf16) moeItems[at + 5]! |= 1 << w;
}

/** The token index of each sorted assignment from … from + n, into rows (i32). */
function writeRows(core: WasmCore, rows: number, from: number, n: number, order: number, k: number): void {
  const I32 = core.heap.I32, at = rows >>> 2;
  for (let j = from; j < from + n; j++) I32[at + j] = Math.floor(moeIndex[order + j]! / k);
}

export function moe(core: WasmCore, x: Tensor, routing: Routing, experts: ExpertWeights): Tensor {
  const { gate, up, down } = experts;
  if (!(fits(x, 2) && fits(gate, 3) && fits(up, 3) && fits(down, 3) && gate.shape[2] === x.shape[1] &&
    up.shape[0] === gate.shape[0] && up.shape[1] === gate.shape[1] && up.shape[2] === gate.shape[2] &&
    down.shape[0] === gate.shape[0] && down.shape[1] === gate.shape[2] && down.shape[2] === gate.shape[1])) {
    const { D } = expectShape("x", x, ["N", "D"]);
    const { E, F } = expectShape("experts.gate", gate, ["E", "F", "D"], { D });
    expectShape("experts.up", up, ["E", "F", "D"], { E, F, D });
    expectShape("experts.down", down, ["E", "D", "F"], { E, F, D });
  }
  const [N, D] = x.shape as [number, number];
  const [E, F] = gate.shape as [number, number];
  try {
    const out = core.alloc(N * D * 4);
    moeAt(core, core.put(x.data), N, D, routing, gate.data, up.data, down.data, E, F, out);
    return core.read(out, [N, D], N * D);
  } finally {
    core.temp.reset();
  }
}
