// The matmul kernel (matmul.ts) over a weight stored as bfloat16: half the bytes a decode step streams. A BF16
// value is the top 16 bits of a float32, so widening it is a shift and exact. gemmBf16 is matmul.ts's gemm loop
// itself (gemmPanels, generic over the panel's element type), so every product and sum is the float32 kernel's, in
// the same order, and the result is bit-identical to gemm's on the widened weight (test/bf16-weights.test.ts).
//
// Panels: like packBt's, ceil(N/8) panels of K rows × 8 columns, but one row is 16 bytes: four u32 words, word c
// holding column c in its low half and column c + 4 in its high half. Then columns 0–3 are the words shifted left
// by 16 and columns 4–7 the words with their low half masked off: one load and two operations per k step.

import { gemmPanels } from "./matmul";

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

/**
 * C[M, N] = A[M, K] · B with B in BF16 panels at bp (packBtBf16): matmul.ts's gemm, with its arguments, its split
 * over parts (row blocks of 4 or panels of 8) and its scratch (gemmScratch() bytes per part).
 */
export function gemmBf16(M: i32, N: i32, K: i32, a: usize, lda: i32, bp: usize, c: usize, ldc: i32, scratch: usize, part: i32, parts: i32): void {
  gemmPanels<u16>(M, N, K, a, lda, bp, c, ldc, scratch, part, parts);
}
