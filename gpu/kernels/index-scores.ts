// DSA's indexer scores (src/device/kernels.ts IndexScoreArgs): I[t, s] = Σ_h (w[t, h]·scale)·ReLU(q[h, t]·k[s]) for
// the keys s <= offset + t, -∞ after. A workgroup of 64 threads owns one query t and 64 consecutive keys, a thread
// one key; head by head, q[h, t] passes through workgroup memory 64 values at a time and each thread takes its dot
// product with `fma`, then adds its weighted ReLU to a float32 sum. A block wholly past t's position only writes -∞.
// WGSL has no infinity literal, and a constant expression that overflows is a compile error: -∞ is bit-cast at run
// time from its bits (0xff800000) passed in the uniform.

import type { IndexScoreArgs } from "../../src/device/kernels.ts";
import { argError } from "../../src/errors.ts";
import type { GpuContext, GpuTensor } from "../context.ts";

const INDEX_SCORES = /* wgsl */ `
struct P { H: u32, Tq: u32, Tk: u32, D: u32, offset: u32, scale: f32, negInf: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
var<workgroup> qs: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = wg.y + wg.z * nw.y;
  if (t >= p.Tq) { return; }
  let s = wg.x * 64u + lid;
  let last = p.offset + t; // the last key query t sees
  if (wg.x * 64u > last) {
    if (s < p.Tk) { Y[t * p.Tk + s] = bitcast<f32>(p.negInf); }
    return;
  }
  let sees = s <= last; // and so s < Tk, since offset + Tq <= Tk
  var sum = 0.0;
  for (var h = 0u; h < p.H; h++) {
    var dot = 0.0;
    for (var d0 = 0u; d0 < p.D; d0 += 64u) {
      workgroupBarrier();
      if (d0 + lid < p.D) { qs[lid] = Q[(h * p.Tq + t) * p.D + d0 + lid]; }
      workgroupBarrier();
      if (sees) {
        let n = min(64u, p.D - d0);
        for (var d = 0u; d < n; d++) { dot = fma(qs[d], K[s * p.D + d0 + d], dot); }
      }
    }
    sum = fma(W[t * p.H + h] * p.scale, max(dot, 0.0), sum);
  }
  if (sees) {
    Y[t * p.Tk + s] = sum;
  } else if (s < p.Tk) {
    Y[t * p.Tk + s] = bitcast<f32>(p.negInf);
  }
}`;

/** q [H, Tq, D], keys [1, kvRows, D] (the first Tk rows read), w [Tq, H] → [Tq, Tk]. */
export function indexScores(ctx: GpuContext, q: GpuTensor, keys: GpuTensor, w: GpuTensor, args: IndexScoreArgs): GpuTensor {
  const { H, Tq, Tk, D, offset, scale } = args;
  const limit = ctx.device.limits.maxComputeWorkgroupsPerDimension;
  const blocks = Math.ceil(Tk / 64);
  if (blocks > limit) throw argError("Tk", `at most ${64 * limit} keys (the device's ${limit} workgroups of 64)`, Tk);
  const out = ctx.empty([Tq, Tk]);
  // Queries past the y limit fold into z; the extra workgroups of the last layer return at once.
  const [y, z] = [Math.min(Tq, limit), Math.ceil(Tq / limit)];
  ctx.dispatch(INDEX_SCORES, [q.buffer, keys.buffer, w.buffer, out.buffer], [H, Tq, Tk, D, offset, { f: scale }, 0xff800000], [blocks, y, z]);
  return out;
}
