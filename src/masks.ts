// Attention masks as data: `visible[q, k] = 1` means query q may attend to key k. Shape [Tq, Tk] or, per batch
// row, [B, Tq, Tk]. They combine by AND, print as grids, and turn into an additive bias of 0 / -Infinity (never a
// finite sentinel such as -1e4, which would make a fully masked row come out uniform instead of zero).

import { argError, checkInteger } from "./errors.ts";
import type { Tensor } from "./tensor.ts";

export interface Mask {
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

function build(shape: number[], visible: (q: number, k: number, b: number) => boolean): Mask {
  const [B, Tq, Tk] = shape.length === 3 ? (shape as [number, number, number]) : [1, shape[0]!, shape[1]!];
  const data = new Uint8Array(B * Tq * Tk);
  for (let b = 0; b < B; b++) {
    for (let q = 0; q < Tq; q++) for (let k = 0; k < Tk; k++) data[(b * Tq + q) * Tk + k] = visible(q, k, b) ? 1 : 0;
  }
  return { shape, data };
}

/** Query i, at absolute position offset + i, sees key j iff j <= offset + i. `offset` is what a KV cache holds. */
export function causal(Tq: number, Tk = Tq, offset = Tk - Tq): Mask {
  checkInteger("Tq", Tq, 0);
  checkInteger("Tk", Tk, 0);
  checkInteger("offset", offset, 0);
  return build([Tq, Tk], (q, k) => k <= offset + q);
}

/** Per batch row b, keys at positions >= lengths[b] are hidden, and so are padded queries (their rows are zero). */
export function padding(lengths: readonly number[], T: number): Mask {
  checkInteger("T", T, 0);
  lengths.forEach((l, b) => checkInteger(`lengths[${b}]`, l, 0, T));
  return build([lengths.length, T, T], (q, k, b) => q < lengths[b]! && k < lengths[b]!);
}

/** Key j is visible to query i iff i - w < j <= i: w keys, the query's own included (FlashAttention's (w-1, 0)). */
export function slidingWindow(T: number, w: number): Mask {
  checkInteger("T", T, 0);
  checkInteger("w", w, 1);
  return build([T, T], (q, k) => q - w < k && k <= q);
}

/**
 * Segments of `segment` tokens; a query sees, causally, its own segment and the `overlap` tokens just before the
 * segment's start (overlap may exceed segment and reach into earlier segments). See spec/masks.md.
 */
export function blockLocal(T: number, segment: number, overlap: number): Mask {
  checkInteger("T", T, 0);
  checkInteger("segment", segment, 1);
  checkInteger("overlap", overlap, 0);
  return build([T, T], (q, k) => {
    const start = Math.floor(q / segment) * segment;
    return start - overlap <= k && k <= q;
  });
}

/** The AND of masks of one shape, or of [Tq, Tk] masks with [B, Tq, Tk] ones (broadcast over B). */
export function combine(...masks: Mask[]): Mask {
  if (masks.length === 0) throw argError("masks", "at least one mask", 0);
  const widest = masks.reduce((a, m) => (m.shape.length > a.shape.length ? m : a));
  const [Tq, Tk] = widest.shape.slice(-2) as [number, number];
  const data = new Uint8Array(widest.data.length).fill(1);
  masks.forEach((m, i) => {
    const [q, k] = m.shape.slice(-2);
    if (q !== Tq || k !== Tk || (m.shape.length === 3 && m.shape[0] !== widest.shape[0])) {
      throw argError(`masks[${i}]`, `shape [${widest.shape.join(", ")}] or [${Tq}, ${Tk}]`, `[${m.shape.join(", ")}]`);
    }
    for (let j = 0; j < data.length; j++) data[j]! &= m.data[j % m.data.length]!;
  });
  return { shape: [...widest.shape], data };
}

/** The additive form: 0 where visible, -Infinity where hidden. */
export function toBias(mask: Mask): Tensor {
  return { shape: [...mask.shape], data: Float32Array.from(mask.data, (v) => (v ? 0 : -Infinity)) };
}

/** A grid of ■ (visible) and · (hidden), one row per query; the batch row b of a [B, Tq, Tk] mask. */
export function renderMask(mask: Mask, b = 0): string {
  const [Tq, Tk] = mask.shape.slice(-2) as [number, number];
  checkInteger("b", b, 0, mask.shape.length === 3 ? mask.shape[0]! - 1 : 0);
  const rows: string[] = [];
  for (let q = 0; q < Tq; q++) {
    let line = "";
    for (let k = 0; k < Tk; k++) line += mask.data[(b * Tq + q) * Tk + k] ? "■ " : "· ";
    rows.push(line.trimEnd());
  }
  return rows.join("\n");
}


/**
 * A mask described by its kind rather than its bits, so a fused kernel can evaluate it on the fly. All parts AND.
 * `offset` (default Tk - Tq) is the absolute position of the first query, as in `causal`.
 */
export interface MaskSpec {
  causal?: boolean;
  offset?: number;
  /** Sliding window of w keys ending at the query (implies causal). */
  window?: number;
  /** Block-local segments (implies causal): spec/masks.md. */
  segment?: { size: number; overlap: number };
  /** Valid length of each batch row: keys at positions >= it are hidden, and so are queries at such positions. */
  lengths?: readonly number[];
}

/** Whether query row i (absolute position offset + i) of batch row b sees key j under `spec`. */
export function specVisible(spec: MaskSpec, Tq: number, Tk: number): (b: number, i: number, j: number) => boolean {
  const offset = spec.offset ?? Tk - Tq;
  checkInteger("mask.offset", offset, 0);
  if (spec.window !== undefined) checkInteger("mask.window", spec.window, 1);
  if (spec.segment) {
    checkInteger("mask.segment.size", spec.segment.size, 1);
    checkInteger("mask.segment.overlap", spec.segment.overlap, 0);
  }
  const causalOn = spec.causal || spec.window !== undefined || spec.segment !== undefined;
  return (b, i, j) => {
    const p = offset + i;
    if (causalOn && j > p) return false;
    if (spec.window !== undefined && j <= p - spec.window) return false;
    if (spec.segment && j < Math.floor(p / spec.segment.size) * spec.segment.size - spec.segment.overlap) return false;
    if (spec.lengths && (p >= spec.lengths[b]! || j >= spec.lengths[b]!)) return false; // padded query or key
    return true;
  };
}

/** The mask `spec` describes, as bits: [Tq, Tk], or [B, Tq, Tk] when it has per-row lengths. */
export function maskFromSpec(spec: MaskSpec, B: number, Tq: number, Tk: number): Mask {
  if (spec.lengths && spec.lengths.length !== B) throw argError("mask.lengths", `${B} lengths`, spec.lengths.length);
  spec.lengths?.forEach((l, b) => checkInteger(`mask.lengths[${b}]`, l, 0, Tk));
  const at = specVisible(spec, Tq, Tk);
  return build(spec.lengths ? [B, Tq, Tk] : [Tq, Tk], (q, k, b) => at(b, q, k));
}
