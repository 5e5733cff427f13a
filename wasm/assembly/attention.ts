// Fused attention, FlashAttention-style (Dao et al. 2022): for a block of 4 query rows, walk the visible keys in
// blocks of BC, keep each row's running max m and sum l, rescale the output accumulator when m grows, and never
// store the [Tq, Tk] score matrix. The rows of a block are (query head in the GQA group, query) pairs, so the
// heads sharing a kv head share its packed K and V, and a decode step (Tq = 1) still fills a 4-row tile.
// Each row's visible keys form one interval [lo, hi) (causal, window, segment and padding all bound it), given
// per (batch row, query) by the caller; the decay bias adds (position - j)·ln γ_h.
// A ring cache (firstRow > 0: key j at row (firstRow + j) mod kvRows) is unrolled into key order while K and V are
// packed, so the rest of the kernel, masks and decay included, works in key index j alone.

import { packB, packBt, tile4 } from "./matmul";
import { exp4, hmax, hsum } from "./simd";

const BC: i32 = 64;
const NEG_INF = f32x4.splat(-Infinity);

/** Bytes of scratch one part needs for these sizes. */
export function attentionScratch(Tk: i32, Dh: i32, Dv: i32): i32 {
  const kPanels = (Tk + 7) >> 3, vPanels = (Dv + 7) >> 3;
  return ((kPanels * 8 * Dh + vPanels * 8 * Tk + 4 * Dh + 4 * BC + 4 * vPanels * 8) << 2) + 64;
}

/**
 * q [B, H, Tq, Dh], k [B, Hkv, kvRows, Dh], v [B, Hkv, kvRows, Dv] → out [B, H, Tq, Dv], over the first Tk rows of
 * each (b, kv head) unit (kvRows ≥ Tk: a cache allocated for more positions than it holds). lo/hi: i32 [B, Tq];
 * logGammas: f32 [H] or 0; positions: the absolute position of query i is offset + i; key j lies at row
 * (firstRow + j) mod kvRows of its unit. Parts split the units, or the row blocks of each unit when there are fewer
 * units than parts.
 */
export function attention(
  q: usize, k: usize, v: usize, out: usize,
  B: i32, H: i32, Hkv: i32, Tq: i32, Tk: i32, kvRows: i32, Dh: i32, Dv: i32,
  scale: f32, lo: usize, hi: usize, logGammas: usize, offset: i32, firstRow: i32,
  scratch: usize, scratchStride: i32, part: i32, parts: i32,
): void {
  const group = H / Hkv;
  const rows = group * Tq;
  const blocks = (rows + 3) >> 2;
  const units = B * Hkv;
  const vPanels = (Dv + 7) >> 3;
  const kp = scratch + <usize>part * <usize>scratchStride;
  const vp = kp + ((<usize>((Tk + 7) >> 3) * 8 * <usize>Dh) << 2);
  const qs = vp + ((<usize>vPanels * 8 * <usize>Tk) << 2);
  const S = qs + ((4 * <usize>Dh) << 2);
  const O = S + ((4 * <usize>BC) << 2);
  const ldo = <usize>vPanels << 5; // bytes per row of O
  for (let u = 0; u < units; u++) {
    const splitUnits = units >= parts;
    if (splitUnits && u % parts != part) continue;
    const b = u / Hkv, g = u % Hkv;
    const kBase = k + ((<usize>u * <usize>kvRows * <usize>Dh) << 2);
    const vBase = v + ((<usize>u * <usize>kvRows * <usize>Dv) << 2);
    if (firstRow == 0) {
      packBt(kBase, Tk, Dh, Dh, kp); // Kᵀ: scores = q · Kᵀ
      packB(vBase, Tk, Dv, Dv, vp);
    } else {
      packBtRing(kBase, Tk, Dh, kp, firstRow, kvRows);
      packBRing(vBase, Tk, Dv, vp, firstRow, kvRows);
    }
    for (let blk = 0; blk < blocks; blk++) {
      if (!splitUnits && blk % parts != part) continue;
      // The block's rows: query head, query index, visible interval, decay slope, position.
      let rlo = i32x4.splat(0), rhi = i32x4.splat(0), slope = f32x4.splat(0), pos = f32x4.splat(0);
      let blockLo = Tk, blockHi = 0;
      for (let r = 0; r < 4; r++) {
        const row = (blk << 2) + r;
        const dst = qs + ((<usize>r * <usize>Dh) << 2);
        let l = 0, h = 0, gamma: f32 = 0;
        if (row < rows) {
          const head = g * group + row / Tq, i = row % Tq;
          const src = q + ((((<usize>b * <usize>H + <usize>head) * <usize>Tq + <usize>i) * <usize>Dh) << 2);
          for (let d = 0; d < Dh; d++) store<f32>(dst + (<usize>d << 2), load<f32>(src + (<usize>d << 2)) * scale);
          l = load<i32>(lo + ((<usize>b * <usize>Tq + <usize>i) << 2));
          h = load<i32>(hi + ((<usize>b * <usize>Tq + <usize>i) << 2));
          if (logGammas != 0) gamma = load<f32>(logGammas + (<usize>head << 2));
          if (l < h) {
            blockLo = min(blockLo, l);
            blockHi = max(blockHi, h);
          }
        } else {
          memory.fill(dst, 0, <usize>Dh << 2);
        }
        rlo = setLane(rlo, r, l);
        rhi = setLane(rhi, r, h);
        slope = setLaneF(slope, r, gamma);
        pos = setLaneF(pos, r, <f32>(offset + (row < rows ? row % Tq : 0)));
      }
      memory.fill(O, 0, ldo << 2);
      let m0: f32 = -Infinity, m1: f32 = -Infinity, m2: f32 = -Infinity, m3: f32 = -Infinity;
      let l0: f32 = 0, l1: f32 = 0, l2: f32 = 0, l3: f32 = 0;
      for (let j0 = blockLo & ~7; j0 < blockHi; j0 += BC) {
        const jn = min(BC, blockHi - j0);
        const panels = (jn + 7) >> 3;
        for (let p = 0; p < panels; p++) {
          const kpp = kp + ((<usize>((j0 >> 3) + p) * <usize>Dh) << 5);
          tile4(qs, <usize>Dh << 2, kpp, Dh, S + (<usize>p << 5), <usize>BC << 2, 8, false);
        }
        m0 = rowStep(S, 0, j0, jn, i32x4.extract_lane(rlo, 0), i32x4.extract_lane(rhi, 0), f32x4.extract_lane(slope, 0), f32x4.extract_lane(pos, 0), m0, O, vPanels);
        l0 = l0 * lastAlpha + lastSum;
        m1 = rowStep(S, 1, j0, jn, i32x4.extract_lane(rlo, 1), i32x4.extract_lane(rhi, 1), f32x4.extract_lane(slope, 1), f32x4.extract_lane(pos, 1), m1, O, vPanels);
        l1 = l1 * lastAlpha + lastSum;
        m2 = rowStep(S, 2, j0, jn, i32x4.extract_lane(rlo, 2), i32x4.extract_lane(rhi, 2), f32x4.extract_lane(slope, 2), f32x4.extract_lane(pos, 2), m2, O, vPanels);
        l2 = l2 * lastAlpha + lastSum;
        m3 = rowStep(S, 3, j0, jn, i32x4.extract_lane(rlo, 3), i32x4.extract_lane(rhi, 3), f32x4.extract_lane(slope, 3), f32x4.extract_lane(pos, 3), m3, O, vPanels);
        l3 = l3 * lastAlpha + lastSum;
        // O += P · V over this block's keys (P is S, now holding weights).
        for (let p = 0; p < vPanels; p++) {
          const vpp = vp + ((<usize>p * <usize>Tk + <usize>j0) << 5);
          tile4(S, <usize>BC << 2, vpp, jn, O + (<usize>p << 5), ldo, 8, true);
        }
      }
      for (let r = 0; r < 4; r++) {
        const row = (blk << 2) + r;
        if (row >= rows) break;
        const head = g * group + row / Tq, i = row % Tq;
        const l = r == 0 ? l0 : r == 1 ? l1 : r == 2 ? l2 : l3;
        const inv: f32 = l > 0 ? <f32>(1.0 / <f64>l) : 0;
        const dst = out + ((((<usize>b * <usize>H + <usize>head) * <usize>Tq + <usize>i) * <usize>Dv) << 2);
        const src = O + <usize>r * ldo;
        for (let d = 0; d < Dv; d++) store<f32>(dst + (<usize>d << 2), load<f32>(src + (<usize>d << 2)) * inv);
      }
    }
  }
}

/** packBt of the keys of a ring, in key order: column j of Kᵀ is row (first + j) mod rows of k [rows, Dh]. */
function packBtRing(k: usize, Tk: i32, Dh: i32, out: usize, first: i32, rows: i32): void {
  const panels = (Tk + 7) >> 3;
  for (let p = 0; p < panels; p++) {
    const base = out + ((<usize>p * <usize>Dh) << 5);
    for (let c = 0; c < 8; c++) {
      const j = (p << 3) + c;
      let dst = base + (<usize>c << 2);
      if (j < Tk) {
        const row = first + j < rows ? first + j : first + j - rows; // Tk <= rows: the ring wraps at most once
        let src = k + ((<usize>row * <usize>Dh) << 2);
        for (let d = 0; d < Dh; d++, src += 4, dst += 32) store<f32>(dst, load<f32>(src));
      } else {
        for (let d = 0; d < Dh; d++, dst += 32) store<f32>(dst, 0);
      }
    }
  }
}

/** packB of the values of a ring, in key order: row j of the panels is row (first + j) mod rows of v [rows, Dv]. */
function packBRing(v: usize, Tk: i32, Dv: i32, out: usize, first: i32, rows: i32): void {
  const panels = (Dv + 7) >> 3;
  for (let p = 0; p < panels; p++) {
    const j0 = p << 3;
    const width = min(8, Dv - j0);
    let dst = out + ((<usize>p * <usize>Tk) << 5);
    for (let j = 0; j < Tk; j++, dst += 32) {
      const row = first + j < rows ? first + j : first + j - rows;
      const src = v + ((<usize>row * <usize>Dv + <usize>j0) << 2);
      if (width == 8) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
      } else {
        for (let c = 0; c < 8; c++) store<f32>(dst + (<usize>c << 2), c < width ? load<f32>(src + (<usize>c << 2)) : 0);
      }
    }
  }
}

// rowStep's second and third results (AssemblyScript has no tuples): the factor the row's old sum is scaled by
// and the sum of this block's new weights.
let lastAlpha: f32 = 0;
let lastSum: f32 = 0;

/**
 * One row r of a score block: mask to [lo, hi), add the decay, update the running max, rescale the row of O,
 * turn scores into weights in place. Returns the new max.
 */
@inline function rowStep(S: usize, r: i32, j0: i32, jn: i32, lo: i32, hi: i32, slope: f32, pos: f32, m: f32, O: usize, vPanels: i32): f32 {
  const s = S + ((<usize>r * <usize>BC) << 2);
  const jEnd = (jn + 3) & ~3;
  const loV = i32x4.splat(lo), hiV = i32x4.splat(hi), slopeV = f32x4.splat(slope), posV = f32x4.splat(pos);
  let jv = i32x4.add(i32x4.splat(j0), v128(0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0));
  let mx = NEG_INF;
  for (let jj = 0; jj < jEnd; jj += 4) {
    const at = s + (<usize>jj << 2);
    const seen = v128.and(i32x4.ge_s(jv, loV), i32x4.lt_s(jv, hiV));
    const bias = f32x4.mul(f32x4.sub(posV, f32x4.convert_i32x4_s(jv)), slopeV);
    const x = v128.bitselect(f32x4.add(v128.load(at), bias), NEG_INF, seen);
    v128.store(at, x);
    mx = f32x4.max(mx, x);
    jv = i32x4.add(jv, i32x4.splat(4));
  }
  const mNew = max(m, hmax(mx));
  if (mNew == -Infinity) { // nothing visible yet: weights 0, O untouched
    memory.fill(s, 0, <usize>BC << 2);
    lastAlpha = 1;
    lastSum = 0;
    return m;
  }
  const alpha: f32 = m == -Infinity ? 0 : <f32>Math.exp(<f64>(m - mNew));
  if (alpha != 1) {
    const o = O + <usize>r * (<usize>vPanels << 5);
    const a = f32x4.splat(alpha);
    for (let d = 0; d < vPanels * 8; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), a));
  }
  const mv = f32x4.splat(mNew);
  let sum = f32x4.splat(0);
  for (let jj = 0; jj < jEnd; jj += 4) {
    const at = s + (<usize>jj << 2);
    const e = exp4(f32x4.sub(v128.load(at), mv));
    v128.store(at, e);
    sum = f32x4.add(sum, e);
  }
  for (let jj = jEnd; jj < BC; jj += 4) v128.store(s + (<usize>jj << 2), f32x4.splat(0));
  lastAlpha = alpha;
  lastSum = hsum(sum);
  return mNew;
}

@inline function setLane(v: v128, lane: i32, x: i32): v128 {
  if (lane == 0) return i32x4.replace_lane(v, 0, x);
  if (lane == 1) return i32x4.replace_lane(v, 1, x);
  if (lane == 2) return i32x4.replace_lane(v, 2, x);
  return i32x4.replace_lane(v, 3, x);
}

@inline function setLaneF(v: v128, lane: i32, x: f32): v128 {
  if (lane == 0) return f32x4.replace_lane(v, 0, x);
  if (lane == 1) return f32x4.replace_lane(v, 1, x);
  if (lane == 2) return f32x4.replace_lane(v, 2, x);
  return f32x4.replace_lane(v, 3, x);
}
