// DSA's indexer scores on the module's kernel (wasm/assembly/indexer.ts), over values already in memory: one call
// for a decode step (no arena, no copy), the queries split over the pool for a prompt when it pays.

import { CHUNKS_PER_THREAD, type WasmCore } from "../core.ts";

/**
 * I [Tq, Tk] at out from q [H, Tq, D], the first Tk rows of keys [kvRows, D] and w [Tq, H], all at byte addresses:
 * Σ_h (w[t, h]·scale)·ReLU(q[h, t]·k[s]) for s <= offset + t, -Infinity after.
 */
export function indexScoresAt(core: WasmCore, q: number, keys: number, w: number, out: number, H: number, Tq: number, Tk: number, D: number, offset: number, scale: number): void {
  const { ex, pool, threads } = core;
  const flops = 2 * H * D * Tq * (offset + (Tq + 1) / 2); // query t sees offset + t + 1 keys
  if (pool && Tq > 1 && flops >= core.parallelFlops) {
    const parts = Math.min(CHUNKS_PER_THREAD * threads, Tq);
    pool.run("indexScores", [q, keys, w, out, H, Tq, Tk, D, offset, scale], ex.indexScores as (...args: number[]) => void, parts);
  } else {
    ex.indexScores(q, keys, w, out, H, Tq, Tk, D, offset, scale, 0, 1);
  }
}
