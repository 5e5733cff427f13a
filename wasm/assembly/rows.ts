// Row reductions: softmax, RMSNorm and LayerNorm over rows of float32 buffers, four lanes at a time with a scalar tail.
// Pointers are byte addresses in the shared memory; counts are elements.

import { exp4, hmax, hsum } from "./simd";

const NEG_INF = f32x4.splat(-Infinity);

/** Lanes of x[j..j+3] that are visible: flag byte set (when flags != 0) and x not -Infinity. */
@inline function visible4(x: v128, flags: usize, j: usize): v128 {
  let seen = f32x4.ne(x, NEG_INF);
  if (flags != 0) {
    const bytes = v128.load32_zero(flags + j);
    const wide = i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(bytes));
    seen = v128.and(seen, i32x4.ne(wide, i32x4.splat(0)));
  }
  return seen;
}

@inline function visible1(x: f32, flags: usize, j: usize): bool {
  return x != -Infinity && (flags == 0 || load<u8>(flags + j) != 0);
}

/** Softmax over rows of N; hidden entries (flag 0 or -Infinity) get 0, a row with none visible is all zeros. */
export function softmax(x: usize, flags: usize, rows: i32, N: i32, out: usize): void {
  const n = <usize>N;
  const n4 = n & ~3;
  for (let r = 0; r < rows; r++) {
    const xr = x + ((<usize>r * n) << 2), yr = out + ((<usize>r * n) << 2);
    const fr: usize = flags == 0 ? 0 : flags + <usize>r * n;
    let m4 = NEG_INF;
    let j: usize = 0;
    for (; j < n4; j += 4) {
      const v = v128.load(xr + (j << 2));
      m4 = f32x4.max(m4, v128.bitselect(v, NEG_INF, visible4(v, fr, j)));
    }
    let m = hmax(m4);
    for (; j < n; j++) {
      const v = load<f32>(xr + (j << 2));
      if (visible1(v, fr, j)) m = max(m, v);
    }
    if (m == -Infinity) {
      memory.fill(yr, 0, n << 2);
      continue;
    }
    const mv = f32x4.splat(m);
    let s4 = f32x4.splat(0);
    for (j = 0; j < n4; j += 4) {
      const v = v128.load(xr + (j << 2));
      const e = v128.and(exp4(f32x4.sub(v, mv)), visible4(v, fr, j));
      v128.store(yr + (j << 2), e);
      s4 = f32x4.add(s4, e);
    }
    let s = hsum(s4);
    for (; j < n; j++) {
      const v = load<f32>(xr + (j << 2));
      const e: f32 = visible1(v, fr, j) ? <f32>Math.exp(<f64>(v - m)) : 0;
      store<f32>(yr + (j << 2), e);
      s += e;
    }
    const inv = f32x4.splat(<f32>(1.0 / <f64>s));
    for (j = 0; j < n4; j += 4) v128.store(yr + (j << 2), f32x4.mul(v128.load(yr + (j << 2)), inv));
    for (; j < n; j++) store<f32>(yr + (j << 2), load<f32>(yr + (j << 2)) * f32x4.extract_lane(inv, 0));
  }
}

/** RMSNorm over rows of D: x / sqrt(mean(x²) + eps) · w. */
export function rmsnorm(x: usize, w: usize, rows: i32, D: i32, eps: f32, out: usize): void {
  const d = <usize>D, d4 = d & ~3;
  for (let r = 0; r < rows; r++) {
    const xr = x + ((<usize>r * d) << 2), yr = out + ((<usize>r * d) << 2);
    let s4 = f32x4.splat(0);
    let j: usize = 0;
    for (; j < d4; j += 4) {
      const v = v128.load(xr + (j << 2));
      s4 = f32x4.add(s4, f32x4.mul(v, v));
    }
    let s = <f64>hsum(s4);
    for (; j < d; j++) {
      const v = <f64>load<f32>(xr + (j << 2));
      s += v * v;
    }
    const inv = <f32>(1.0 / Math.sqrt(s / <f64>D + <f64>eps));
    const iv = f32x4.splat(inv);
    for (j = 0; j < d4; j += 4) {
      v128.store(yr + (j << 2), f32x4.mul(f32x4.mul(v128.load(xr + (j << 2)), iv), v128.load(w + (j << 2))));
    }
    for (; j < d; j++) store<f32>(yr + (j << 2), load<f32>(xr + (j << 2)) * inv * load<f32>(w + (j << 2)));
  }
}

/**
 * LayerNorm over rows of D: (x - mean) / sqrt(var + eps) · w + b. In float64 two lanes at a time, rounded once on
 * store, as the reference computes it: where a row's values nearly agree, a float32 mean's error would be magnified
 * by 1/sqrt(var + eps) (up to 1000 at eps 1e-6), and float64 costs little at the widths it runs on (indexer keys).
 */
export function layernorm(x: usize, w: usize, b: usize, rows: i32, D: i32, eps: f64, out: usize): void {
  const d = <usize>D, d4 = d & ~3;
  for (let r = 0; r < rows; r++) {
    const xr = x + ((<usize>r * d) << 2), yr = out + ((<usize>r * d) << 2);
    let s2 = f64x2.splat(0);
    let j: usize = 0;
    for (; j < d4; j += 4) {
      const v = v128.load(xr + (j << 2));
      s2 = f64x2.add(s2, f64x2.add(f64x2.promote_low_f32x4(v), f64x2.promote_low_f32x4(highHalf(v))));
    }
    let sum = f64x2.extract_lane(s2, 0) + f64x2.extract_lane(s2, 1);
    for (; j < d; j++) sum += <f64>load<f32>(xr + (j << 2));
    const mean = sum / <f64>D;
    const m2 = f64x2.splat(mean);
    let q2 = f64x2.splat(0);
    for (j = 0; j < d4; j += 4) {
      const v = v128.load(xr + (j << 2));
      const lo = f64x2.sub(f64x2.promote_low_f32x4(v), m2), hi = f64x2.sub(f64x2.promote_low_f32x4(highHalf(v)), m2);
      q2 = f64x2.add(q2, f64x2.add(f64x2.mul(lo, lo), f64x2.mul(hi, hi)));
    }
    let squares = f64x2.extract_lane(q2, 0) + f64x2.extract_lane(q2, 1);
    for (; j < d; j++) {
      const c = <f64>load<f32>(xr + (j << 2)) - mean;
      squares += c * c;
    }
    const inv = 1.0 / Math.sqrt(squares / <f64>D + eps);
    const i2 = f64x2.splat(inv);
    for (j = 0; j < d4; j += 4) {
      const v = v128.load(xr + (j << 2)), wv = v128.load(w + (j << 2)), bv = v128.load(b + (j << 2));
      const lo = normalised2(f64x2.promote_low_f32x4(v), m2, i2, f64x2.promote_low_f32x4(wv), f64x2.promote_low_f32x4(bv));
      const hi = normalised2(f64x2.promote_low_f32x4(highHalf(v)), m2, i2, f64x2.promote_low_f32x4(highHalf(wv)), f64x2.promote_low_f32x4(highHalf(bv)));
      v128.store(yr + (j << 2), i32x4.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
    }
    for (; j < d; j++) {
      const y = (<f64>load<f32>(xr + (j << 2)) - mean) * inv * <f64>load<f32>(w + (j << 2)) + <f64>load<f32>(b + (j << 2));
      store<f32>(yr + (j << 2), <f32>y);
    }
  }
}

/** (x - mean)·inv·w + b on two float64 lanes. */
@inline function normalised2(x: v128, mean: v128, inv: v128, w: v128, b: v128): v128 {
  return f64x2.add(f64x2.mul(f64x2.mul(f64x2.sub(x, mean), inv), w), b);
}

/** Lanes 2 and 3 of v moved to lanes 0 and 1 (for promote_low). */
@inline function highHalf(v: v128): v128 {
  return i32x4.shuffle(v, v, 2, 3, 2, 3);
}

/**
 * Rows of every plane of x [A, N, D] into out [A, n, D]: plane a's row r is rows[a·step + r] (step 0: every plane
 * takes the same n rows). A run of consecutive rows (a selected block) is one copy.
 */
export function gatherRows(x: usize, rows: usize, A: i32, N: i32, n: i32, D: i32, step: i32, out: usize): void {
  for (let a = 0; a < A; a++) {
    const list = rows + (<usize>(a * step) << 2);
    let r = 0;
    while (r < n) {
      const first = load<i32>(list + (<usize>r << 2));
      let run = 1;
      while (r + run < n && load<i32>(list + (<usize>(r + run) << 2)) == first + run) run++;
      memory.copy(out + (<usize>((a * n + r) * D) << 2), x + (<usize>((a * N + first) * D) << 2), <usize>(run * D) << 2);
      r += run;
    }
  }
}
