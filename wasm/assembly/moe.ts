// The routed experts of one MoE call (wasm/kernels/moe.ts moeAt plans them on the host): each item of a table is
// one expert with its tokens (or a block of them), and running an item is that expert's whole chain on them: their
// rows gathered, the gate and up products, SwiGLU, the down product. Items are independent (each writes only its own
// rows of the buffers, and a product's rows do not depend on each other), so a call's items can run on any threads
// in any order with the same bits: the pool runs item `part` of `parts`, the calling thread alone a one-item table.
// The weighted float64 sum over a token's experts (moeCombine) runs after them on the calling thread, in one fixed
// order.
//
// An item is MOE_ITEM i32 words: from (its first row in the call's sorted assignments), n (its rows), the packed
// gate, up and down panels' addresses, and kinds (bit 0, 1, 2: that weight's panels are BF16, wasm/assembly/bf16.ts).

import { gemmBf16 } from "./bf16";
import { swiglu } from "./elementwise";
import { gemm, gemmScratch } from "./matmul";

const MOE_ITEM: usize = 6;

/** out [M, N] = a [M, K] · the panels at bp, on this thread (part 0 of 1). */
@inline function product(M: i32, N: i32, K: i32, a: usize, bp: usize, bf16: bool, out: usize, scratch: usize): void {
  if (bf16) gemmBf16(M, N, K, a, K, bp, out, N, scratch, 0, 1);
  else gemm(M, N, K, a, K, bp, out, N, scratch, 0, 1);
}

/**
 * Item `part` of the table at items: rows[from + i] (i32 token indices) of x [·, D] gathered into xs, then
 * gs = xs · gateᵀ, us = xs · upᵀ, gs = SwiGLU(gs, us), ys = gs · downᵀ, each buffer at the item's own rows
 * (xs, ys [·, D], gs, us [·, F]); scratch holds gemmScratch() bytes per part. `parts` (the pool's last argument)
 * is not needed: an item is found by its index alone.
 */
export function moeExperts(items: usize, rows: usize, x: usize, D: i32, F: i32, xs: usize, gs: usize, us: usize, ys: usize,
  scratch: usize, part: i32, parts: i32): void {
  const item = items + ((<usize>part * MOE_ITEM) << 2);
  const from = <usize>load<i32>(item), n = load<i32>(item, 4);
  const gate = <usize>load<u32>(item, 8), up = <usize>load<u32>(item, 12), down = <usize>load<u32>(item, 16);
  const kinds = load<i32>(item, 20);
  const d = <usize>D, f = <usize>F;
  const xe = xs + ((from * d) << 2), ge = gs + ((from * f) << 2), ue = us + ((from * f) << 2), ye = ys + ((from * d) << 2);
  for (let i: usize = 0; i < <usize>n; i++) {
    const token = <usize>load<i32>(rows + ((from + i) << 2));
    memory.copy(xe + ((i * d) << 2), x + ((token * d) << 2), d << 2);
  }
  const s = scratch + <usize>part * <usize>gemmScratch();
  product(n, F, D, xe, gate, (kinds & 1) != 0, ge, s);
  product(n, F, D, xe, up, (kinds & 2) != 0, ue, s);
  swiglu(ge, ue, n * F, ge);
  product(n, D, F, ge, down, (kinds & 4) != 0, ye, s);
}

/**
 * out [N, D] = Σ over the kept assignments j < kept, in the order given, of weights[j] · ys[j] added to row rows[j]
 * (the token it came from): each sum in float64 (sum holds N·D of them) as the reference sums, every product and
 * addition rounded as the host's float64 arithmetic rounds it, then each element rounded to float32 once.
 */
export function moeCombine(kept: i32, rows: usize, weights: usize, ys: usize, N: i32, D: i32, sum: usize, out: usize): void {
  const d = <usize>D, n = <usize>N * d;
  memory.fill(sum, 0, n << 3);
  for (let j: usize = 0; j < <usize>kept; j++) {
    const w = <f64>load<f32>(weights + (j << 2));
    const y = ys + ((j * d) << 2), s = sum + ((<usize>load<i32>(rows + (j << 2)) * d) << 3);
    for (let i: usize = 0; i < d; i++) store<f64>(s + (i << 3), load<f64>(s + (i << 3)) + w * <f64>load<f32>(y + (i << 2)));
  }
  for (let i: usize = 0; i < n; i++) store<f32>(out + (i << 2), <f32>load<f64>(sum + (i << 3)));
}
