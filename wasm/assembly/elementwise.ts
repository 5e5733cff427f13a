// Element-wise kernels: RoPE, SiLU and SwiGLU over float32 buffers, four lanes at a time with a scalar tail.
// Pointers are byte addresses in the shared memory; counts are elements.

import { exp4 } from "./simd";

/**
 * RoPE on adjacent pairs: x [planes, T, dim], tables cosines and sines [T, dim/2], one angle per pair (the layout
 * of src/rope.ts rotaryTable). Four lanes hold two pairs: out = x·(c, c) + swap_pairs(x)·(-s, s).
 */
export function rope(x: usize, cosines: usize, sines: usize, planes: i32, T: i32, dim: i32, out: usize): void {
  const plane = <usize>T * <usize>dim;
  const p4 = plane & ~3;
  const sign = f32x4(-1, 1, -1, 1);
  for (let b = 0; b < planes; b++) {
    const xb = x + ((<usize>b * plane) << 2), yb = out + ((<usize>b * plane) << 2);
    let j: usize = 0;
    for (; j < p4; j += 4) {
      // Element j is pair j / 2: its table entries sit at byte (j / 2)·4 = j·2.
      const c2 = v128.load64_zero(cosines + (j << 1)), s2 = v128.load64_zero(sines + (j << 1));
      const c = i32x4.shuffle(c2, c2, 0, 0, 1, 1);
      const s = f32x4.mul(i32x4.shuffle(s2, s2, 0, 0, 1, 1), sign);
      const v = v128.load(xb + (j << 2));
      const swapped = i32x4.shuffle(v, v, 1, 0, 3, 2);
      v128.store(yb + (j << 2), f32x4.add(f32x4.mul(v, c), f32x4.mul(swapped, s)));
    }
    for (; j < plane; j += 2) { // dim is even, so a tail holds whole pairs
      const re = load<f32>(xb + (j << 2)), im = load<f32>(xb + (j << 2), 4);
      const c = load<f32>(cosines + (j << 1)), s = load<f32>(sines + (j << 1));
      store<f32>(yb + (j << 2), re * c - im * s);
      store<f32>(yb + (j << 2), re * s + im * c, 4);
    }
  }
}

/**
 * RoPE on the two halves ("rotate half", DeepSeek-V3.2's indexer): pair i of a row is (i, i + dim/2), turned by the
 * angle of table entry i, with the tables of rope above. Four pairs at a time: the lanes of each half are contiguous.
 */
export function ropeHalves(x: usize, cosines: usize, sines: usize, planes: i32, T: i32, dim: i32, out: usize): void {
  const half = <usize>(dim >> 1), h4 = half & ~3;
  const rows = <usize>planes * <usize>T;
  for (let r: usize = 0; r < rows; r++) {
    const xr = x + ((r * <usize>dim) << 2), yr = out + ((r * <usize>dim) << 2);
    const t = r % <usize>T;
    const cr = cosines + ((t * half) << 2), sr = sines + ((t * half) << 2);
    let i: usize = 0;
    for (; i < h4; i += 4) {
      const c = v128.load(cr + (i << 2)), s = v128.load(sr + (i << 2));
      const re = v128.load(xr + (i << 2)), im = v128.load(xr + ((i + half) << 2));
      v128.store(yr + (i << 2), f32x4.sub(f32x4.mul(re, c), f32x4.mul(im, s)));
      v128.store(yr + ((i + half) << 2), f32x4.add(f32x4.mul(re, s), f32x4.mul(im, c)));
    }
    for (; i < half; i++) {
      const c = load<f32>(cr + (i << 2)), s = load<f32>(sr + (i << 2));
      const re = load<f32>(xr + (i << 2)), im = load<f32>(xr + ((i + half) << 2));
      store<f32>(yr + (i << 2), re * c - im * s);
      store<f32>(yr + ((i + half) << 2), re * s + im * c);
    }
  }
}

/** SiLU: v / (1 + e^-v). */
export function silu(x: usize, n: i32, out: usize): void {
  const count = <usize>n, n4 = count & ~3;
  const one = f32x4.splat(1);
  let j: usize = 0;
  for (; j < n4; j += 4) {
    const v = v128.load(x + (j << 2));
    v128.store(out + (j << 2), f32x4.div(v, f32x4.add(one, exp4(f32x4.neg(v)))));
  }
  for (; j < count; j++) {
    const v = load<f32>(x + (j << 2));
    store<f32>(out + (j << 2), <f32>(<f64>v / (1 + Math.exp(-<f64>v))));
  }
}

/** SwiGLU's gating: silu(gate) ⊙ up. */
export function swiglu(gate: usize, up: usize, n: i32, out: usize): void {
  const count = <usize>n, n4 = count & ~3;
  const one = f32x4.splat(1);
  let j: usize = 0;
  for (; j < n4; j += 4) {
    const g = v128.load(gate + (j << 2));
    const s = f32x4.div(g, f32x4.add(one, exp4(f32x4.neg(g))));
    v128.store(out + (j << 2), f32x4.mul(s, v128.load(up + (j << 2))));
  }
  for (; j < count; j++) {
    const g = <f64>load<f32>(gate + (j << 2));
    store<f32>(out + (j << 2), <f32>((g / (1 + Math.exp(-g))) * <f64>load<f32>(up + (j << 2))));
  }
}
