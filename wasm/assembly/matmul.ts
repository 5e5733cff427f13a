// C = A·B on packed panels. B is stored as ceil(N/8) panels of K rows × 8 columns (zeros past N), so the
// micro-kernel reads one contiguous 32-byte row of its panel per k step; a 4 × 8 tile of C lives in eight f32x4
// accumulators. Blocking over K (KC) keeps the A rows and the current panel in L1; a group of panels of
// L2_PANEL_BYTES (256 KiB: 32 float32 panels of KC rows) stays in L2 while every row block of A passes over it (bench/README.md has the measurements).
// 4 × 8 is the largest tile V8 keeps in registers: its x64 code has 15 vector registers, and it issues a k step's
// broadcasts ahead of their products, so 5 or 6 rows (or two k steps per turn) spill accumulators inside the loop
// and run at half speed (bench/README.md, "Matmul at large n").

import { madd, storeLanes } from "./simd";

export const KC: i32 = 256;
/** Bytes of B panels (a group of KC-row panels) kept in L2 while every row block of A passes over them. */
const L2_PANEL_BYTES: usize = 256 << 10;
/** Bytes of scratch each part of gemm uses (its 4 × KC block of A, interleaved by packA4). */
const GEMM_SCRATCH: usize = 4 * KC * 4;

export function gemmScratch(): i32 {
  return <i32>GEMM_SCRATCH;
}

/** Packs B [K, N] (row stride ldb) into panels at out. */
export function packB(b: usize, K: i32, N: i32, ldb: i32, out: usize): void {
  packPanels(b, K, N, ldb, out, 0, 1);
}

/** packB's panels split over parts, for the pool (a large matmul's B is packed on every call). */
export function packPanels(b: usize, K: i32, N: i32, ldb: i32, out: usize, part: i32, parts: i32): void {
  const panels = (N + 7) >> 3;
  for (let p = (panels * part) / parts; p < (panels * (part + 1)) / parts; p++) {
    const j0 = p << 3;
    const width = min(8, N - j0);
    let dst = out + ((<usize>p * <usize>K) << 5);
    for (let k = 0; k < K; k++) {
      const src = b + ((<usize>k * <usize>ldb + <usize>j0) << 2);
      if (width == 8) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
      } else {
        for (let c = 0; c < 8; c++) store<f32>(dst + (<usize>c << 2), c < width ? load<f32>(src + (<usize>c << 2)) : 0);
      }
      dst += 32;
    }
  }
}

/**
 * gemm's part `part` of `parts` packing its own panels of B [K, N] (row stride ldb) into bp first, when the split
 * falls on panels (panels >= row blocks, or parts = 1; the caller checks): a threaded matmul is then one pool job
 * instead of a packing job, a barrier and a product job, and each panel is packed by the thread that reads it.
 */
export function gemmPackB(M: i32, N: i32, K: i32, a: usize, lda: i32, b: usize, ldb: i32, bp: usize, c: usize, ldc: i32, scratch: usize, part: i32, parts: i32): void {
  packPanels(b, K, N, ldb, bp, part, parts);
  gemm(M, N, K, a, lda, bp, c, ldc, scratch, part, parts);
}

/** Packs Wᵀ for W [N, K] (a linear layer's [out, in] weight, row stride ldw) into the same panels. */
export function packBt(w: usize, N: i32, K: i32, ldw: i32, out: usize): void {
  const panels = (N + 7) >> 3;
  for (let p = 0; p < panels; p++) {
    const base = out + ((<usize>p * <usize>K) << 5);
    for (let c = 0; c < 8; c++) {
      const j = (p << 3) + c;
      let dst = base + (<usize>c << 2);
      if (j < N) {
        let src = w + ((<usize>j * <usize>ldw) << 2);
        for (let k = 0; k < K; k++, src += 4, dst += 32) store<f32>(dst, load<f32>(src));
      } else {
        for (let k = 0; k < K; k++, dst += 32) store<f32>(dst, 0);
      }
    }
  }
}

/** Stores a 4 × 8 tile's accumulators (row r in cr0, cr1) to C[4, width] (rows ldc bytes apart), adding what is there when accumulate is set. */
@inline function storeTile4(c: usize, ldc: usize, width: i32, accumulate: bool, c00: v128, c01: v128, c10: v128, c11: v128, c20: v128, c21: v128, c30: v128, c31: v128): void {
  if (width == 8) {
    v128.store(c, accumulate ? f32x4.add(c00, v128.load(c)) : c00);
    v128.store(c, accumulate ? f32x4.add(c01, v128.load(c, 16)) : c01, 16);
    c += ldc;
    v128.store(c, accumulate ? f32x4.add(c10, v128.load(c)) : c10);
    v128.store(c, accumulate ? f32x4.add(c11, v128.load(c, 16)) : c11, 16);
    c += ldc;
    v128.store(c, accumulate ? f32x4.add(c20, v128.load(c)) : c20);
    v128.store(c, accumulate ? f32x4.add(c21, v128.load(c, 16)) : c21, 16);
    c += ldc;
    v128.store(c, accumulate ? f32x4.add(c30, v128.load(c)) : c30);
    v128.store(c, accumulate ? f32x4.add(c31, v128.load(c, 16)) : c31, 16);
    return;
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

// The panel element type W of the functions below says how B is stored: f32 (packB/packBt's panels, 32 bytes a
// row) or u16, bfloat16 (bf16.ts's packBtBf16: 16 bytes a row, word c holding column c in its low half and column
// c + 4 in its high half). isFloat<W>() is a compile-time constant, so each instance keeps only its own loads: the
// float32 one reads a row as two 16-byte loads, the BF16 one as one load widened in registers (a shift and a mask,
// exact). Both run the same products and sums in the same order, so gemmBf16 is bit-identical to gemm on the
// widened weight (test/bf16-weights.test.ts).

/** Bytes of one panel row (8 columns of one k step). */
@inline function rowBytes<W>(): usize {
  return <usize>sizeof<W>() << 3;
}

/** Columns 0–3 of the panel row whose first 16 bytes are v, as float32. */
@inline function cols03<W>(v: v128): v128 {
  if (isFloat<W>()) return v;
  return i32x4.shl(v, 16);
}

/** Columns 4–7 of the panel row at b whose first 16 bytes are v, as float32. */
@inline function cols47<W>(v: v128, b: usize): v128 {
  if (isFloat<W>()) return v128.load(b, 16);
  return v128.and(v, i32x4.splat(0xffff0000));
}

/**
 * A 4 × 8 tile: C[4, width] (+)= A[4, kc] · panel[kc, 8], strides in bytes. A is what one k step of A holds: f32,
 * rows of A lda bytes apart (tile4), or v128, a block interleaved by packA4 (tile4p; lda unused), whose four rows
 * sit at fixed load offsets, so that its k step has no address arithmetic per row. Both are resolved at compile time.
 */
@inline function tile4Of<W, A>(a: usize, lda: usize, b: usize, kc: i32, c: usize, ldc: usize, width: i32, accumulate: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const lda2 = lda << 1, lda3 = lda2 + lda;
  const end = b + <usize>kc * rowBytes<W>();
  for (; b < end; b += rowBytes<W>()) {
    const v = v128.load(b);
    const b0 = cols03<W>(v), b1 = cols47<W>(v, b);
    let x = v128.load32_splat(a);
    c00 = madd(x, b0, c00);
    c01 = madd(x, b1, c01);
    x = isVector<A>() ? v128.load32_splat(a, 4) : v128.load32_splat(a + lda);
    c10 = madd(x, b0, c10);
    c11 = madd(x, b1, c11);
    x = isVector<A>() ? v128.load32_splat(a, 8) : v128.load32_splat(a + lda2);
    c20 = madd(x, b0, c20);
    c21 = madd(x, b1, c21);
    x = isVector<A>() ? v128.load32_splat(a, 12) : v128.load32_splat(a + lda3);
    c30 = madd(x, b0, c30);
    c31 = madd(x, b1, c31);
    a += sizeof<A>();
  }
  storeTile4(c, ldc, width, accumulate, c00, c01, c10, c11, c20, c21, c30, c31);
}

/** A 4 × 8 tile on float32 panels: C[4, width] (+)= A[4, kc] · panel[kc, 8], A's rows lda bytes apart. Strides in bytes. */
@inline export function tile4(a: usize, lda: usize, b: usize, kc: i32, c: usize, ldc: usize, width: i32, accumulate: bool): void {
  tile4Of<f32, f32>(a, lda, b, kc, c, ldc, width, accumulate);
}

/**
 * A 4 × kc block of A (rows lda bytes apart) interleaved into out: out[4k + r] = A[r, k], so that tile4p's four
 * broadcasts of a k step read one 16-byte group at fixed offsets (no address arithmetic per row). Four k steps
 * at a time as a 4 × 4 transpose.
 */
@inline function packA4(a: usize, lda: usize, kc: i32, out: usize): void {
  const a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda;
  const end = <usize>kc << 2;
  let k: usize = 0;
  for (; k + 16 <= end; k += 16) {
    const r0 = v128.load(a + k), r1 = v128.load(a1 + k), r2 = v128.load(a2 + k), r3 = v128.load(a3 + k);
    const t0 = i8x16.shuffle(r0, r1, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const t1 = i8x16.shuffle(r0, r1, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const t2 = i8x16.shuffle(r2, r3, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const t3 = i8x16.shuffle(r2, r3, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const o = out + (k << 2);
    v128.store(o, i64x2.shuffle(t0, t2, 0, 2));
    v128.store(o, i64x2.shuffle(t0, t2, 1, 3), 16);
    v128.store(o, i64x2.shuffle(t1, t3, 0, 2), 32);
    v128.store(o, i64x2.shuffle(t1, t3, 1, 3), 48);
  }
  for (; k < end; k += 4) {
    const o = out + (k << 2);
    store<f32>(o, load<f32>(a + k));
    store<f32>(o, load<f32>(a1 + k), 4);
    store<f32>(o, load<f32>(a2 + k), 8);
    store<f32>(o, load<f32>(a3 + k), 12);
  }
}

/** tile4 on a block of A interleaved by packA4 (the same products and sums in the same order, fewer instructions). */
@inline function tile4p<W>(ap: usize, b: usize, kc: i32, c: usize, ldc: usize, width: i32, accumulate: bool): void {
  tile4Of<W, v128>(ap, 0, b, kc, c, ldc, width, accumulate);
}

/** One row: C[1, width] (+)= A[1, kc] · panel[kc, 8], for the rows left over after blocks of 4. */
@inline function tile1<W>(a: usize, b: usize, kc: i32, c: usize, width: i32, accumulate: bool): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  const end = <usize>kc << 2;
  let k: usize = 0;
  for (; k + 8 <= end; k += 8) { // two k steps per turn: two independent chains hide the add latency
    const x = v128.load32_splat(a + k), y = v128.load32_splat(a + k + 4);
    const u = v128.load(b), v = v128.load(b, rowBytes<W>());
    c0 = madd(x, cols03<W>(u), c0);
    c1 = madd(x, cols47<W>(u, b), c1);
    d0 = madd(y, cols03<W>(v), d0);
    d1 = madd(y, cols47<W>(v, b + rowBytes<W>()), d1);
    b += rowBytes<W>() << 1;
  }
  if (k < end) {
    const x = v128.load32_splat(a + k);
    const u = v128.load(b);
    c0 = madd(x, cols03<W>(u), c0);
    c1 = madd(x, cols47<W>(u, b), c1);
  }
  c0 = f32x4.add(c0, d0);
  c1 = f32x4.add(c1, d1);
  const w0 = min(width, 4);
  storeLanes(c, c0, w0, accumulate);
  storeLanes(c + 16, c1, width - w0, accumulate);
}

/**
 * C[M, N] = A[M, K] · B, B packed at bp (packB/packBt), strides in elements; scratch holds GEMM_SCRATCH bytes per part. Part `part` of `parts` computes its
 * share along the dimension with more tiles: blocks of 4 rows, or panels of 8 columns (a decode step has one
 * row, and splitting panels then also splits the weight each thread streams).
 */
export function gemm(M: i32, N: i32, K: i32, a: usize, lda: i32, bp: usize, c: usize, ldc: i32, scratch: usize, part: i32, parts: i32): void {
  gemmPanels<f32>(M, N, K, a, lda, bp, c, ldc, scratch, part, parts);
}

/** gemm over panels of element type W (f32, or u16 for bf16.ts's BF16 panels); the panel group keeps L2_PANEL_BYTES. */
@inline export function gemmPanels<W>(M: i32, N: i32, K: i32, a: usize, lda: i32, bp: usize, c: usize, ldc: i32, scratch: usize, part: i32, parts: i32): void {
  const ncp = <i32>(L2_PANEL_BYTES / (<usize>KC * rowBytes<W>()));
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
    for (let g0 = p0; g0 < p1; g0 += ncp) {
      const g1 = min(g0 + ncp, p1);
      let i = r0;
      for (; i + 4 <= r1; i += 4) {
        // The block of 4 × kc is interleaved into scratch first (packA4): one pointer for the tile's four rows, and
        // rows of a wide A no longer sit multiples of 4 KiB apart, where their loads alias the stores to C.
        packA4(a + <usize>i * ldaB + (<usize>k0 << 2), ldaB, kc, scratch);
        const ci = c + <usize>i * ldcB;
        for (let p = g0; p < g1; p++) {
          const bpk = bp + (<usize>p * <usize>K + <usize>k0) * rowBytes<W>();
          tile4p<W>(scratch, bpk, kc, ci + (<usize>p << 5), ldcB, min(8, N - (p << 3)), accumulate);
        }
      }
      for (; i < r1; i++) {
        const ai = a + <usize>i * ldaB + (<usize>k0 << 2);
        const ci = c + <usize>i * ldcB;
        for (let p = g0; p < g1; p++) {
          const bpk = bp + (<usize>p * <usize>K + <usize>k0) * rowBytes<W>();
          tile1<W>(ai, bpk, kc, ci + (<usize>p << 5), min(8, N - (p << 3)), accumulate);
        }
      }
    }
  }
}
