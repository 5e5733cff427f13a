// Quantised linear layers on the device: the weight dequantised once on the host (codes × scales, cached per
// QuantWeight, then resident like any weight), the activations fake-quantised on the device (each value replaced by
// code × scale, as the reference quantises them: src/quant/linear.ts quantizeTokenInt8, src/quant/fp8.ts
// quantizeActivationTiles), then the linear kernel.
//
// The codes are the reference's exactly, ties included. The reference divides in float64, where x / scale rounds
// the same way as the exact quotient (its distance to a rounding boundary is either 0 or far above 2⁻⁵³); WGSL's
// float32 division is allowed 2.5 ULP and most GPUs compute it as x · (1 / y). So the kernel takes the float32
// quotient only as a first guess and settles every decision with an exact comparison: |x| against m · 2^k · scale
// for a small integer m, done on the integer significands (every product m · significand fits a u32), so no
// rounding at all enters a decision. The scales are corrected the same way to the correctly rounded float32 of
// absmax / 127 (int8) or absmax / 448 (e4m3), which is what Math.fround(absMax / q) gives (double rounding through
// float64 is innocuous for a quotient). A row (int8) or tile (e4m3) holding a NaN or ±Inf becomes NaN throughout,
// as the reference's does. The one known departure: a scale in float32's subnormal range (absmax below ~1.5e-36
// for int8, ~5e-36 for e4m3), which GPUs may flush to zero.

import { dequantizeFp8 } from "../../src/quant/fp8.ts";
import { dequantizeInt } from "../../src/quant/int.ts";
import type { QuantWeight } from "../../src/quant/linear.ts";
import { numel, type Tensor } from "../../src/tensor.ts";
import { groups1d, type GpuContext, type GpuTensor } from "../context.ts";
import { linear } from "./matmul.ts";

// One workgroup of 64 threads per group of values sharing a scale: a whole row for int8 (block = n), one tile of
// `block` values of a row for e4m3. fp8 = 0 for int8 codes, 1 for e4m3.
const FAKE_QUANT = /* wgsl */ `
struct P { groups: u32, n: u32, block: u32, tiles: u32, fp8: u32, nan: f32 } // nan: WGSL refuses a constant NaN
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
var<workgroup> red: array<f32, 64>;

fn reduceMax(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

// A finite float32's magnitude as an integer significand and a power of two: |v| = sig(v) · 2^pow2(v), exactly.
fn sig(v: f32) -> u32 {
  let b = bitcast<u32>(v) & 0x7fffffffu;
  return select(b & 0x7fffffu, (b & 0x7fffffu) | 0x800000u, (b >> 23u) != 0u);
}
fn pow2(v: f32) -> i32 {
  let e = i32((bitcast<u32>(v) >> 23u) & 0xffu);
  return select(e - 150, -149, e == 0);
}

// The sign of |a| − m · 2^k, exactly (-1, 0 or 1): both sides as integers scaled by powers of two, compared by the
// position of their leading bits, then, at the same position, by their bits aligned to the top of a u32.
fn cmp(a: f32, m: u32, k: i32) -> i32 {
  let ma = sig(a);
  if (ma == 0u) { return select(0, -1, m != 0u); }
  if (m == 0u) { return 1; }
  let fa = i32(firstLeadingBit(ma));
  let fm = i32(firstLeadingBit(m));
  let ha = fa + pow2(a);
  let hm = fm + k;
  if (ha != hm) { return select(-1, 1, ha > hm); }
  let na = ma << u32(31 - fa);
  let nm = m << u32(31 - fm);
  if (na == nm) { return 0; }
  return select(-1, 1, na > nm);
}

// The float32 nearest to amax / (d · 2^k), ties to even (amax > 0 finite, s0 a guess within a few ULP).
fn nearestQuotient(amax: f32, d: u32, k: i32, s0: f32) -> f32 {
  var s = s0;
  for (var i = 0; i < 8; i++) {
    let bits = bitcast<u32>(s);
    if (bits == 0u) { s = bitcast<f32>(1u); continue; }
    let ms = sig(s);
    let es = pow2(s);
    let odd = (ms & 1u) == 1u;
    // Above the midpoint with the next float32 up?
    let up = cmp(amax, d * (2u * ms + 1u), es - 1 + k);
    if (up > 0 || (up == 0 && odd)) { s = bitcast<f32>(bits + 1u); continue; }
    // Below the midpoint with the next one down (a quarter ULP below a power of two: the binade below is finer).
    var down: i32;
    if (ms == 0x800000u && (bits >> 23u) > 1u) { down = cmp(amax, d * (4u * ms - 1u), es - 2 + k); }
    else { down = cmp(amax, d * (2u * ms - 1u), es - 1 + k); }
    if (down < 0 || (down == 0 && odd)) { s = bitcast<f32>(bits - 1u); continue; }
    break;
  }
  return s;
}

// roundHalfEven(|x| / s) clamped to 127, settled exactly around the float32 guess.
fn int8Code(a: f32, s: f32) -> u32 {
  let ms = sig(s);
  let es = pow2(s);
  var c = u32(clamp(round(a / s), 0.0, 127.0));
  for (var i = 0; i < 8; i++) {
    if (c < 127u) {
      let t = cmp(a, (2u * c + 1u) * ms, es - 1);
      if (t > 0 || (t == 0 && (c & 1u) == 1u)) { c++; continue; }
    }
    if (c > 0u) {
      let t = cmp(a, (2u * c - 1u) * ms, es - 1);
      if (t < 0 || (t == 0 && (c & 1u) == 1u)) { c--; continue; }
    }
    break;
  }
  return c;
}

// |x| / s rounded to e4m3 (src/quant/minifloat.ts roundTo, saturating at 448), as a float32.
fn e4m3Value(a: f32, s: f32) -> f32 {
  let ms = sig(s);
  let es = pow2(s);
  let y = a / s;
  // e = floor(log2(|x| / s)) clamped to [-7, 9]: the float32 quotient's exponent, then checked exactly.
  var e = clamp(i32((bitcast<u32>(y) >> 23u) & 0xffu) - 127, -7, 9);
  for (var i = 0; i < 20; i++) {
    if (e > -7 && cmp(a, ms, es + e) < 0) { e--; continue; }
    if (e < 9 && cmp(a, ms, es + e + 1) >= 0) { e++; continue; }
    break;
  }
  // The quantum 2^q of that binade (of the subnormal range below 2^-6), and n = roundHalfEven(|x| / s / 2^q).
  let q = max(e, -6) - 3;
  var n = u32(clamp(round(ldexp(y, -q)), 0.0, 32.0));
  for (var i = 0; i < 40; i++) {
    let t = cmp(a, (2u * n + 1u) * ms, es + q - 1);
    if (t > 0 || (t == 0 && (n & 1u) == 1u)) { n++; continue; }
    if (n > 0u) {
      let u = cmp(a, (2u * n - 1u) * ms, es + q - 1);
      if (u < 0 || (u == 0 && (n & 1u) == 1u)) { n--; continue; }
    }
    break;
  }
  return min(ldexp(f32(n), q), 448.0);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = wg.x + wg.y * nw.x;
  if (g >= p.groups) { return; }
  let row = g / p.tiles;
  let start = row * p.n + (g % p.tiles) * p.block;
  let end = row * p.n + min((g % p.tiles + 1u) * p.block, p.n);
  // Largest magnitude, and whether any value is NaN or ±Inf (told by its bits: compilers may assume neither).
  var amax = 0.0;
  var bad = 0.0;
  for (var i = start + lid; i < end; i += 64u) {
    let v = X[i];
    if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { bad = 1.0; } else { amax = max(amax, abs(v)); }
  }
  amax = reduceMax(amax, lid);
  bad = reduceMax(bad, lid);
  if (bad > 0.0) {
    for (var i = start + lid; i < end; i += 64u) { Y[i] = p.nan; }
    return;
  }
  // scale = fround(amax / 127) or fround(amax / 448), 448 = 7 · 2^6; a group of zeros has scale 0 and values 0.
  var s = 0.0;
  if (amax > 0.0) {
    if (p.fp8 == 1u) { s = nearestQuotient(amax, 7u, 6, amax / 448.0); }
    else { s = nearestQuotient(amax, 127u, 0, amax / 127.0); }
  }
  for (var i = start + lid; i < end; i += 64u) {
    let x = X[i];
    let a = abs(x);
    var v = 0.0;
    if (s > 0.0) {
      if (p.fp8 == 1u) { v = e4m3Value(a, s) * s; } else { v = f32(int8Code(a, s)) * s; }
    }
    Y[i] = select(v, -v, x < 0.0);
  }
}`;

/** The activations x [..., n] fake-quantised: per row in int8 codes, or per `block`-wide tile of a row in e4m3. */
export function fakeQuantize(ctx: GpuContext, x: GpuTensor, mode: { fp8: false } | { fp8: true; block: number }): GpuTensor {
  const n = x.shape[x.shape.length - 1] ?? 1;
  const rows = n === 0 ? 0 : numel(x.shape) / n;
  const block = mode.fp8 ? mode.block : Math.max(1, n);
  const tiles = Math.max(1, Math.ceil(n / block));
  const out = ctx.empty(x.shape);
  ctx.dispatch(FAKE_QUANT, [x.buffer, out.buffer], [rows * tiles, n, block, tiles, mode.fp8 ? 1 : 0, { f: NaN }], groups1d(rows * tiles, 1));
  return out;
}

const dequantisedCache = new WeakMap<QuantWeight, Tensor>();

/** The weight's values (codes × scales) on the host, made once per QuantWeight; its data then stays resident. */
export function dequantised(weight: QuantWeight): Tensor {
  let w = dequantisedCache.get(weight);
  if (!w) dequantisedCache.set(weight, (w = weight.scheme === "fp8" ? dequantizeFp8(weight) : dequantizeInt(weight)));
  return w;
}

/** x [..., in] · W'ᵀ with W' the dequantised weight; activations fake-quantised first when asked (always for fp8). */
export function quantLinear(ctx: GpuContext, x: GpuTensor, weight: QuantWeight, activations: boolean): GpuTensor {
  const w = dequantised(weight);
  const resident = { shape: w.shape, buffer: ctx.weight(w.data) };
  if (weight.scheme !== "fp8" && !activations) return linear(ctx, x, resident);
  const xq = fakeQuantize(ctx, x, weight.scheme === "fp8" ? { fp8: true, block: weight.block } : { fp8: false });
  try {
    return linear(ctx, xq, resident);
  } finally {
    ctx.release(xq.buffer);
  }
}
