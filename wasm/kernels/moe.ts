// MoE dispatch and combine over the matmul kernels: the kept assignments grouped by expert (a counting sort on
// the host, where the routing is), each expert's tokens gathered into contiguous rows, its gate, up and down
// products on its packed, resident weights (wasm/kernels/matmul.ts linearAt) with SwiGLU between, and the
// weighted sum over a token's experts in float64, as the reference sums. Pointer-level: moeAt (the device kernels
// call it on x where it lies); host kernel: moe over Tensors.

import { argError } from "../../src/errors.ts";
import type { ExpertWeights, Routing } from "../../src/moe/experts.ts";
import { expectShape, type Tensor } from "../../src/tensor.ts";
import { fits, type WasmCore } from "../core.ts";
import { linearAt } from "./matmul.ts";

// Each expert's gate, up and down weights as views of the stacked tensors, made once per stacked array (the
// model passes the same [E, F, D] tensors every step), so the weight cache's per-view memo hits every call. The
// views are of host arrays, so every core can share them.
const expertViews = new WeakMap<Float32Array, { size: number; views: Float32Array[] }>();
function expertWeight(stacked: Float32Array, e: number, size: number): Float32Array {
  let held = expertViews.get(stacked);
  if (!held || held.size !== size) expertViews.set(stacked, (held = { size, views: [] }));
  return (held.views[e] ??= stacked.subarray(e * size, (e + 1) * size));
}

// moeAt's index arrays and float64 sum (see there). Every kernel runs to its end before the next starts, and moeAt's
// callers use the sum before they return, so every core can share them.
let moeIndex = new Int32Array(0), moeSum = new Float64Array(0);

/**
 * The mixture for x at px [N, D] in memory: Σ over kept assignments of w · SwiGLU expert (x), summed in float64
 * as the reference does (the returned array is reused by the next call). Inside a kernel's try.
 */
export function moeAt(core: WasmCore, px: number, N: number, D: number, routing: Routing, gate: Float32Array, up: Float32Array, down: Float32Array, E: number, F: number): Float64Array {
  const { k } = routing;
  const A = N * k;
  if (routing.experts.length !== A) throw argError("routing.experts", `${A} entries (N=${N} · k=${k})`, routing.experts.length);
  if (routing.weights.length !== A) throw argError("routing.weights", `${A} entries (N=${N} · k=${k})`, routing.weights.length);
  if (routing.kept.length !== A) throw argError("routing.kept", `${A} entries (N=${N} · k=${k})`, routing.kept.length);
  // Kept assignments grouped by expert, in token order within each (a counting sort). The index arrays and (for
  // up to 2¹⁶ numbers, a decode step's size) the float64 sum are kept between calls, grown when too small.
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
  let busiest = 0;
  for (let e = 0; e < E; e++) {
    busiest = Math.max(busiest, start[e + 1]!);
    start[e + 1]! += start[e]!;
    start[next + e] = start[e]!;
  }
  for (let a = 0; a < A; a++) if (routing.kept[a]) start[order + start[next + routing.experts[a]!]!++] = a;
  if (moeSum.length < N * D && N * D <= 1 << 16) moeSum = new Float64Array(N * D);
  const sum = N * D <= moeSum.length ? moeSum.fill(0, 0, N * D) : new Float64Array(N * D); // float64 over a token's k experts, as the reference
  if (busiest > 0) {
    const tokens = core.alloc(busiest * D * 4);
    const g = core.alloc(busiest * F * 4), u = core.alloc(busiest * F * 4);
    const y = core.alloc(busiest * D * 4);
    for (let e = 0; e < E; e++) {
      const from = start[e]!, n = start[e + 1]! - from;
      if (n === 0) continue;
      const rows = core.heap.F32;
      for (let i = 0; i < n; i++) {
        const src = (px >>> 2) + Math.floor(start[order + from + i]! / k) * D;
        rows.copyWithin((tokens >>> 2) + i * D, src, src + D);
      }
      // Each packed weight is used as soon as it is fetched: under a small weight budget, fetching the next one
      // may evict the last.
      linearAt(core, tokens, n, F, D, expertWeight(gate, e, F * D), g);
      linearAt(core, tokens, n, F, D, expertWeight(up, e, F * D), u);
      core.ex.swiglu(g, u, n * F, g);
      linearAt(core, g, n, D, F, expertWeight(down, e, D * F), y);
      const f32 = core.heap.F32; // after the packing a first use does, which may grow the memory
      const ys = y >>> 2;
      for (let i = 0; i < n; i++) {
        const a = start[order + from + i]!, row = Math.floor(a / k) * D, w = routing.weights[a]!;
        for (let d = 0; d < D; d++) sum[row + d]! += w * f32[ys + i * D + d]!;
      }
    }
    core.verify("moe");
  }
  return sum;
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
    const sum = moeAt(core, core.put(x.data), N, D, routing, gate.data, up.data, down.data, E, F);
    const out = core.output(N * D);
    for (let i = 0; i < N * D; i++) out[i] = sum[i]!;
    return { shape: [N, D], data: out };
  } finally {
    core.temp.reset();
  }
}
