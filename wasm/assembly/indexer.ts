// DSA's indexer scores (DeepSeek-V3.2's lightning indexer): I[t, s] = Σ_h (w[t, h]·scale)·ReLU(q[h, t]·k[s]) over
// the keys query t may see (s <= offset + t), -Infinity after them. It runs once per DSA layer per decode token on
// tiny shapes (4 heads of 32 over some tens of keys), so it is direct, with no packing and no scratch: per query
// and group of four heads, each key is loaded once and its four dot products share the loads; a 4 × 4 transpose
// then gives the four dots in one vector, so ReLU, the head weights and their sum are three vector operations and
// one horizontal sum per key.

import { hsum, madd } from "./simd";

const ZERO = f32x4.splat(0);

/**
 * q [H, Tq, D], keys [kvRows, D] (the first Tk rows read), w [Tq, H] → out [Tq, Tk], every element written. Part
 * `part` of `parts` takes queries part, part + parts, …: later queries see more keys, and interleaving balances them.
 */
export function indexScores(q: usize, keys: usize, w: usize, out: usize, H: i32, Tq: i32, Tk: i32, D: i32, offset: i32, scale: f32, part: i32, parts: i32): void {
  const d = <usize>D, d4 = d & ~3;
  const headBytes = (<usize>Tq * d) << 2; // from query t of head h to query t of head h + 1
  for (let t = part; t < Tq; t += parts) {
    const yr = out + ((<usize>t * <usize>Tk) << 2);
    const seen = min(Tk, offset + t + 1);
    for (let g = 0; g < H; g += 4) {
      // Heads g … g + 3; past the last head, a repeat of head g weighted 0.
      const n = min(4, H - g);
      const p0 = q + ((<usize>t * d) << 2) + <usize>g * headBytes;
      const p1 = n > 1 ? p0 + headBytes : p0, p2 = n > 2 ? p0 + 2 * headBytes : p0, p3 = n > 3 ? p0 + 3 * headBytes : p0;
      const wr = w + ((<usize>t * <usize>H + <usize>g) << 2);
      let wv = f32x4.splat(0);
      wv = f32x4.replace_lane(wv, 0, load<f32>(wr) * scale);
      if (n > 1) wv = f32x4.replace_lane(wv, 1, load<f32>(wr, 4) * scale);
      if (n > 2) wv = f32x4.replace_lane(wv, 2, load<f32>(wr, 8) * scale);
      if (n > 3) wv = f32x4.replace_lane(wv, 3, load<f32>(wr, 12) * scale);
      for (let s = 0; s < seen; s++) {
        const kr = keys + ((<usize>s * d) << 2);
        let a0 = ZERO, a1 = ZERO, a2 = ZERO, a3 = ZERO;
        let j: usize = 0;
        for (; j < d4; j += 4) {
          const kv = v128.load(kr + (j << 2));
          a0 = madd(v128.load(p0 + (j << 2)), kv, a0);
          a1 = madd(v128.load(p1 + (j << 2)), kv, a1);
          a2 = madd(v128.load(p2 + (j << 2)), kv, a2);
          a3 = madd(v128.load(p3 + (j << 2)), kv, a3);
        }
        // Transpose-and-add: lane h of dots is the sum of a_h's four lanes.
        const u = f32x4.add(i32x4.shuffle(a0, a1, 0, 4, 1, 5), i32x4.shuffle(a0, a1, 2, 6, 3, 7));
        const v = f32x4.add(i32x4.shuffle(a2, a3, 0, 4, 1, 5), i32x4.shuffle(a2, a3, 2, 6, 3, 7));
        let dots = f32x4.add(i32x4.shuffle(u, v, 0, 1, 4, 5), i32x4.shuffle(u, v, 2, 3, 6, 7));
        if (j < d) dots = f32x4.add(dots, tail(p0, p1, p2, p3, kr, j, d));
        const score = hsum(f32x4.mul(f32x4.max(dots, ZERO), wv));
        store<f32>(yr + (<usize>s << 2), g == 0 ? score : load<f32>(yr + (<usize>s << 2)) + score);
      }
    }
    for (let s = seen; s < Tk; s++) store<f32>(yr + (<usize>s << 2), -Infinity);
  }
}

/** The four dot products over the last elements j … d - 1 (fewer than four), one per lane. */
@inline function tail(p0: usize, p1: usize, p2: usize, p3: usize, kr: usize, j: usize, d: usize): v128 {
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (; j < d; j++) {
    const k = load<f32>(kr + (j << 2));
    t0 += load<f32>(p0 + (j << 2)) * k;
    t1 += load<f32>(p1 + (j << 2)) * k;
    t2 += load<f32>(p2 + (j << 2)) * k;
    t3 += load<f32>(p3 + (j << 2)) * k;
  }
  return f32x4(t0, t1, t2, t3);
}
