// MoE dispatch and combine on the device. The routing (a few integers per token) is on the host already, so the
// host plans the slots: kept assignments grouped by expert, in token order. Then: one gather of every slot's token
// row, per expert two products into the slot rows of G and U (its weights found by offset in the stacked
// tensors), one SwiGLU over all slots, per expert the down product, and one combine kernel in which token t sums
// w · Y[slot] over its k assignments. Each output row is written by one thread, so there are no atomics and no
// races, and the sum's order is fixed.

import { argError } from "../../src/errors.ts";
import type { Routing } from "../../src/moe/experts.ts";
import { groups1d, type GpuContext, type GpuTensor } from "../context.ts";
import { gatherRows, swiglu } from "./elementwise.ts";
import { gemmInto } from "./matmul.ts";

export interface DeviceExperts {
  /** gate and up [E, F, D], down [E, D, F], device-resident. */
  gate: GPUBuffer;
  up: GPUBuffer;
  down: GPUBuffer;
  E: number;
  F: number;
  D: number;
  /** Which of gate, up and down hold BF16 pairs (src/bf16.ts) instead of float32; none when absent. */
  bf16?: { gate: boolean; up: boolean; down: boolean };
}

export interface SlotPlan {
  /** Token of each slot, slots grouped by expert. */
  tokens: Uint32Array;
  /** First slot and number of slots of each expert. */
  start: number[];
  count: number[];
  /** Slot of assignment t·k + r, or -1 where it was dropped. */
  slotOf: Int32Array;
}

export function planSlots(routing: Routing, N: number, E: number): SlotPlan {
  const { k } = routing;
  for (const [name, a] of [["experts", routing.experts], ["weights", routing.weights], ["kept", routing.kept]] as const) {
    if (a.length !== N * k) throw argError(`routing.${name}`, `${N * k} entries (N=${N} · k=${k})`, a.length);
  }
  const count = new Array<number>(E).fill(0);
  routing.experts.forEach((e, a) => {
    if (!Number.isInteger(e) || e < 0 || e >= E) throw argError(`routing.experts[${a}]`, `an expert in [0, ${E - 1}]`, e);
    if (routing.kept[a]) count[e]!++;
  });
  const start = count.map((_, e) => count.slice(0, e).reduce((s, c) => s + c, 0));
  const next = [...start];
  const total = count.reduce((s, c) => s + c, 0);
  const tokens = new Uint32Array(total);
  const slotOf = new Int32Array(N * k).fill(-1);
  for (let a = 0; a < N * k; a++) {
    if (!routing.kept[a]) continue;
    const slot = next[routing.experts[a]!]!++;
    tokens[slot] = Math.floor(a / k);
    slotOf[a] = slot;
  }
  return { tokens, start, count, slotOf };
}

const COMBINE = /* wgsl */ `
struct P { n: u32, D: u32, k: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Y: array<f32>;
@group(0) @binding(2) var<storage, read> slotOf: array<i32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read_write> Out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 64u;
  if (i >= p.n) { return; }
  let t = i / p.D; let d = i % p.D;
  var sum = 0.0;
  for (var r = 0u; r < p.k; r++) {
    let slot = slotOf[t * p.k + r];
    if (slot >= 0) { sum = fma(W[t * p.k + r], Y[u32(slot) * p.D + d], sum); }
  }
  Out[i] = sum;
}`;

/** x [N, D] → Σ over kept assignments of w · SwiGLU expert (x), all on the device. */
export function moe(ctx: GpuContext, x: GpuTensor, routing: Routing, experts: DeviceExperts): GpuTensor {
  const [N, D] = x.shape as [number, number];
  const { E, F } = experts;
  const plan = planSlots(routing, N, E);
  const S = plan.tokens.length;
  const temps: GPUBuffer[] = [];
  const out = ctx.empty([N, D]);
  const slotOf = ctx.upload(plan.slotOf.length ? plan.slotOf : new Int32Array(1).fill(-1));
  const weights = ctx.upload(routing.weights.length ? routing.weights : new Float32Array(1));
  temps.push(slotOf, weights);
  let y = ctx.acquire(1);
  temps.push(y);
  if (S > 0) {
    const indices = ctx.upload(plan.tokens);
    const gathered = gatherRows(ctx, x.buffer, D, indices, S);
    const g = ctx.empty([S, F]);
    const u = ctx.empty([S, F]);
    for (let e = 0; e < E; e++) {
      const M = plan.count[e]!;
      if (M === 0) continue;
      const rows = { M, K: D, N: F, transB: true, offA: plan.start[e]! * D, offC: plan.start[e]! * F, offB: e * F * D };
      gemmInto(ctx, gathered.buffer, experts.gate, g.buffer, rows, experts.bf16?.gate);
      gemmInto(ctx, gathered.buffer, experts.up, u.buffer, rows, experts.bf16?.up);
    }
    const h = swiglu(ctx, g, u);
    y = ctx.acquire(S * D);
    for (let e = 0; e < E; e++) {
      const M = plan.count[e]!;
      if (M === 0) continue;
      gemmInto(ctx, h.buffer, experts.down, y, {
        M, K: F, N: D, transB: true, offA: plan.start[e]! * F, offC: plan.start[e]! * D, offB: e * D * F,
      }, experts.bf16?.down);
    }
    temps.push(indices, gathered.buffer, g.buffer, u.buffer, h.buffer, y);
  }
  const n = N * D;
  ctx.dispatch(COMBINE, [y, slotOf, weights, out.buffer], [n, D, routing.k], groups1d(n, 64));
  ctx.release(...temps);
  return out;
}
