// Lesson 2: segmented attention with compressed memory, and NSA sparse attention — what each keeps, what it costs,
// and how much of full attention it covers (src/attention/segmented.ts, sparse.ts, sparse-select.ts;
// src/reports/attention.ts).
import { readFileSync } from "node:fs";
import { kvStateTable, measureNsaQuality, nsaAccessTable } from "../src/reports/attention.ts";
import { segmentedStateSize, type SegmentedConfig } from "../src/attention/segmented.ts";
import { initSparse, sparseAttentionTraced, type SparseConfig } from "../src/attention/sparse.ts";
import { PAPER_BLOCKS, TINY_BLOCKS, type NsaBlocks } from "../src/attention/sparse-select.ts";
import { blockLocal } from "../src/masks.ts";
import { randBounded, Random } from "../src/random.ts";

/**
 * What a query of segmented attention sees, as one grid over [memory slots | tokens]: 2 = a memory slot (the
 * compressed summary of earlier segments), 1 = a token key in its segment or the overlap window, 0 = hidden.
 */
export function segmentedView(T = 24, S = 8, W = 4, M = 3): { rows: number[][]; xLabels: string[] } {
  const mask = blockLocal(T, S, W);
  const rows = Array.from({ length: T }, (_, q) => [
    ...Array.from({ length: M }, () => (q >= S ? 2 : 1.4)), // segment 0 reads mem_0, the learned initial memory
    ...Array.from(mask.data.subarray(q * T, (q + 1) * T)),
  ]);
  const xLabels = [...Array.from({ length: M }, (_, m) => `m${m}`), ...Array.from({ length: T }, (_, t) => String(t))];
  return { rows, xLabels };
}

/** Peak tokens in the segmented cache as the sequence grows: it stops growing at S + W. */
export function segmentedGrowth(config: SegmentedConfig = { hidden_size: 128, num_attention_heads: 4, segment_size: 512, segment_overlap: 256, memory_slots: 16 }) {
  return [256, 512, 768, 1024, 2048, 4096, 8192, 16384].map((T) => ({ T, cachedTokens: segmentedStateSize(config, T).cachedTokens, numbers: segmentedStateSize(config, T).total }));
}

/** Per-layer state of each attention kind (numbers held), from the attention report. */
export const stateTable = (lengths: readonly number[] = [1024, 4096, 16384]) => kvStateTable(lengths);

/** The paper's decode access count (Table 4) against full attention. */
export const accessTable = () => nsaAccessTable();

/**
 * NSA on a short seeded sequence with the tiny block sizes: for one group of heads, each query's attended tokens.
 * 3 = in the sliding window, 2 = in a selected block, 0 = not attended (but summarised by a compressed block).
 */
export function nsaSelectionGrid(T = 64, blocks: NsaBlocks = TINY_BLOCKS, seed = 5): { rows: number[][]; selectedPerQuery: number[] } {
  const config: SparseConfig = {
    hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 1, sparse_block: blocks.block, sparse_stride: blocks.stride,
    sparse_select_block: blocks.selectBlock, sparse_select_count: blocks.selectCount, sparse_window: blocks.window,
  };
  const rng = new Random(seed);
  const weights = initSparse(rng, config, 1 / Math.sqrt(32));
  const x = randBounded(rng, [1, T, 32]);
  const { trace } = sparseAttentionTraced(x, weights, config);
  const n = blocks.selectCount;
  const rows: number[][] = [];
  const selectedPerQuery: number[] = [];
  for (let t = 0; t < T; t++) {
    const chosen = [...trace.selected.subarray(t * n, (t + 1) * n)].filter((j) => j >= 0);
    const row = new Array<number>(T).fill(0);
    for (const j of chosen) for (let k = j * blocks.selectBlock; k < Math.min((j + 1) * blocks.selectBlock, t + 1); k++) row[k] = 2;
    for (let k = Math.max(0, t - blocks.window + 1); k <= t; k++) row[k] = 3;
    for (let k = t + 1; k < T; k++) row[k] = -1; // the future
    rows.push(row);
    selectedPerQuery.push(chosen.length);
  }
  return { rows, selectedPerQuery };
}

/** The first chapter of Alice in Wonderland (data/alice-chapter-1.txt), one token per byte. */
export function aliceBytes(limit?: number): Uint8Array {
  const bytes = new Uint8Array(readFileSync(new URL("../data/alice-chapter-1.txt", import.meta.url)));
  return limit === undefined ? bytes : bytes.subarray(0, limit);
}

/** NSA's coverage of full attention on real text, for the tiny and the paper's block sizes. */
export function nsaCoverage(bytes: Uint8Array = aliceBytes(), queries = 128) {
  return measureNsaQuality(bytes, [TINY_BLOCKS, PAPER_BLOCKS], { queries }).map((q) => ({
    blocks: q.blocks === TINY_BLOCKS ? "tiny (l=8, l'=8, n=4, w=16)" : "paper (l=32, l'=64, n=16, w=512)",
    T: q.T,
    queries: q.queries,
    coverage: q.coverage,
    recentCoverage: q.recentCoverage,
    scoredShare: q.scoredShare,
  }));
}
