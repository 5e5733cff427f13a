// Row reductions (softmax, rmsnorm, layernorm): one workgroup of 64 threads per row, strided reads, a tree reduction
// in workgroup memory.
// Softmax hides entries flagged invisible and -Infinity entries (tested by bit pattern, since WGSL compilers may
// assume no infinities); a row with nothing visible is zeros, as in the reference.

import { numel } from "../../src/tensor.ts";
import { groups1d, type GpuContext, type GpuTensor } from "../context.ts";

const REDUCE = /* wgsl */ `
var<workgroup> red: array<f32, 64>;
fn reduce(v: f32, lid: u32, isMax: bool) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), isMax); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

const SOFTMAX = /* wgsl */ `
struct P { rows: u32, n: u32, hasMask: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<u32>; // visible flags, 4 bytes per word
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
${REDUCE}
fn seen(idx: u32) -> bool {
  if (bitcast<u32>(X[idx]) == 0xff800000u) { return false; }
  if (p.hasMask == 0u) { return V[0] == V[0]; } // (reads V so that the binding stays in the layout)
  return ((V[idx / 4u] >> ((idx % 4u) * 8u)) & 0xffu) != 0u;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nw.x;
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var m = -0x1.fffffep+127f;
  var count = 0.0;
  for (var j = lid; j < p.n; j += 64u) {
    if (seen(base + j)) { m = max(m, X[base + j]); count += 1.0; }
  }
  m = reduce(m, lid, true);
  count = reduce(count, lid, false);
  var s = 0.0;
  for (var j = lid; j < p.n; j += 64u) {
    if (seen(base + j)) { s += exp(X[base + j] - m); }
  }
  s = reduce(s, lid, false);
  for (var j = lid; j < p.n; j += 64u) {
    Y[base + j] = select(0.0, exp(X[base + j] - m) / s, count > 0.0 && seen(base + j));
  }
}`;

const RMSNORM = /* wgsl */ `
struct P { rows: u32, n: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
${REDUCE}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nw.x;
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var ss = 0.0;
  for (var j = lid; j < p.n; j += 64u) { let x = X[base + j]; ss = fma(x, x, ss); }
  ss = reduce(ss, lid, false);
  let inv = 1.0 / sqrt(ss / f32(p.n) + p.eps);
  for (var j = lid; j < p.n; j += 64u) { Y[base + j] = X[base + j] * inv * W[j]; }
}`;

// Two passes over the row (the mean, then the deviations d from it): float32's one-pass Σx² − n·mean² cancels
// catastrophically on a row far from zero. The second pass also sums d: their mean c is the float32 mean's rounding
// error, which the output multiplies by 1/std; taking c off (and c² off the variance: Σ(d − c)² = Σd² − n·c²) keeps
// rows of close values at float32's precision (measured on 3-wide rows: worst NMSE 3e-12 without, 3e-14 with).
const LAYERNORM = /* wgsl */ `
struct P { rows: u32, n: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
${REDUCE}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nw.x;
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  for (var j = lid; j < p.n; j += 64u) { s += X[base + j]; }
  let mean = reduce(s, lid, false) / f32(p.n);
  var sd = 0.0;
  var ss = 0.0;
  for (var j = lid; j < p.n; j += 64u) { let d = X[base + j] - mean; sd += d; ss = fma(d, d, ss); }
  let c = reduce(sd, lid, false) / f32(p.n);
  ss = reduce(ss, lid, false);
  let inv = 1.0 / sqrt(max(ss / f32(p.n) - c * c, 0.0) + p.eps);
  for (var j = lid; j < p.n; j += 64u) { Y[base + j] = fma(((X[base + j] - mean) - c) * inv, W[j], B[j]); }
}`;

/** Packs one flag per byte into u32 words (the storage buffer's smallest element). */
export function packFlags(flags: Uint8Array): Uint32Array {
  const words = new Uint32Array(Math.max(1, Math.ceil(flags.length / 4)));
  new Uint8Array(words.buffer).set(flags.subarray(0, words.length * 4).map((f) => (f ? 1 : 0)));
  return words;
}

export function softmax(ctx: GpuContext, x: GpuTensor, visible?: GPUBuffer): GpuTensor {
  const n = x.shape[x.shape.length - 1] ?? 1;
  const rows = n === 0 ? 0 : numel(x.shape) / n;
  const out = ctx.empty(x.shape);
  const mask = visible ?? ctx.acquire(1);
  ctx.dispatch(SOFTMAX, [x.buffer, mask, out.buffer], [rows, n, visible ? 1 : 0], groups1d(rows, 1));
  if (!visible) ctx.release(mask);
  return out;
}

export function rmsnorm(ctx: GpuContext, x: GpuTensor, weight: GpuTensor, eps: number): GpuTensor {
  const n = x.shape[x.shape.length - 1]!;
  const rows = n === 0 ? 0 : numel(x.shape) / n;
  const out = ctx.empty(x.shape);
  ctx.dispatch(RMSNORM, [x.buffer, weight.buffer, out.buffer], [rows, n, { f: eps }], groups1d(rows, 1));
  return out;
}

export function layernorm(ctx: GpuContext, x: GpuTensor, weight: GpuTensor, bias: GpuTensor, eps: number): GpuTensor {
  const n = x.shape[x.shape.length - 1]!;
  const rows = n === 0 ? 0 : numel(x.shape) / n;
  const out = ctx.empty(x.shape);
  ctx.dispatch(LAYERNORM, [x.buffer, weight.buffer, bias.buffer, out.buffer], [rows, n, { f: eps }], groups1d(rows, 1));
  return out;
}
