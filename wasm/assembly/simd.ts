// Vector helpers shared by the kernels: exp over four lanes and horizontal reductions. SIMD128 has neither.

/**
 * e^x on four lanes (Cephes expf): x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n by building
 * the exponent bits. About 1 ulp on [-87, 88]; -Infinity and anything below the smallest normal result give 0,
 * anything above the largest gives +Infinity, as the reference's Math.exp does after rounding to float32.
 */
@inline export function exp4(x: v128): v128 {
  const low = f32x4.lt(x, f32x4.splat(-87.33654));
  const high = f32x4.gt(x, f32x4.splat(88.72283));
  // pmin/pmax are one instruction each; min/max carry NaN rules that cost several (the masks handle the ends).
  const xc = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.33654)), f32x4.splat(88.72283));
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1.0));
  // 2^n split as 2^(n - n/2)·2^(n/2) so that n = 128 (x near 88.7) does not overflow the exponent field.
  const ni = i32x4.trunc_sat_f32x4_s(n);
  const half = i32x4.shr_s(ni, 1);
  const scale1 = i32x4.shl(i32x4.add(half, i32x4.splat(127)), 23);
  const scale2 = i32x4.shl(i32x4.add(i32x4.sub(ni, half), i32x4.splat(127)), 23);
  const y = f32x4.mul(f32x4.mul(p, scale1), scale2);
  const inf = f32x4.splat(Infinity);
  return v128.andnot(v128.bitselect(inf, y, high), low);
}

/**
 * a·b + c on four lanes. The relaxed-SIMD build (wasm/build/tinyseek.relaxed.wasm) fuses it into one FMA where
 * the CPU has one (one rounding instead of two, and half the instructions of the matmul inner loop); SIMD128 has
 * no FMA, so the default build multiplies and adds.
 */
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

@inline export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline export function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/** Stores the first n (0..4) lanes of v at p, adding what is there when accumulate is set. */
@inline export function storeLanes(p: usize, v: v128, n: i32, accumulate: bool): void {
  if (n >= 4) {
    v128.store(p, accumulate ? f32x4.add(v, v128.load(p)) : v);
    return;
  }
  if (n > 0) store<f32>(p, f32x4.extract_lane(v, 0) + (accumulate ? load<f32>(p) : 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1) + (accumulate ? load<f32>(p, 4) : 0), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2) + (accumulate ? load<f32>(p, 8) : 0), 8);
}
