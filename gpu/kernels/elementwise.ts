// Element-wise kernels, one thread per element (64 per workgroup, folded into 2-D past 65535 workgroups).
// Rotary embedding takes its cos and sin tables from the host (src/rope.ts rotaryTable: angles in float64, rounded
// once): WGSL's sin and cos promise only an absolute error of 2^-11 on [-π, π], and p·θ in float32 loses ~p·6e-8
// radians, both far from the reference.

import { rotaryTable } from "../../src/rope.ts";
import { numel } from "../../src/tensor.ts";
import { groups1d, type GpuContext, type GpuTensor } from "../context.ts";
import type { BlockCopy } from "../../src/device/kernels.ts";

const unary = (body: string, inputs: string[]) => /* wgsl */ `
struct P { n: u32, a: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: P;
${inputs.map((name, i) => `@group(0) @binding(${i + 1}) var<storage, read> ${name}: array<f32>;`).join("\n")}
@group(0) @binding(${inputs.length + 1}) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 64u;
  if (i >= p.n) { return; }
  ${body}
}`;

const SILU = unary(`let x = X[i]; Y[i] = x / (1.0 + exp(-x));`, ["X"]);
const SWIGLU = unary(`let g = G[i]; Y[i] = g / (1.0 + exp(-g)) * U[i];`, ["G", "U"]);
const ADD = unary(`Y[i] = X[i] + Z[i];`, ["X", "Z"]);
// Pair i of row t: a = T (rows per slab), b = half = dim / 2, c = 1 when interleaved (features 2·pair and
// 2·pair + 1 of the row), 0 for halves (pair and pair + half). CS holds cos [T, half], then sin [T, half].
const ROPE = unary(
  `let pair = i % p.b; let t = (i / p.b) % p.a;
   let at = (i / p.b) * 2u * p.b + select(pair, 2u * pair, p.c != 0u); let to = at + select(p.b, 1u, p.c != 0u);
   let c = CS[t * p.b + pair]; let s = CS[(p.a + t) * p.b + pair];
   let re = X[at]; let im = X[to];
   Y[at] = re * c - im * s; Y[to] = re * s + im * c;`,
  ["X", "CS"],
);
// Y[a, r, d] = X[a, I[a·step + r], d] over planes X [A, N, D] → Y [A, n, D] (step 0: every plane takes the same rows,
// step n: its own): gathers embedding rows, MoE tokens (one plane) and a cache's kv heads. I is bit-cast from u32.
const GATHER = /* wgsl */ `
struct P { count: u32, D: u32, n: u32, N: u32, step: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> I: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 64u;
  if (i >= p.count) { return; }
  let d = i % p.D; let r = (i / p.D) % p.n; let a = i / (p.D * p.n);
  Y[i] = X[(a * p.N + bitcast<u32>(I[a * p.step + r])) * p.D + d];
}`;

function run(ctx: GpuContext, code: string, inputs: GPUBuffer[], shape: readonly number[], extra: number[] = []) {
  const out = ctx.empty(shape);
  const n = numel(shape);
  ctx.dispatch(code, [...inputs, out.buffer], [n, ...extra], groups1d(n, 64));
  return out;
}

export const silu = (ctx: GpuContext, x: GpuTensor): GpuTensor => run(ctx, SILU, [x.buffer], x.shape);
export const swiglu = (ctx: GpuContext, gate: GpuTensor, up: GpuTensor): GpuTensor =>
  run(ctx, SWIGLU, [gate.buffer, up.buffer], gate.shape);
export const add = (ctx: GpuContext, a: GpuTensor, b: GpuTensor): GpuTensor =>
  run(ctx, ADD, [a.buffer, b.buffer], a.shape);

/** src/rope.ts rotaryTable's cos and sin [T, dim/2] in one array, as `rope` reads them: cos, then sin. */
export function rotaryTables(positions: ArrayLike<number>, freqs: Float64Array): Float32Array {
  const { cos, sin } = rotaryTable(positions, freqs);
  const table = new Float32Array(2 * cos.length);
  table.set(cos);
  table.set(sin, cos.length);
  return table;
}

/** x [..., T, dim] rotated by a table of rotaryTables (T positions) on the device; pairs (2i, 2i + 1) when
 *  interleaved, (i, i + dim/2) when not (src/rope.ts applyRope). */
export function rope(ctx: GpuContext, x: GpuTensor, table: GPUBuffer, T: number, interleaved = true): GpuTensor {
  const dim = x.shape[x.shape.length - 1]!;
  const out = ctx.empty(x.shape);
  const pairs = numel(x.shape) / 2;
  ctx.dispatch(ROPE, [x.buffer, table, out.buffer], [pairs, T, dim / 2, interleaved ? 1 : 0], groups1d(pairs, 64));
  return out;
}

/** Rows idx[r] of x [V, D] → [idx.length, D]; `indices` is a u32 buffer of `count` row numbers. */
export function gatherRows(ctx: GpuContext, x: GPUBuffer, D: number, indices: GPUBuffer, count: number): GpuTensor {
  return run(ctx, GATHER, [x, indices], [count, D], [D, count, 0, 0]);
}

/** Rows of every plane of x [A, N, D] (or one plane [N, D]) → [A, n, D]: plane a's row r is indices[a·n + r] when
 *  perPlane, indices[r] otherwise (src/device/kernels.ts gatherRows). */
export function gatherPlanes(ctx: GpuContext, x: GpuTensor, indices: GPUBuffer, count: number, perPlane: boolean): GpuTensor {
  const [A, N, D] = x.shape.length === 3 ? (x.shape as [number, number, number]) : [1, x.shape[0]!, x.shape[1]!];
  const n = perPlane ? count / A : count;
  return run(ctx, GATHER, [x.buffer, indices], x.shape.length === 3 ? [A, n, D] : [n, D], [D, n, N, perPlane ? n : 0]);
}

// Block copy: for batch b < nb, row r < rows, column c < width:
//   dst[dstOff + b·dstBatch + r·dstRow + c] = src[srcOff + b·srcBatch + r·srcRow + c].
// Head splits, merges and concatenations along the last axis are all this one kernel.
const COPY = /* wgsl */ `
struct P { n: u32, rows: u32, width: u32, srcOff: u32, srcRow: u32, srcBatch: u32, dstOff: u32, dstRow: u32, dstBatch: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 64u;
  if (i >= p.n) { return; }
  let c = i % p.width; let r = (i / p.width) % p.rows; let b = i / (p.width * p.rows);
  Y[p.dstOff + b * p.dstBatch + r * p.dstRow + c] = X[p.srcOff + b * p.srcBatch + r * p.srcRow + c];
}`;

export function copyBlocks(ctx: GpuContext, src: GPUBuffer, dst: GPUBuffer, b: BlockCopy): void {
  const n = (b.batches ?? 1) * b.rows * b.width;
  const params = [n, b.rows, b.width, b.srcOff ?? 0, b.srcRow, b.srcBatch ?? 0, b.dstOff ?? 0, b.dstRow, b.dstBatch ?? 0];
  ctx.dispatch(COPY, [src, dst], params, groups1d(n, 64));
}

// Y[r, d] = X[r, d] + U[slot[r], d] where slot[r] >= 0, else X[r, d] (a = D; slots are i32 bit-cast in f32 storage).
// The residual of a token that exited early (slot -1) stays as it was; a feed-forward run on a subset of rows
// adds back through the slots.
const ROW_ADD = unary(
  `let r = i / p.a; let d = i % p.a; let s = bitcast<i32>(S[r]);
   Y[i] = select(X[i], X[i] + U[u32(max(s, 0)) * p.a + d], s >= 0);`,
  ["X", "U", "S"],
);

export function addRows(ctx: GpuContext, x: GpuTensor, update: GpuTensor, slots: GPUBuffer): GpuTensor {
  return run(ctx, ROW_ADD, [x.buffer, update.buffer, slots], x.shape, [x.shape[x.shape.length - 1]!]);
}
