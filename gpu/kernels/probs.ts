// Attention split in two (src/device/kernels.ts attentionProbs, attendWith), for a caller that reads the
// probabilities: NSA's compressed branch. attentionProbs: a workgroup of 64 threads owns one (head, query) row, a
// thread every 64th key: its score scale·q·k (`fma` dot products) written in place, then the row's max and sum by a
// tree in workgroup memory, the weights e^(s - max) and their quotients. attendWith: a thread per output element,
// Σ_j p·v over the first Tk keys with `fma`, j in order.

import type { AttendArgs, AttentionArgs } from "../../src/device/kernels.ts";
import { groups1d, type GpuContext, type GpuTensor } from "../context.ts";

const PROBS = /* wgsl */ `
struct P { H: u32, Hkv: u32, Tq: u32, Tk: u32, Dh: u32, kvRows: u32, first: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
var<workgroup> part: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nw.x;
  if (row >= p.H * p.Tq) { return; } // uniform over the workgroup: the barriers below are reached by all or none
  let h = row / p.Tq;
  let i = row % p.Tq;
  let kBase = (h / (p.H / p.Hkv)) * p.kvRows;
  let seen = min(p.Tk, p.first + i); // first = offset + 1: query i sees keys j < offset + i + 1
  var m = -0x1.fffffep+127f;
  for (var j = lid; j < seen; j += 64u) {
    var dot = 0.0;
    for (var d = 0u; d < p.Dh; d++) { dot = fma(Q[row * p.Dh + d], K[(kBase + j) * p.Dh + d], dot); }
    let s = dot * p.scale;
    Y[row * p.Tk + j] = s;
    m = max(m, s);
  }
  part[lid] = m;
  workgroupBarrier();
  for (var n = 32u; n > 0u; n >>= 1u) {
    if (lid < n) { part[lid] = max(part[lid], part[lid + n]); }
    workgroupBarrier();
  }
  let top = part[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var j = lid; j < seen; j += 64u) {
    let e = exp(Y[row * p.Tk + j] - top);
    Y[row * p.Tk + j] = e;
    sum += e;
  }
  part[lid] = sum;
  workgroupBarrier();
  for (var n = 32u; n > 0u; n >>= 1u) {
    if (lid < n) { part[lid] += part[lid + n]; }
    workgroupBarrier();
  }
  let total = part[0];
  for (var j = lid; j < p.Tk; j += 64u) {
    Y[row * p.Tk + j] = select(0.0, Y[row * p.Tk + j] / total, j < seen);
  }
}`;

const ATTEND = /* wgsl */ `
struct P { n: u32, H: u32, Hkv: u32, Tq: u32, Tk: u32, Dv: u32, kvRows: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Pr: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let e = gid.x + gid.y * nw.x * 64u;
  if (e >= p.n) { return; }
  let row = e / p.Dv;
  let d = e % p.Dv;
  let vBase = (row / p.Tq / (p.H / p.Hkv)) * p.kvRows;
  var acc = 0.0;
  for (var j = 0u; j < p.Tk; j++) { acc = fma(Pr[row * p.Tk + j], V[(vBase + j) * p.Dv + d], acc); }
  Y[e] = acc;
}`;

/** q [H, Tq, Dh], k [Hkv, kvRows, Dh] → [H, Tq, Tk]. */
export function attentionProbs(ctx: GpuContext, q: GpuTensor, k: GpuTensor, { H, Hkv, Tq, Tk, Dh, kvRows, offset, scale }: AttentionArgs): GpuTensor {
  const out = ctx.empty([H, Tq, Tk]);
  ctx.dispatch(PROBS, [q.buffer, k.buffer, out.buffer], [H, Hkv, Tq, Tk, Dh, kvRows, offset + 1, { f: scale }], groups1d(H * Tq, 1));
  return out;
}

/** probs [H, Tq, Tk], v [Hkv, kvRows, Dv] → [H, Tq, Dv]. */
export function attendWith(ctx: GpuContext, probs: GpuTensor, v: GpuTensor, { H, Hkv, Tq, Tk, Dv, kvRows }: AttendArgs): GpuTensor {
  const out = ctx.empty([H, Tq, Dv]);
  const n = H * Tq * Dv;
  ctx.dispatch(ATTEND, [probs.buffer, v.buffer, out.buffer], [n, H, Hkv, Tq, Tk, Dv, kvRows], groups1d(n, 64));
  return out;
}
