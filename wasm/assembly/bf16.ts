// The matmul kernel (matmul.ts) over a weight stored as bfloat16: half the bytes a decode step streams. A BF16
// value is the top 16 bits of a float32, so widening it is a shift and exact; every product and sum below is the
// float32 kernel's, in the same order (same K blocks, same tiles, same two chains in the one-row tile), so the
// result is bit-identical to gemm's on the widened weight. Keep the two in step: test/bf16-weights.test.ts compares
// them bit for bit.
//
// Panels: like packBt's, ceil(N/8) panels of K rows × 8 columns, but one row is 16 bytes: four u32 words, word c
// holding column c in its low half and column c + 4 in its high half. Then columns 0–3 are the words shifted left
// by 16 and columns 4–7 the words with their low half masked off: one load and two operations per k step.

import { KC } from "./matmul";
import { madd, storeLanes } from "./simd";

const NCP: i32 = 64; // panels kept in L2 while the row blocks pass: 64 × KC × 16 bytes, as matmul.ts's 256 KiB
const GEMM_SCRATCH: usize = 4 * KC * 4;

/** Packs Wᵀ for W [N, K] (float32, row stride ldw, every value exactly a BF16) into BF16 panels at out. */
export function packBtBf16(w: usize, N: i32, K: i32, ldw: i32, out: usize): void {
  const panels = (N + 7) >> 3;
  for (let p = 0; p < panels; p++) {
    const base = out + ((<usize>p * <usize>K) << 4);
    for (let c = 0; c < 4; c++) {
      const lo = (p << 3) + c, hi = lo + 4;
      let dst = base + (<usize>c << 2);
      const srcLo = w + ((<usize>lo * <usize>ldw) << 2), srcHi = w + ((<usize>hi * <usize>ldw) << 2);
      for (let k = 0; k < K; k++, dst += 16) {
        const low: u32 = lo < N ? load<u32>(srcLo + (<usize>k << 2)) >>> 16 : 0;
        const high: u32 = hi < N ? load<u32>(srcHi + (<usize>k << 2)) & 0xffff0000 : 0;
        store<u32>(dst, low | high);
      }
    }
  }
}

/** Columns 0–3 of a packed row as float32. */
@inline function low4(v: v128): v128 {
  return i32x4.shl(v, 16);
}

/** Columns 4–7 of a packed row as float32. */
@inline function high4(v: v128): v128 {
  return v128.and(v, i32x4.splat(0xffff0000));
}

/** matmul.ts's tile4 on a BF16 panel (16 bytes a k step). */
@inline function tile4(a: usize, lda: usize, b: usize, kc: i32, c: usize, ldc: usize, width: i32, accumulate: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda;
  const end = <usize>kc << 2;
  for (let k: usize = 0; k < end; k += 4) {
    const v = v128.load(b);
    const b0 = low4(v), b1 = high4(v);
    let x = v128.load32_splat(a + k);
    c00 = madd(x, b0, c00);
    c01 = madd(x, b1, c01);
    x = v128.load32_splat(a1 + k);
    c10 = madd(x, b0, c10);
    c11 = madd(x, b1, c11);
    x = v128.load32_splat(a2 + k);
    c20 = madd(x, b0, c20);
    c21 = madd(x, b1, c21);
    x = v128.load32_splat(a3 + k);
    c30 = madd(x, b0, c30);
    c31 = madd(x, b1, c31);
    b += 16;
  }
  const w0 = min(width, 4), w1 = width - w0;
  storeLanes(c, c00, w0, accumulate);
  storeLanes(c + 16, c01, w1, accumulate);
  c += ldc;
  storeLanes(c, c10, w0, accumulate);
  storeLanes(c + 16, c11, w1, accumulate);
  c += ldc;
  storeLanes(c, c20, w0, accumulate);
  storeLanes(c + 16, c21, w1, accumulate);
  c += ldc;
  storeLanes(c, c30, w0, accumulate);
  storeLanes(c + 16, c31, w1, accumulate);
}

/** matmul.ts's tile1 on a BF16 panel: the same two chains over even and odd k, added at the end. */
@inline function tile1(a: usize, b: usize, kc: i32, c: usize, width: i32, accumulate: bool): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  const end = <usize>kc << 2;
  let k: usize = 0;
  for (; k + 8 <= end; k += 8) {
    const x = v128.load32_splat(a + k), y = v128.load32_splat(a + k + 4);
    const v = v128.load(b), u = v128.load(b, 16);
    c0 = madd(x, low4(v), c0);
    c1 = madd(x, high4(v), c1);
    d0 = madd(y, low4(u), d0);
    d1 = madd(y, high4(u), d1);
    b += 32;
  }
  if (k < end) {
    const x = v128.load32_splat(a + k);
    const v = v128.load(b);
    c0 = madd(x, low4(v), c0);
    c1 = madd(x, high4(v), c1);
  }
  c0 = f32x4.add(c0, d0);
  c1 = f32x4.add(c1, d1);
  const w0 = min(width, 4);
  storeLanes(c, c0, w0, accumulate);
  storeLanes(c + 16, c1, width - w0, accumulate);
}

/**
 * C[M, N] = A[M, K] · B with B in BF16 panels at bp (packBtBf16): matmul.ts's gemm, with its arguments, its split
 * over parts (row blocks of 4 or panels of 8) and its scratch of GEMM_SCRATCH bytes per part.
 */
export function gemmBf16(M: i32, N: i32, K: i32, a: usize, lda: i32, bp: usize, c: usize, ldc: i32, scratch: usize, part: i32, parts: i32): void {
  scratch += <usize>part * GEMM_SCRATCH;
  const panels = (N + 7) >> 3, blocks = (M + 3) >> 2;
  let r0 = 0, r1 = M, p0 = 0, p1 = panels;
  if (parts > 1) {
    if (panels >= blocks) {
      p0 = (panels * part) / parts;
      p1 = (panels * (part + 1)) / parts;
    } else {
      r0 = min(M, ((blocks * part) / parts) << 2);
      r1 = min(M, ((blocks * (part + 1)) / parts) << 2);
    }
  }
  const ldaB = <usize>lda << 2, ldcB = <usize>ldc << 2;
  if (K == 0) {
    for (let i = r0; i < r1; i++) {
      for (let j = p0 << 3; j < min(N, p1 << 3); j++) store<f32>(c + <usize>i * ldcB + (<usize>j << 2), 0);
    }
    return;
  }
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = min(KC, K - k0);
    const accumulate = k0 > 0;
    for (let g0 = p0; g0 < p1; g0 += NCP) {
      const g1 = min(g0 + NCP, p1);
      let i = r0;
      for (; i + 4 <= r1; i += 4) {
        // As gemm: a wide A's block is copied contiguous first (its rows' loads would alias the stores to C).
        let ai = a + <usize>i * ldaB + (<usize>k0 << 2);
        let stride = ldaB;
        if (lda >= 512) {
          const rowBytes = <usize>kc << 2;
          for (let r: usize = 0; r < 4; r++) memory.copy(scratch + r * rowBytes, ai + r * ldaB, rowBytes);
          ai = scratch;
          stride = rowBytes;
        }
        const ci = c + <usize>i * ldcB;
        for (let p = g0; p < g1; p++) {
          const bpk = bp + ((<usize>p * <usize>K + <usize>k0) << 4);
          tile4(ai, stride, bpk, kc, ci + (<usize>p << 5), ldcB, min(8, N - (p << 3)), accumulate);
        }
      }
      for (; i < r1; i++) {
        const ai = a + <usize>i * ldaB + (<usize>k0 << 2);
        const ci = c + <usize>i * ldcB;
        for (let p = g0; p < g1; p++) {
          const bpk = bp + ((<usize>p * <usize>K + <usize>k0) << 4);
          tile1(ai, bpk, kc, ci + (<usize>p << 5), min(8, N - (p << 3)), accumulate);
        }
      }
    }
  }
}
