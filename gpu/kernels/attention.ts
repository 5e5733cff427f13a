// Fused attention with an online softmax (Milakov & Gimelshein 2018; FlashAttention's tiling, Dao et al. 2022).
// A workgroup of 64 threads owns BQ query rows of one (batch, head); key/value tiles of BQ rows stream through
// workgroup memory; each row keeps its running maximum m and sum l, and rescales its accumulator by
// exp(m_old - m_new) when a tile raises the maximum. The mask is evaluated from its MaskSpec (causal + offset,
// window, segment, padding lengths), the decay bias is (offset + i - j)·ln γ_h, and head h reads kv head
// h / (H / Hkv), key j at row (firstRow + j) mod kvRows of its kv head (a ring; firstRow 0: row j). A row with no
// visible key outputs zeros. Hidden scores are marked with -FLT_MAX rather than
// -Infinity, so no infinity ever enters the arithmetic.

import type { AttentionArgs } from "../../src/device/kernels.ts";
import { argError, checkInteger } from "../../src/errors.ts";
import type { MaskSpec } from "../../src/masks.ts";
import type { GpuContext, GpuTensor } from "../context.ts";

const THREADS = 64;

// Head sizes are runtime values (loops the compiler keeps as loops: lavapipe took 4-22 s to compile each shape
// when they were constants); workgroup arrays are sized for CAP = a power of two >= max(Dh, Dv).
// The output accumulator lives in workgroup memory too: a private array indexed in a loop made lavapipe's compile
// take over a minute.
function source(BQ: number, CAP: number): string {
  return /* wgsl */ `
const BQ = ${BQ}u;
const HIDDEN = -0x1.fffffep+127f;
struct P {
  H: u32, Hkv: u32, Tq: u32, Tk: u32, scale: f32, causal: u32, offset: u32, window: u32,
  segSize: u32, segOverlap: u32, hasLengths: u32, hasDecay: u32, Dh: u32, Dv: u32, kvRows: u32, firstRow: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read> lengths: array<u32>;
@group(0) @binding(5) var<storage, read> logGammas: array<f32>;
@group(0) @binding(6) var<storage, read_write> O: array<f32>;
var<workgroup> Qs: array<f32, ${BQ * CAP}>;
var<workgroup> Ks: array<f32, ${BQ * CAP}>;
var<workgroup> Vs: array<f32, ${BQ * CAP}>;
var<workgroup> Os: array<f32, ${BQ * CAP}>;
var<workgroup> S: array<f32, ${BQ * BQ}>;
var<workgroup> rowMax: array<f32, ${BQ}>;
var<workgroup> rowSum: array<f32, ${BQ}>;
var<workgroup> rowScale: array<f32, ${BQ}>;

fn visible(b: u32, i: u32, j: u32) -> bool {
  let pos = p.offset + i;
  if (p.causal != 0u && j > pos) { return false; }
  if (p.window != 0u && j + p.window <= pos) { return false; }
  if (p.segSize != 0u && j + p.segOverlap < (pos / p.segSize) * p.segSize) { return false; }
  if (p.hasLengths != 0u && (pos >= lengths[b] || j >= lengths[b])) { return false; }
  return true;
}

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let DH = p.Dh;
  let DV = p.Dv;
  let q0 = wg.x * BQ;
  let h = wg.y;
  let b = wg.z;
  let kvh = h / (p.H / p.Hkv);
  let qBase = ((b * p.H + h) * p.Tq + q0) * DH;
  let kBase = (b * p.Hkv + kvh) * p.kvRows;
  let decay = select(0.0, logGammas[h], p.hasDecay != 0u);
  for (var e = lid; e < BQ * DH; e += ${THREADS}u) {
    Qs[e] = select(0.0, Q[qBase + e], q0 + e / DH < p.Tq);
  }
  if (lid < BQ) { rowMax[lid] = HIDDEN; rowSum[lid] = 0.0; }
  for (var e = lid; e < BQ * DV; e += ${THREADS}u) { Os[e] = 0.0; }
  // Under a causal mask no key past the last query's position is visible.
  var kEnd = p.Tk;
  if (p.causal != 0u) { kEnd = min(p.Tk, p.offset + min(q0 + BQ, p.Tq)); }
  for (var k0 = 0u; k0 < kEnd; k0 += BQ) {
    // Key j lies at row (firstRow + j) mod kvRows. The tile's keys (fewer than kvRows + 1) lie at rows r0, r0 + 1, …
    // and wrap past the ring's end at most once, after kvRows - r0 rows: one modulo per tile, a compare per element
    // (with firstRow 0 the wrap is past every key of the tile).
    let r0 = (p.firstRow + k0) % p.kvRows;
    let kWrap = (p.kvRows - r0) * DH;
    let vWrap = (p.kvRows - r0) * DV;
    workgroupBarrier();
    for (var e = lid; e < BQ * DH; e += ${THREADS}u) {
      let j = k0 + e / DH;
      Ks[e] = select(0.0, K[(kBase + r0) * DH + e - select(0u, p.kvRows * DH, e >= kWrap)], j < p.Tk);
    }
    for (var e = lid; e < BQ * DV; e += ${THREADS}u) {
      let j = k0 + e / DV;
      Vs[e] = select(0.0, V[(kBase + r0) * DV + e - select(0u, p.kvRows * DV, e >= vWrap)], j < p.Tk);
    }
    workgroupBarrier();
    for (var e = lid; e < BQ * BQ; e += ${THREADS}u) {
      let r = e / BQ; let c = e % BQ; let i = q0 + r; let j = k0 + c;
      var s = HIDDEN;
      if (i < p.Tq && j < p.Tk && visible(b, i, j)) {
        var dot = 0.0;
        for (var d = 0u; d < DH; d++) { dot = fma(Qs[r * DH + d], Ks[c * DH + d], dot); }
        s = dot * p.scale + (f32(p.offset + i) - f32(j)) * decay;
      }
      S[e] = s;
    }
    workgroupBarrier();
    if (lid < BQ) {
      let r = lid;
      let mOld = rowMax[r];
      var mNew = mOld;
      for (var c = 0u; c < BQ; c++) { mNew = max(mNew, S[r * BQ + c]); }
      var l = rowSum[r] * exp(mOld - mNew);
      for (var c = 0u; c < BQ; c++) {
        let s = S[r * BQ + c];
        let w = select(0.0, exp(s - mNew), s > HIDDEN);
        S[r * BQ + c] = w;
        l += w;
      }
      rowScale[r] = exp(mOld - mNew);
      rowMax[r] = mNew;
      rowSum[r] = l;
    }
    workgroupBarrier();
    for (var e = lid; e < BQ * DV; e += ${THREADS}u) {
      let r = e / DV; let d = e % DV;
      var a = Os[e] * rowScale[r];
      for (var c = 0u; c < BQ; c++) { a = fma(S[r * BQ + c], Vs[c * DV + d], a); }
      Os[e] = a;
    }
  }
  workgroupBarrier();
  for (var e = lid; e < BQ * DV; e += ${THREADS}u) {
    let r = e / DV;
    if (q0 + r < p.Tq) {
      let l = rowSum[r];
      O[((b * p.H + h) * p.Tq + q0) * DV + e] = select(0.0, Os[e] / l, l > 0.0);
    }
  }
}`;
}

const sources = new Map<string, string>();

/** The largest query/key tile (16, 8, 4, 2, 1 rows) whose workgroup memory fits the device. */
function tileRows(CAP: number, limit: number): number {
  for (const BQ of [16, 8, 4, 2, 1]) {
    if ((4 * BQ * CAP + BQ * BQ + 3 * BQ) * 4 <= limit) return BQ;
  }
  throw argError("head dimensions", `Dh and Dv small enough for ${limit} bytes of workgroup memory`, CAP);
}

/** The one forward's attention arguments (src/device/kernels.ts) with a batch, any mask, and ln γ on the device. */
export interface GpuAttentionArgs extends Omit<AttentionArgs, "offset" | "logGammas" | "kvRows"> {
  B: number;
  mask?: MaskSpec;
  /** ln γ per query head, already on the device. */
  logGammas?: GPUBuffer;
  /** Rows each kv head holds in k and v (default Tk): a cache allocated for more positions than it has filled. */
  kvRows?: number;
}

export function attention(ctx: GpuContext, q: GpuTensor, k: GpuTensor, v: GpuTensor, args: GpuAttentionArgs): GpuTensor {
  const { B, H, Hkv, Tq, Tk, Dh, Dv, scale, mask = {} } = args;
  const offset = mask.offset ?? Tk - Tq;
  checkInteger("mask.offset", offset, 0);
  // At least 64: each variant costs seconds to compile on lavapipe, so few variants beat snug memory.
  const CAP = 2 ** Math.max(6, Math.ceil(Math.log2(Math.max(Dh, Dv, 1))));
  const BQ = tileRows(CAP, ctx.device.limits.maxComputeWorkgroupStorageSize);
  const key = `${BQ}:${CAP}`;
  let code = sources.get(key);
  if (!code) sources.set(key, (code = source(BQ, CAP)));
  const causal = mask.causal || mask.window !== undefined || mask.segment !== undefined;
  const lengths = mask.lengths ? ctx.upload(Uint32Array.from(mask.lengths)) : ctx.acquire(1);
  const gammas = args.logGammas ?? ctx.acquire(1);
  const out = ctx.empty([B, H, Tq, Dv]);
  const params = [
    H, Hkv, Tq, Tk, { f: scale }, causal ? 1 : 0, offset, mask.window ?? 0,
    mask.segment?.size ?? 0, mask.segment?.overlap ?? 0, mask.lengths ? 1 : 0, args.logGammas ? 1 : 0, Dh, Dv,
    args.kvRows ?? Tk, args.firstRow ?? 0,
  ];
  ctx.dispatch(code, [q.buffer, k.buffer, v.buffer, lengths, gammas, out.buffer], params, [Math.ceil(Tq / BQ), H, B]);
  ctx.release(lengths);
  if (!args.logGammas) ctx.release(gammas);
  return out;
}
