// Fused attention on the module's kernel (wasm/assembly/attention.ts). The mask reaches the kernel as one interval
// [lo, hi) of visible keys per (batch row, query), computed here from its MaskSpec (fillIntervals), and the decay
// as ln γ per query head. Pointer-level: attentionAt (the device kernels call it on the caches where they lie);
// host kernel: attention over Tensors, validated as the reference validates.

import { argError, checkInteger, checkNumber } from "../../src/errors.ts";
import type { FusedAttentionOptions } from "../../src/kernels.ts";
import type { MaskSpec } from "../../src/masks.ts";
import { attentionSizes } from "../../src/attention/attention.ts";
import type { Tensor } from "../../src/tensor.ts";
import { CHUNKS_PER_THREAD, type WasmCore } from "../core.ts";

/**
 * Attention on q [B, H, Tq, Dh], k [B, Hkv, kvRows, Dh], v [B, Hkv, kvRows, Dv] in memory into out [B, H, Tq, Dv],
 * over the first Tk rows of each kv head (kvRows > Tk: a cache with room left), or a ring's when firstRow > 0 (key j
 * at row (firstRow + j) mod kvRows): the intervals of `mask` (checked by checkMask) and ln γ written into the arena,
 * then the kernel, split over the pool when it pays. Inside a kernel's try.
 */
export function attentionAt(
  core: WasmCore, pq: number, pk: number, pv: number, out: number, B: number, H: number, Hkv: number, Tq: number, Tk: number, Dh: number, Dv: number,
  scale: number, mask: MaskSpec | undefined, offset: number, logGammas: ArrayLike<number> | undefined, kvRows = Tk, firstRow = 0,
): void {
  const { ex, heap, pool, threads } = core;
  const plo = core.alloc(B * Tq * 4), phi = core.alloc(B * Tq * 4);
  const pg = logGammas ? core.alloc(H * 4) : 0;
  fillIntervals(heap.I32, plo >>> 2, phi >>> 2, mask, offset, B, Tq, Tk);
  if (logGammas) heap.F32.set(logGammas, pg >>> 2); // ln γ rounded to float32
  const flops = 2 * B * H * Tq * Tk * (Dh + Dv);
  // Chunks are (batch row, kv head) units when there are enough of them, else row blocks of every unit (each
  // chunk then packs every unit's K and V again: a few percent of the work at T = 512).
  const units = B * Hkv, rowBlocks = Math.ceil(((H / Hkv) * Tq) / 4);
  const chunks = units >= threads ? units : rowBlocks;
  const parts = pool && flops >= core.parallelFlops && chunks > 1 ? Math.min(CHUNKS_PER_THREAD * threads, chunks) : 1;
  const stride = Math.ceil(ex.attentionScratch(Tk, Dh, Dv) / 64) * 64;
  const scratch = core.alloc(stride * parts); // one scratch region per chunk: chunks may run concurrently
  if (parts > 1) {
    const args = [pq, pk, pv, out, B, H, Hkv, Tq, Tk, kvRows, Dh, Dv, scale, plo, phi, pg, offset, firstRow, scratch, stride];
    pool!.run("attention", args, ex.attention as (...args: number[]) => void, parts);
  } else {
    ex.attention(pq, pk, pv, out, B, H, Hkv, Tq, Tk, kvRows, Dh, Dv, scale, plo, phi, pg, offset, firstRow, scratch, stride, 0, 1);
  }
}

export function attention(core: WasmCore, q: Tensor, k: Tensor, v: Tensor, options: FusedAttentionOptions = {}): Tensor {
  const { B, H, Hkv, Tq, Tk, Dh, Dv, scale } = attentionSizes(q, k, v, options.scale);
  const mask = options.mask;
  const offset = checkMask(mask, B, Tq, Tk);
  const logGammas = options.logGammas;
  if (logGammas) {
    if (logGammas.length !== H) throw argError("logGammas", `${H} values (one per query head)`, logGammas.length);
    logGammas.forEach((g, h) => checkNumber(`logGammas[${h}]`, g, -Number.MAX_VALUE, 0, " (ln γ with γ in (0, 1])"));
    checkInteger("offset", offset, 0);
  }
  const outShape = [B, H, Tq, Dv];
  const size = B * H * Tq * Dv;
  if (size === 0) return { shape: outShape, data: new Float32Array(0) };
  try {
    const pq = core.put(q.data), pk = core.put(k.data), pv = core.put(v.data);
    const out = core.alloc(size * 4);
    attentionAt(core, pq, pk, pv, out, B, H, Hkv, Tq, Tk, Dh, Dv, scale, mask, offset, logGammas);
    core.verify("attention");
    return core.read(out, outShape, size);
  } finally {
    core.temp.reset();
  }
}

/**
 * Checks `spec` as masks.ts does (specVisible, maskFromSpec) and gives the position offset of query 0.
 */
function checkMask(spec: MaskSpec | undefined, B: number, Tq: number, Tk: number): number {
  const offset = spec?.offset ?? Tk - Tq;
  if (!spec) return offset;
  checkInteger("mask.offset", offset, 0);
  if (spec.window !== undefined) checkInteger("mask.window", spec.window, 1);
  if (spec.segment) {
    checkInteger("mask.segment.size", spec.segment.size, 1);
    checkInteger("mask.segment.overlap", spec.segment.overlap, 0);
  }
  if (spec.lengths && spec.lengths.length !== B) throw argError("mask.lengths", `${B} lengths`, spec.lengths.length);
  spec.lengths?.forEach((l, b) => checkInteger(`mask.lengths[${b}]`, l, 0, Tk));
  return offset;
}

/**
 * The keys query i of batch row b sees under `spec` (checked by checkMask), as one interval [lo, hi) per (b, i),
 * written into i32 at lo and hi: causal, window and segment bound it from above and below, padding lengths from
 * above (and empty it for queries at padded positions).
 */
export function fillIntervals(i32: Int32Array, lo: number, hi: number, spec: MaskSpec | undefined, offset: number, B: number, Tq: number, Tk: number): void {
  if (!spec) {
    i32.fill(0, lo, lo + B * Tq);
    i32.fill(Tk, hi, hi + B * Tq);
    return;
  }
  const causalOn = spec.causal || spec.window !== undefined || spec.segment !== undefined;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Tq; i++) {
      const p = offset + i;
      let from = 0, to = Tk;
      if (causalOn) to = Math.min(to, p + 1);
      if (spec.window !== undefined) from = Math.max(from, p - spec.window + 1);
      if (spec.segment) from = Math.max(from, Math.floor(p / spec.segment.size) * spec.segment.size - spec.segment.overlap);
      if (spec.lengths) to = p >= spec.lengths[b]! ? 0 : Math.min(to, spec.lengths[b]!); // padded query or key
      if (from >= to) from = to = 0;
      i32[lo + b * Tq + i] = from;
      i32[hi + b * Tq + i] = to;
    }
  }
}
