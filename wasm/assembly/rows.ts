// Row reductions: softmax and RMSNorm over rows of float32 buffers, four lanes at a time with a scalar tail.
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
