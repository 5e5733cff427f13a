// The attention report: the articles' claims measured instead of repeated.
//   "−60% memory at 16K" → the KV state each attention kind holds per layer at T = 1K, 4K, 16K, against full MHA.
//   "98% of attention quality at −41% compute" → for NSA on real English text, the share of full attention's
//     probability mass that falls on the tokens NSA attends (selected blocks ∪ window), and the share of causal keys
//     it scores (compressed blocks + selected tokens + window tokens, over t + 1).
// Measured twice: on a model's own MLA attention (the trained checkpoint by default; src/reports/nsa-on-model.ts),
// within its 1,024-token context, and here on the whole text through a seeded byte embedding and seeded NSA
// projections, which the paper's block sizes need (a longer text than the checkpoint's context, and NSA's own
// compression and selection projections, which an MLA checkpoint does not have). The output says which is which.

import { attention } from "../attention/attention.ts";
import { splitHeads } from "../attention/heads.ts";
import { maskedAttention } from "../attention/masked.ts";
import { mlaCacheNumbersPerToken, type MlaConfig } from "../attention/mla.ts";
import { segmentedStateSize, type SegmentedConfig } from "../attention/segmented.ts";
import { compressedBlockCount, PAPER_BLOCKS, paperAccessCount, scoredKeys, TINY_BLOCKS, type NsaBlocks } from "../attention/sparse-select.ts";
import { compressBlocks, compressedVisibility, groupSelection, initSparse, sparseStateSize, type SparseConfig } from "../attention/sparse.ts";
import { checkInteger } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { randn, Random } from "../random.ts";
import { ropeFrequencies } from "../rope.ts";
import type { Tensor } from "../tensor.ts";

/** The tiny preset's attention shape (spec/model.md, presets): hidden 128, 4 heads of 32 for the plain kinds. */
export const TINY_HEADS = { hidden_size: 128, num_attention_heads: 4 } as const;
export const TINY_MLA: MlaConfig = {
  ...TINY_HEADS, q_lora_rank: 64, kv_lora_rank: 32, qk_nope_head_dim: 32, qk_rope_head_dim: 16, v_head_dim: 32,
  max_position_embeddings: 16384,
};
export const REPORT_SEGMENTED: SegmentedConfig = { ...TINY_HEADS, segment_size: 512, segment_overlap: 256, memory_slots: 16 };
export const REPORT_SPARSE: SparseConfig = {
  ...TINY_HEADS, num_key_value_heads: 4, sparse_block: PAPER_BLOCKS.block, sparse_stride: PAPER_BLOCKS.stride,
  sparse_select_block: PAPER_BLOCKS.selectBlock, sparse_select_count: PAPER_BLOCKS.selectCount, sparse_window: PAPER_BLOCKS.window,
};

export interface KvStateRow {
  kind: string;
  /** What it holds, in words. */
  holds: string;
  T: number;
  /** Numbers (not bytes) held per layer at length T, and that divided by T. */
  total: number;
  perToken: number;
  /** total / full MHA's total at the same T. */
  vsFullMha: number;
}

export function kvStateTable(lengths: readonly number[] = [1024, 4096, 16384]): KvStateRow[] {
  lengths.forEach((T, i) => checkInteger(`lengths[${i}]`, T, 1));
  const { hidden_size: D, num_attention_heads: H } = TINY_HEADS;
  const mla = mlaCacheNumbersPerToken(TINY_MLA, "absorb");
  const rows: KvStateRow[] = [];
  for (const T of lengths) {
    const full = 2 * D * T;
    const add = (kind: string, holds: string, total: number) => rows.push({ kind, holds, T, total, perToken: total / T, vsFullMha: total / full });
    add("mha", `k, v: 2·${H} heads·${D / H} per token`, full);
    add("mla", `latent ${TINY_MLA.kv_lora_rank} + rope key ${TINY_MLA.qk_rope_head_dim} per token`, mla * T);
    const seg = segmentedStateSize(REPORT_SEGMENTED, T);
    add("segmented", `S=512 W=256 M=16: ${seg.cachedTokens} tokens' k, v + memory + segment inputs`, seg.total);
    const nsa = sparseStateSize(REPORT_SPARSE, T);
    add("nsa", `l=32 d=16 l'=64 n=16 w=512: every token's k, v + compressed + window`, nsa.total);
  }
  return rows;
}

export interface NsaAccessRow {
  T: number;
  /** The paper's Table 4 count s/d + n·l' + w, and full attention's T, for one decode step. */
  nsaKeys: number;
  fullKeys: number;
  share: number;
}

export const nsaAccessTable = (lengths: readonly number[] = [8192, 16384, 32768, 65536]): NsaAccessRow[] =>
  lengths.map((T) => ({ T, nsaKeys: paperAccessCount(T, PAPER_BLOCKS), fullKeys: T, share: paperAccessCount(T, PAPER_BLOCKS) / T }));

export interface NsaQuality {
  blocks: NsaBlocks;
  /** Tokens (bytes) of text, and the queries measured: evenly spaced over them, the last one included. */
  T: number;
  queries: number;
  /** Mean over heads and measured queries of the full-attention probability mass on the tokens NSA attends. */
  coverage: number;
  /** The same for as many of the most recent tokens: what recency alone would cover with that many keys. */
  recentCoverage: number;
  /** Σ keys NSA scores / Σ causal keys over the measured queries: the compute share ("−41%" would be 0.59). */
  scoredShare: number;
  /** Both for the last query alone: one decode step at length T. */
  lastCoverage: number;
  lastScoredShare: number;
}

export interface NsaQualityOptions {
  hidden?: number; // default 64
  heads?: number; // default 4
  kvHeads?: number; // default 1: one selection shared by the 4 heads, as NSA's GQA groups share one
  queries?: number; // default 256 measured queries
  seed?: number; // default 1
  kernels?: Kernels;
}

/**
 * Runs NSA's compression and selection over `bytes` (one token per byte) for each set of block sizes and measures,
 * at evenly spaced queries, against full causal attention with the same rotated queries and selected-branch keys:
 * the probability mass on the tokens NSA attends and the keys it scores. Only those queries' rows are computed,
 * so a whole chapter takes a second, not the T² of full attention everywhere.
 */
export function measureNsaQuality(bytes: Uint8Array, blockSets: readonly NsaBlocks[] = [TINY_BLOCKS, PAPER_BLOCKS], options: NsaQualityOptions = {}): NsaQuality[] {
  const { hidden = 64, heads = 4, kvHeads = 1, queries = 256, seed = 1, kernels = reference } = options;
  const T = bytes.length;
  checkInteger("bytes.length", T, 1);
  checkInteger("queries", queries, 1);
  const positions = evenPositions(T, queries);
  const P = positions.length;
  // A byte embedding of unit variance and projections of std 1/√D: q·k/√Dh then has unit variance, as a trained
  // model's scores roughly do (std 0.02 would make attention near uniform and the measurement meaningless).
  const table = randn(new Random(seed), [256, hidden], 1);
  const x = { shape: [1, T, hidden], data: new Float32Array(T * hidden) };
  bytes.forEach((b, t) => x.data.set(table.data.subarray(b * hidden, (b + 1) * hidden), t * hidden));
  const xAt = { shape: [1, P, hidden], data: new Float32Array(P * hidden) };
  positions.forEach((p, i) => xAt.data.set(x.data.subarray(p * hidden, (p + 1) * hidden), i * hidden));
  const Dh = hidden / heads;
  const freqs = ropeFrequencies({ dim: Dh });
  const all = Array.from({ length: T }, (_, t) => t);
  let full: Float32Array | null = null;

  return blockSets.map((blocks) => {
    const config: SparseConfig = {
      hidden_size: hidden, num_attention_heads: heads, num_key_value_heads: kvHeads, sparse_block: blocks.block,
      sparse_stride: blocks.stride, sparse_select_block: blocks.selectBlock, sparse_select_count: blocks.selectCount,
      sparse_window: blocks.window,
    };
    // q_proj, k_cmp_proj and k_slc_proj are drawn before any block-sized weight: every block set sees the same ones
    const w = initSparse(new Random(seed + 1), config, 1 / Math.sqrt(hidden));
    const project = (input: Tensor, weight: Tensor, n: number) => splitHeads(kernels.linear(input, weight), n, [Dh])[0]!;
    const q = project(xAt, w.q_proj, heads);
    const kCmp = project(x, w.k_cmp_proj!, kvHeads);
    const NB = compressedBlockCount(T - 1, blocks);
    const compressed = compressBlocks(kCmp, w.compress_k, w.compress_k_pos, 0, NB, 0, blocks, kernels);
    const visible = compressedVisibility(heads, positions, NB, blocks);
    const pCmp = maskedAttention(q, compressed, compressed, visible, 1 / Math.sqrt(Dh), kernels).probs;
    const { selected } = groupSelection(pCmp, positions, kvHeads, blocks);
    if (full === null) {
      const kSlc = kernels.rope(project(x, w.k_slc_proj!, kvHeads), all, freqs);
      const causalRows = { shape: [P, T], data: Uint8Array.from({ length: P * T }, (_, a) => (a % T <= positions[Math.floor(a / T)]! ? 1 : 0)) };
      const values = { shape: [1, kvHeads, T, 1], data: new Float32Array(kvHeads * T) };
      full = attention(kernels.rope(q, positions, freqs), kSlc, values, { mask: causalRows }).probs.data;
    }
    return { ...qualityOf(full, selected, blocks, heads, kvHeads, positions, T), queries: P };
  });
}

/** min(queries, T) positions evenly spaced over 0 … T - 1, the last one included. */
export function evenPositions(T: number, queries: number): number[] {
  const P = Math.min(queries, T);
  return Array.from({ length: P }, (_, i) => Math.floor(((i + 1) * T) / P) - 1);
}

/**
 * The quality figures from full attention's probabilities `probs` [H, P, T] at `positions` and NSA's selection
 * `selected` [Hkv, P, n] (heads of one group consecutive, as groupSelection gives it).
 */
export function qualityOf(
  probs: Float32Array, selected: Int32Array, blocks: NsaBlocks, H: number, Hkv: number, positions: readonly number[], T: number,
): Omit<NsaQuality, "queries"> {
  const n = blocks.selectCount;
  const P = positions.length;
  const attended = new Uint8Array(T);
  let coverage = 0, recent = 0, scored = 0, causalKeys = 0, lastCoverage = 0, lastScored = 0;
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / Hkv));
    positions.forEach((t, i) => {
      const chosen = [...selected.subarray((g * P + i) * n, (g * P + i + 1) * n)].filter((j) => j >= 0);
      attended.fill(0, 0, t + 1);
      for (const j of chosen) attended.fill(1, j * blocks.selectBlock, Math.min((j + 1) * blocks.selectBlock, t + 1));
      attended.fill(1, Math.max(0, t - blocks.window + 1), t + 1);
      const row = probs.subarray((h * P + i) * T, (h * P + i) * T + t + 1);
      let mass = 0;
      let count = 0;
      for (let j = 0; j <= t; j++) {
        if (!attended[j]) continue;
        mass += row[j]!;
        count++;
      }
      let recentMass = 0; // the same number of keys, all taken from the most recent
      for (let j = t; j > t - count; j--) recentMass += row[j]!;
      const keys = scoredKeys(t, chosen, blocks);
      const scoredNow = keys.compressed + keys.selected + keys.window;
      coverage += mass;
      recent += recentMass;
      if (h === 0) {
        scored += scoredNow; // the group shares one selection: count a query's keys once
        causalKeys += t + 1;
      }
      if (i === P - 1) {
        lastCoverage += mass / H;
        lastScored = scoredNow / T;
      }
    });
  }
  return {
    blocks, T, coverage: coverage / (H * P), recentCoverage: recent / (H * P), scoredShare: scored / causalKeys,
    lastCoverage, lastScoredShare: lastScored,
  };
}
