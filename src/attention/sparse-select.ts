// NSA's block bookkeeping (Yuan et al. 2025, "Native Sparse Attention", §3.3; spec/sparse-attention.md): which
// compressed blocks a query sees, how their probabilities become selection-block importances, which blocks are
// selected, and how many keys a query touches. Pure integer and float64 arithmetic, no tensors.
//
//   compressed block i covers tokens [i·d, i·d + l);  query t sees it iff i·d + l <= t + 1
//   selection block j covers tokens [j·l', (j+1)·l')
//   p_slc[j] = Σ_i p_cmp[i] · |[i·d, i·d + l) ∩ [j·l', (j+1)·l')| / d
// The paper's eq. 9 writes this sum with indices that point at the previous selection block (a slip one port
// copied); the overlap form is what its text intends: for l = 32, d = 16, l' = 64 it weighs compressed blocks
// 4j-1 … 4j+3 by 1, 2, 2, 2, 1, and for l = l' = d it is p_cmp itself.

import { argError, checkInteger } from "../errors.ts";

/** l, d, l', n, w: the paper's notation, with its defaults 32, 16, 64, 16, 512 (tiny: 8, 4, 8, 4, 16). */
export interface NsaBlocks {
  block: number; // l: compression block length
  stride: number; // d: compression stride
  selectBlock: number; // l': selection block length
  selectCount: number; // n: selected blocks per query, block 0 and the two most recent included
  window: number; // w: sliding-window keys, the query's own included
}

export const PAPER_BLOCKS: NsaBlocks = { block: 32, stride: 16, selectBlock: 64, selectCount: 16, window: 512 };
export const TINY_BLOCKS: NsaBlocks = { block: 8, stride: 4, selectBlock: 8, selectCount: 4, window: 16 };

/** Throws naming the first bad hyper-parameter, under the model config's names (sparse_block, …). */
export function checkNsaBlocks(b: NsaBlocks): void {
  checkInteger("sparse_block", b.block, 1);
  checkInteger("sparse_stride", b.stride, 1);
  checkInteger("sparse_select_block", b.selectBlock, 1);
  checkInteger("sparse_select_count", b.selectCount, 3); // block 0 and the two most recent are always in
  checkInteger("sparse_window", b.window, 1);
  if (b.block % b.stride !== 0) throw argError("sparse_block", `a multiple of sparse_stride=${b.stride}`, b.block);
  if (b.selectBlock % b.stride !== 0) throw argError("sparse_select_block", `a multiple of sparse_stride=${b.stride}`, b.selectBlock);
  if (b.selectBlock < b.block) throw argError("sparse_select_block", `at least sparse_block=${b.block}`, b.selectBlock);
}

/** Compressed blocks wholly in the past of the query at position t: i·d + l <= t + 1. */
export function compressedBlockCount(t: number, { block: l, stride: d }: NsaBlocks): number {
  return t + 1 >= l ? Math.floor((t + 1 - l) / d) + 1 : 0;
}

/** Selection blocks holding at least one of the tokens 0 … t. */
export const selectionBlockCount = (t: number, { selectBlock }: NsaBlocks): number => Math.floor(t / selectBlock) + 1;

/** |[i·d, i·d + l) ∩ [j·l', (j+1)·l')| / d: how much of compressed block i lies in selection block j. */
export function overlapWeight(i: number, j: number, { block: l, stride: d, selectBlock: ls }: NsaBlocks): number {
  const overlap = Math.min(i * d + l, (j + 1) * ls) - Math.max(i * d, j * ls);
  return Math.max(0, overlap) / d;
}

/** p_slc over `nSelect` selection blocks from p_cmp over the compressed blocks (float64). */
export function selectionScores(pCmp: ArrayLike<number>, nSelect: number, b: NsaBlocks): Float64Array {
  checkInteger("nSelect", nSelect, 0);
  const scores = new Float64Array(nSelect);
  for (let i = 0; i < pCmp.length; i++) {
    if (pCmp[i] === 0) continue;
    const first = Math.floor((i * b.stride) / b.selectBlock);
    const last = Math.min(nSelect - 1, Math.floor((i * b.stride + b.block - 1) / b.selectBlock));
    for (let j = first; j <= last; j++) scores[j] += pCmp[i]! * overlapWeight(i, j, b);
  }
  return scores;
}

/**
 * The n selection blocks query t attends, in increasing order: block 0 and the two most recent (the query's own
 * and the one before) always, then the highest p_slc, ties to the lower index. All of them while fewer than n exist.
 */
export function selectBlocks(pSlc: ArrayLike<number>, t: number, b: NsaBlocks): number[] {
  checkInteger("t", t, 0);
  const count = selectionBlockCount(t, b);
  if (pSlc.length < count) throw argError("pSlc", `a score for each of the ${count} blocks of query ${t}`, pSlc.length);
  if (count <= b.selectCount) return Array.from({ length: count }, (_, j) => j);
  // The best of blocks 1 … count − 3 one at a time (a decode step selects for every group and layer: no sort, no set).
  const own = count - 1;
  const taken = new Uint8Array(count);
  taken[0] = taken[own] = taken[own - 1] = 1;
  for (let k = 3; k < b.selectCount; k++) {
    let best = -1;
    for (let j = 1; j < own - 1; j++) if (!taken[j] && (best < 0 || pSlc[j]! > pSlc[best]!)) best = j; // ties: the lower
    taken[best] = 1;
  }
  const chosen: number[] = [];
  for (let j = 0; j < count; j++) if (taken[j]) chosen.push(j);
  return chosen;
}

/**
 * How safely `chosen` was chosen: the weakest block picked by score minus the strongest left out (Infinity when
 * nothing was chosen by score, or when both are exactly zero: blocks no visible compressed block covers, zero on
 * every backend). A float32 backend reproduces the choice when this exceeds its error in p_slc.
 */
export function selectionMargin(pSlc: ArrayLike<number>, chosen: readonly number[], t: number, b: NsaBlocks): number {
  const count = selectionBlockCount(t, b);
  if (count <= b.selectCount) return Infinity;
  let weakest = Infinity;
  let strongest = -Infinity;
  for (let j = 1; j < count - 2; j++) {
    if (chosen.includes(j)) weakest = Math.min(weakest, pSlc[j]!);
    else strongest = Math.max(strongest, pSlc[j]!);
  }
  if (weakest === Infinity || strongest === -Infinity || (weakest === 0 && strongest === 0)) return Infinity;
  return weakest - strongest;
}

/** The paper's Table 4 count of keys loaded to decode at length s: s/d compressed + n·l' selected + w window. */
export function paperAccessCount(s: number, { stride, selectBlock, selectCount, window }: NsaBlocks): number {
  checkInteger("s", s, 0);
  return s / stride + selectCount * selectBlock + window;
}

/**
 * Keys the query at position t really scores in each branch: visible compressed blocks, the causal tokens of its
 * selected blocks, and the window (the branches may overlap; each scores its own keys).
 */
export function scoredKeys(t: number, selected: readonly number[], b: NsaBlocks): { compressed: number; selected: number; window: number } {
  let tokens = 0;
  for (const j of selected) tokens += Math.max(0, Math.min((j + 1) * b.selectBlock, t + 1) - j * b.selectBlock);
  return { compressed: compressedBlockCount(t, b), selected: tokens, window: Math.min(b.window, t + 1) };
}
