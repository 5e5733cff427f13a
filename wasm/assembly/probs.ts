// Attention split in two, for a caller that reads the probabilities (NSA's compressed branch chooses its selected
// blocks from them): attentionProbs writes softmax(scale·q·kᵀ) over each query's visible keys, attendWith multiplies
// probabilities by values. Both run once per NSA layer per decode token on tiny shapes (a few heads over some tens of
// compressed blocks), so they are direct, with no packing and no scratch: dot products and weighted sums in four lanes.

import { exp4, hsum, madd } from "./simd";

const ZERO = f32x4.splat(0);

/**
 * q [H, Tq, Dh], k [Hkv, kvRows, Dh] (the first Tk rows read) → out [H, Tq, Tk]: row (h, i) is the softmax of
 * scale·q[h, i]·k[h / (H / Hkv), j] over j <= offset + i, 0 after; a row that sees no key is zeros. Every element
 * is written.
 */
export function attentionProbs(q: usize, k: usize, out: usize, H: i32, Hkv: i32, Tq: i32, Tk: i32, kvRows: i32, Dh: i32, scale: f32, offset: i32): void {
  const group = H / Hkv, d4 = Dh & ~3;
  for (let h = 0; h < H; h++) {
    const kBase = k + ((<usize>(h / group) * <usize>kvRows * <usize>Dh) << 2);
    for (let i = 0; i < Tq; i++) {
      const qr = q + ((<usize>(h * Tq + i) * <usize>Dh) << 2);
      const row = out + ((<usize>(h * Tq + i) * <usize>Tk) << 2);
      const seen = max(0, min(Tk, offset + i + 1));
      let m: f32 = -Infinity;
      for (let j = 0; j < seen; j++) {
        const kr = kBase + ((<usize>j * <usize>Dh) << 2);
        let acc = ZERO;
        let d = 0;
        for (; d < d4; d += 4) acc = madd(v128.load(qr + (<usize>d << 2)), v128.load(kr + (<usize>d << 2)), acc);
        let dot = hsum(acc);
        for (; d < Dh; d++) dot += load<f32>(qr + (<usize>d << 2)) * load<f32>(kr + (<usize>d << 2));
        const s = dot * scale;
        store<f32>(row + (<usize>j << 2), s);
        m = max(m, s);
      }
      // Weights e^(s - m) in place, four at a time, then divided by their sum.
      const mv = f32x4.splat(m), j4 = seen & ~3;
      let sum = ZERO;
      let j = 0;
      for (; j < j4; j += 4) {
        const e = exp4(f32x4.sub(v128.load(row + (<usize>j << 2)), mv));
        v128.store(row + (<usize>j << 2), e);
        sum = f32x4.add(sum, e);
      }
      let total = hsum(sum);
      for (; j < seen; j++) {
        const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(row + (<usize>j << 2)) - m)), 0);
        store<f32>(row + (<usize>j << 2), e);
        total += e;
      }
      for (j = 0; j < seen; j++) store<f32>(row + (<usize>j << 2), load<f32>(row + (<usize>j << 2)) / total);
      for (j = seen; j < Tk; j++) store<f32>(row + (<usize>j << 2), 0);
    }
  }
}

/**
 * probs [H, Tq, Tk], v [Hkv, kvRows, Dv] (the first Tk rows read) → out [H, Tq, Dv]:
 * out[h, i] = Σ_j probs[h, i, j]·v[h / (H / Hkv), j], four output features per vector, j in order.
 */
export function attendWith(p: usize, v: usize, out: usize, H: i32, Hkv: i32, Tq: i32, Tk: i32, kvRows: i32, Dv: i32): void {
  const group = H / Hkv, d4 = Dv & ~3;
  for (let h = 0; h < H; h++) {
    const vBase = v + ((<usize>(h / group) * <usize>kvRows * <usize>Dv) << 2);
    for (let i = 0; i < Tq; i++) {
      const pr = p + ((<usize>(h * Tq + i) * <usize>Tk) << 2);
      const o = out + ((<usize>(h * Tq + i) * <usize>Dv) << 2);
      let d = 0;
      for (; d < d4; d += 4) {
        let acc = ZERO;
        for (let j = 0; j < Tk; j++) acc = madd(f32x4.splat(load<f32>(pr + (<usize>j << 2))), v128.load(vBase + ((<usize>j * <usize>Dv + <usize>d) << 2)), acc);
        v128.store(o + (<usize>d << 2), acc);
      }
      for (; d < Dv; d++) {
        let acc: f32 = 0;
        for (let j = 0; j < Tk; j++) acc += load<f32>(pr + (<usize>j << 2)) * load<f32>(vBase + ((<usize>j * <usize>Dv + <usize>d) << 2));
        store<f32>(o + (<usize>d << 2), acc);
      }
    }
  }
}
