// Native Sparse Attention (Yuan et al. 2025; spec/sparse-attention.md). Three branches per
// query head, mixed by gates:
//   o_t = g_cmp·Attn(q_t, K_cmp, V_cmp) + g_slc·Attn(q_t, K_slc[selected], V_slc[selected]) + g_win·Attn(q_t, K_win[t-w+1 … t])
//   [g_cmp, g_slc, g_win] = sigmoid(x_t·W_gᵀ),   W_g [3·H, D]: rows 0…H-1 compressed, H…2H-1 selected, 2H…3H-1 window
// compressed: k_cmp_i = W_k^c · flatten(K_[i·d, i·d+l) + E_k),  W_k^c [Dh, l·Dh], E_k [l, Dh]   (values alike)
// selected:   the n blocks of sparse-select.ts, chosen once per GQA group from p_cmp summed over the group's heads
// window:     the last w keys, the query's own included
// Each branch has its own key and value projections unless `sparse_shared_kv`. Query and keys of the selected and
// window branches are rotated at their absolute positions; the compressed branch scores the unrotated query
// against compressed keys built from unrotated keys (a block summary has no single position; E_k orders its tokens).

import { argError, checkInteger, checkNumber } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { sigmoid } from "../ops.ts";
import { randn, type Random } from "../random.ts";
import { ropeFrequencies, rotaryHeadSize } from "../rope.ts";
import { expectShape, reshape, type Tensor } from "../tensor.ts";
import { appendTime, concatTime, mergeHeads, splitHeads } from "./heads.ts";
import { maskedAttention, sliceTime, transposedPlanes, type MaskedAttention } from "./masked.ts";
import {
  checkNsaBlocks, compressedBlockCount, selectBlocks, selectionBlockCount, selectionMargin, selectionScores, type NsaBlocks,
} from "./sparse-select.ts";

/** The fields it reads, named as the model's config names them. */
export interface SparseConfig {
  hidden_size: number; // D
  num_attention_heads: number; // H; head size Dh = D / H, even
  num_key_value_heads?: number; // Hkv, a divisor of H; default H
  sparse_block?: number; // l, default 8
  sparse_stride?: number; // d, default 4
  sparse_select_block?: number; // l', default 8
  sparse_select_count?: number; // n, default 4
  sparse_window?: number; // w, default 16
  /** One k_proj / v_proj for all three branches instead of one pair each. Default false (the paper's choice). */
  sparse_shared_kv?: boolean;
  rope_theta?: number; // default 10000
}

export interface ResolvedSparseConfig {
  D: number;
  H: number;
  Hkv: number;
  Dh: number;
  blocks: NsaBlocks;
  sharedKv: boolean;
  ropeTheta: number;
}

/** PyTorch-style names, linear weights [out, in]. Per-branch k/v projections, or k_proj/v_proj when shared. */
export interface SparseWeights {
  q_proj: Tensor; // [H·Dh, D]
  k_cmp_proj?: Tensor; // [Hkv·Dh, D]
  v_cmp_proj?: Tensor;
  k_slc_proj?: Tensor;
  v_slc_proj?: Tensor;
  k_win_proj?: Tensor;
  v_win_proj?: Tensor;
  k_proj?: Tensor; // [Hkv·Dh, D], with sparse_shared_kv
  v_proj?: Tensor;
  compress_k: Tensor; // W_k^c [Dh, l·Dh]
  compress_k_pos: Tensor; // E_k [l, Dh]
  compress_v: Tensor; // W_v^c [Dh, l·Dh]
  compress_v_pos: Tensor; // E_v [l, Dh]
  gate_proj: Tensor; // W_g [3·H, D]
  o_proj: Tensor; // [D, H·Dh]
}

/** What decoding carries between calls; created by createSparseState, updated in place. Shapes [B, Hkv, n, Dh]. */
export interface SparseState {
  position: number;
  /** Unrotated compressed-branch keys and values of tokens not yet inside a finished block: from blocks·d on. */
  pendingKeys: Tensor;
  pendingValues: Tensor;
  /** One compressed key and value per finished block. */
  compressedKeys: Tensor;
  compressedValues: Tensor;
  /** Rotated selected-branch keys and values of every token so far (any block may be selected). */
  selectedKeys: Tensor;
  selectedValues: Tensor;
  /** Rotated window-branch keys and values of the last w - 1 tokens (empty with shared projections). */
  windowKeys: Tensor;
  windowValues: Tensor;
}

export function resolveSparseConfig(config: SparseConfig): ResolvedSparseConfig {
  const { hidden_size: D, num_attention_heads: H } = config;
  const Dh = rotaryHeadSize(D, H);
  const Hkv = config.num_key_value_heads || H;
  checkInteger("num_key_value_heads", Hkv, 1);
  if (H % Hkv !== 0) throw argError("num_key_value_heads", `a divisor of num_attention_heads=${H}`, Hkv);
  const blocks: NsaBlocks = {
    block: config.sparse_block ?? 8,
    stride: config.sparse_stride ?? 4,
    selectBlock: config.sparse_select_block ?? 8,
    selectCount: config.sparse_select_count ?? 4,
    window: config.sparse_window ?? 16,
  };
  checkNsaBlocks(blocks);
  const sharedKv = config.sparse_shared_kv ?? false;
  if (typeof sharedKv !== "boolean") throw argError("sparse_shared_kv", "true or false", sharedKv);
  const ropeTheta = config.rope_theta ?? 10000;
  checkNumber("rope_theta", ropeTheta, 1, Infinity);
  return { D, H, Hkv, Dh, blocks, sharedKv, ropeTheta };
}

const BRANCH_PROJECTIONS = ["k_cmp_proj", "v_cmp_proj", "k_slc_proj", "v_slc_proj", "k_win_proj", "v_win_proj"] as const;

/** Seeded weights, normal with the given std (0.02 by default), drawn in the order of SparseWeights. */
export function initSparse(rng: Random, config: SparseConfig, std = 0.02): SparseWeights {
  const { D, H, Hkv, Dh, blocks, sharedKv } = resolveSparseConfig(config);
  const kv = () => randn(rng, [Hkv * Dh, D], std);
  const q_proj = randn(rng, [H * Dh, D], std);
  const projections = sharedKv
    ? { k_proj: kv(), v_proj: kv() }
    : Object.fromEntries(BRANCH_PROJECTIONS.map((name) => [name, kv()]));
  return {
    q_proj,
    ...projections,
    compress_k: randn(rng, [Dh, blocks.block * Dh], std),
    compress_k_pos: randn(rng, [blocks.block, Dh], std),
    compress_v: randn(rng, [Dh, blocks.block * Dh], std),
    compress_v_pos: randn(rng, [blocks.block, Dh], std),
    gate_proj: randn(rng, [3 * H, D], std),
    o_proj: randn(rng, [D, H * Dh], std),
  };
}

export function checkSparseWeights(weights: SparseWeights, config: SparseConfig): void {
  const { D, H, Hkv, Dh, blocks, sharedKv } = resolveSparseConfig(config);
  expectShape("q_proj", weights.q_proj, [H * Dh, D]);
  for (const name of sharedKv ? (["k_proj", "v_proj"] as const) : BRANCH_PROJECTIONS) expectShape(name, weights[name], [Hkv * Dh, D]);
  expectShape("compress_k", weights.compress_k, [Dh, blocks.block * Dh]);
  expectShape("compress_k_pos", weights.compress_k_pos, [blocks.block, Dh]);
  expectShape("compress_v", weights.compress_v, [Dh, blocks.block * Dh]);
  expectShape("compress_v_pos", weights.compress_v_pos, [blocks.block, Dh]);
  expectShape("gate_proj", weights.gate_proj, [3 * H, D]);
  expectShape("o_proj", weights.o_proj, [D, H * Dh]);
}

export function createSparseState(config: SparseConfig, batch = 1): SparseState {
  const { Hkv, Dh } = resolveSparseConfig(config);
  checkInteger("batch", batch, 1);
  const empty = (): Tensor => ({ shape: [batch, Hkv, 0, Dh], data: new Float32Array(0) });
  return {
    position: 0,
    pendingKeys: empty(), pendingValues: empty(),
    compressedKeys: empty(), compressedValues: empty(),
    selectedKeys: empty(), selectedValues: empty(),
    windowKeys: empty(), windowValues: empty(),
  };
}

/** What one call computed besides its output: the selected blocks and the tensors the report measures with. */
export interface SparseTrace {
  /** [B, Hkv, T, n] selected block indices per group and query, -1 where fewer than n exist. */
  selected: Int32Array;
  /** Rotated queries [B, H, T, Dh] and every selected-branch key so far [B, Hkv, position, Dh]. */
  queries: Tensor;
  keys: Tensor;
  /** Gates [B, T, 3·H] after the sigmoid. */
  gates: Tensor;
  /** The smallest selectionMargin of any query and group (Infinity when no block was chosen by score). */
  selectionMargin: number;
  /** Each branch's output before the gates, [B, H, T, Dh]. */
  branches: { compressed: Tensor; selected: Tensor; window: Tensor };
}

/**
 * x [B, T, D] (or [T, D]) → same shape. With a state, x continues the sequence it holds (prefill and decode are one
 * call) and the state is updated; without one, x starts at position 0.
 */
export function sparseAttention(
  x: Tensor, weights: SparseWeights, config: SparseConfig, state?: SparseState, kernels: Kernels = reference,
): Tensor {
  return sparseAttentionTraced(x, weights, config, state, kernels).out;
}

export function sparseAttentionTraced(
  x: Tensor, weights: SparseWeights, config: SparseConfig, state?: SparseState, kernels: Kernels = reference,
): { out: Tensor; trace: SparseTrace } {
  const c = resolveSparseConfig(config);
  checkSparseWeights(weights, config);
  const flat = x.shape.length === 2;
  const x3 = flat ? reshape(x, [1, ...x.shape]) : x;
  const { B, T } = expectShape("x", x3, ["B", "T", c.D]);
  const s = state ?? createSparseState(config, B);
  checkState(s, c, B);
  const { H, Hkv, Dh, blocks } = c;
  const start = s.position;
  const positions = Array.from({ length: T }, (_, t) => start + t);
  const freqs = ropeFrequencies({ dim: Dh, theta: c.ropeTheta });
  const heads = (w: Tensor, n: number) => splitHeads(kernels.linear(x3, w), n, [Dh])[0]!;
  const rotate = (t: Tensor) => kernels.rope(t, positions, freqs);

  const q = heads(weights.q_proj, H);
  const qRot = rotate(q);
  const shared = c.sharedKv ? { k: heads(weights.k_proj!, Hkv), v: heads(weights.v_proj!, Hkv) } : null;
  const kCmp = shared?.k ?? heads(weights.k_cmp_proj!, Hkv);
  const vCmp = shared?.v ?? heads(weights.v_cmp_proj!, Hkv);
  const kSlc = rotate(shared?.k ?? heads(weights.k_slc_proj!, Hkv));
  const vSlc = shared?.v ?? heads(weights.v_slc_proj!, Hkv);
  const window = shared ? null : { k: rotate(heads(weights.k_win_proj!, Hkv)), v: heads(weights.v_win_proj!, Hkv) };

  const cmp = compressedBranch(s, q, kCmp, vCmp, weights, positions, c, kernels);
  const { selected, margin } = groupSelection(cmp.probs, positions, Hkv, blocks);
  const slc = selectedBranch(s, qRot, kSlc, vSlc, selected, positions, c, kernels);
  const win = windowBranch(s, qRot, window, c, kernels);
  s.position = start + T;

  const gates = sigmoid(kernels.linear(x3, weights.gate_proj));
  const out = kernels.linear(mergeHeads(gatedSum(gates, cmp.out, slc.out, win)), weights.o_proj);
  return {
    out: flat ? reshape(out, [T, c.D]) : out,
    trace: {
      selected, queries: qRot, keys: s.selectedKeys, gates, selectionMargin: margin,
      branches: { compressed: cmp.out, selected: slc.out, window: win },
    },
  };
}

/**
 * Finishes every block this chunk completes, then attends to the blocks wholly in each query's past: q [B, H, T, Dh]
 * unrotated, kCmp and vCmp [B, Hkv, T, Dh] the chunk's compressed-branch keys and values. Updates `s` in place.
 */
function compressedBranch(
  s: SparseState, q: Tensor, kCmp: Tensor, vCmp: Tensor, weights: SparseWeights, positions: readonly number[],
  c: ResolvedSparseConfig, kernels: Kernels,
): MaskedAttention {
  const { blocks } = c;
  const before = s.compressedKeys.shape[2]!;
  const pendingFrom = before * blocks.stride;
  const pendingKeys = concatTime(s.pendingKeys, kCmp);
  const pendingValues = concatTime(s.pendingValues, vCmp);
  const after = positions.length > 0 ? compressedBlockCount(positions[positions.length - 1]!, blocks) : before;
  // Most decode steps finish no block: then nothing is compressed and nothing copied (each copy is all the blocks).
  if (after > before) {
    s.compressedKeys = appendTime(s.compressedKeys, compressBlocks(pendingKeys, weights.compress_k, weights.compress_k_pos, before, after, pendingFrom, blocks, kernels));
    s.compressedValues = appendTime(s.compressedValues, compressBlocks(pendingValues, weights.compress_v, weights.compress_v_pos, before, after, pendingFrom, blocks, kernels));
  }
  const keepFrom = after * blocks.stride - pendingFrom;
  s.pendingKeys = keepFrom === 0 ? pendingKeys : sliceTime(pendingKeys, keepFrom, pendingKeys.shape[2]!);
  s.pendingValues = keepFrom === 0 ? pendingValues : sliceTime(pendingValues, keepFrom, pendingValues.shape[2]!);
  const visible = compressedVisibility(q.shape[0]! * c.H, positions, after, blocks);
  const keys = s.compressedKeys;
  let keysT = transposedKeys.get(keys);
  if (!keysT) transposedKeys.set(keys, (keysT = transposedPlanes(keys)));
  return maskedAttention(q, keys, s.compressedValues, visible, 1 / Math.sqrt(c.Dh), kernels, keysT);
}

/** The compressed keys' kᵀ, made once per set of blocks (a state's tensor is replaced, never written, when one ends). */
const transposedKeys = new WeakMap<Tensor, Float32Array>();

/** Full-resolution attention over the tokens of each group's selected blocks, causal inside the query's own block. */
function selectedBranch(
  s: SparseState, qRot: Tensor, kSlc: Tensor, vSlc: Tensor, selected: Int32Array, positions: readonly number[],
  c: ResolvedSparseConfig, kernels: Kernels,
): MaskedAttention {
  const { H, Hkv, blocks } = c;
  s.selectedKeys = appendTime(s.selectedKeys, kSlc); // in place with one kv head (appendTime)
  s.selectedValues = appendTime(s.selectedValues, vSlc);
  const [B, T, Tk, n] = [qRot.shape[0]!, positions.length, s.selectedKeys.shape[2]!, blocks.selectCount];
  const visible = new Uint8Array(B * H * T * Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const at = ((b * Hkv + Math.floor(h / (H / Hkv))) * T + t) * n;
        const row = ((b * H + h) * T + t) * Tk;
        for (const j of selected.subarray(at, at + n)) {
          if (j >= 0) visible.fill(1, row + j * blocks.selectBlock, row + Math.min((j + 1) * blocks.selectBlock, positions[t]! + 1));
        }
      }
    }
  }
  return maskedAttention(qRot, s.selectedKeys, s.selectedValues, visible, 1 / Math.sqrt(c.Dh), kernels);
}

/** The last w keys, the query's own included, through the fused kernel's sliding-window mask. */
function windowBranch(s: SparseState, qRot: Tensor, own: { k: Tensor; v: Tensor } | null, c: ResolvedSparseConfig, kernels: Kernels): Tensor {
  const { window: w } = c.blocks;
  const T = qRot.shape[2]!;
  let keys: Tensor, values: Tensor;
  if (own) {
    [keys, values] = [concatTime(s.windowKeys, own.k), concatTime(s.windowValues, own.v)];
    const n = keys.shape[2]!;
    s.windowKeys = sliceTime(keys, Math.max(0, n - w + 1), n);
    s.windowValues = sliceTime(values, Math.max(0, n - w + 1), n);
  } else { // shared projections: the window reads the selected branch's cache, which already holds this chunk
    const n = s.selectedKeys.shape[2]!;
    [keys, values] = [sliceTime(s.selectedKeys, Math.max(0, n - T - w + 1), n), sliceTime(s.selectedValues, Math.max(0, n - T - w + 1), n)];
  }
  return kernels.attention(qRot, keys, values, { mask: { window: w, offset: keys.shape[2]! - T }, scale: 1 / Math.sqrt(c.Dh) });
}

/** Σ over branches of gate·output per head: gates [B, T, 3·H] (compressed, selected, window), outputs [B, H, T, Dh]. */
export function gatedSum(gates: Tensor, compressed: Tensor, selected: Tensor, window: Tensor): Tensor {
  const [B, H, T, Dh] = compressed.shape as [number, number, number, number];
  const mixed = new Float32Array(B * H * T * Dh);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const g = (b * T + t) * 3 * H;
        const [gc, gs, gw] = [gates.data[g + h]!, gates.data[g + H + h]!, gates.data[g + 2 * H + h]!];
        const at = ((b * H + h) * T + t) * Dh;
        for (let d = 0; d < Dh; d++) mixed[at + d] = gc * compressed.data[at + d]! + gs * selected.data[at + d]! + gw * window.data[at + d]!;
      }
    }
  }
  return { shape: [B, H, T, Dh], data: mixed };
}

/**
 * Compressed keys (or values) of blocks [from, to): k_cmp_i = W · flatten(K_[i·d, i·d+l) + E), one row per block,
 * from `raw` [B, Hkv, n, Dh] holding positions [rawStart, rawStart + n). Returns [B, Hkv, to - from, Dh].
 */
export function compressBlocks(
  raw: Tensor, weight: Tensor, positionEmbedding: Tensor, from: number, to: number, rawStart: number, b: NsaBlocks, kernels: Kernels,
): Tensor {
  const [B, Hkv, n, Dh] = raw.shape as [number, number, number, number];
  const count = to - from;
  if (count === 0) return { shape: [B, Hkv, 0, Dh], data: new Float32Array(0) };
  const flat = new Float32Array(B * Hkv * count * b.block * Dh);
  for (let plane = 0; plane < B * Hkv; plane++) {
    for (let i = from; i < to; i++) {
      const src = (plane * n + i * b.stride - rawStart) * Dh;
      const dst = ((plane * count) + i - from) * b.block * Dh;
      for (let e = 0; e < b.block * Dh; e++) flat[dst + e] = raw.data[src + e]! + positionEmbedding.data[e]!;
    }
  }
  return reshape(kernels.linear({ shape: [B * Hkv * count, b.block * Dh], data: flat }, weight), [B, Hkv, count, Dh]);
}

/** [planes, Tq, NB] flags: query at positions[t] sees compressed block i iff i·d + l <= positions[t] + 1. */
export function compressedVisibility(planes: number, positions: readonly number[], NB: number, blocks: NsaBlocks): Uint8Array {
  const Tq = positions.length;
  const visible = new Uint8Array(planes * Tq * NB);
  for (let row = 0; row < planes * Tq; row++) {
    visible.fill(1, row * NB, row * NB + Math.min(NB, compressedBlockCount(positions[row % Tq]!, blocks)));
  }
  return visible;
}

/**
 * The selected blocks of each GQA group and query: p_slc from p_cmp summed over the group's heads, then
 * selectBlocks. cmpProbs [B, H, Tq, NB] (p_cmp over every finished block, hidden ones 0); positions: each query's
 * absolute position. Returns [B, Hkv, Tq, n] block indices (-1 where fewer than n exist) and the selection margin.
 */
export function groupSelection(
  cmpProbs: Tensor, positions: readonly number[], Hkv: number, blocks: NsaBlocks,
): { selected: Int32Array; margin: number } {
  const Tq = positions.length;
  const { B, H, NB } = expectShape("cmpProbs", cmpProbs, ["B", "H", Tq, "NB"]);
  if (H % Hkv !== 0) throw argError("Hkv", `a divisor of H=${H}`, Hkv);
  const group = H / Hkv;
  const n = blocks.selectCount;
  const selected = new Int32Array(B * Hkv * Tq * n).fill(-1);
  const pGroup = new Float64Array(NB);
  let margin = Infinity;
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      for (let t = 0; t < Tq; t++) {
        const p = positions[t]!;
        pGroup.fill(0);
        for (let h = g * group; h < (g + 1) * group; h++) {
          const row = ((b * H + h) * Tq + t) * NB;
          for (let i = 0; i < NB; i++) pGroup[i] += cmpProbs.data[row + i]!;
        }
        const pSlc = selectionScores(pGroup, selectionBlockCount(p, blocks), blocks);
        const chosen = selectBlocks(pSlc, p, blocks);
        margin = Math.min(margin, selectionMargin(pSlc, chosen, p, blocks));
        selected.set(chosen, ((b * Hkv + g) * Tq + t) * n);
      }
    }
  }
  return { selected, margin };
}

/** Numbers each part of the state holds after T tokens (per layer, not bytes), and the paper's decode access. */
export interface SparseStateSize {
  selected: number; // 2·Hkv·Dh per token: every token stays selectable
  compressed: number; // 2·Hkv·Dh per finished block
  pending: number; // raw compressed-branch keys of the unfinished blocks (fewer than l tokens)
  window: number; // 2·Hkv·Dh·(w - 1), with separate window projections
  total: number;
  perToken: number; // total / T (0 at T = 0)
}

export function sparseStateSize(config: SparseConfig, T: number): SparseStateSize {
  const { Hkv, Dh, blocks, sharedKv } = resolveSparseConfig(config);
  checkInteger("T", T, 0);
  const perToken = 2 * Hkv * Dh;
  const finished = T > 0 ? compressedBlockCount(T - 1, blocks) : 0;
  const selected = perToken * T;
  const compressed = perToken * finished;
  const pending = perToken * (T - finished * blocks.stride);
  const window = sharedKv ? 0 : perToken * Math.min(T, blocks.window - 1);
  const total = selected + compressed + pending + window;
  return { selected, compressed, pending, window, total, perToken: T > 0 ? total / T : 0 };
}

function checkState(s: SparseState, c: ResolvedSparseConfig, B: number): void {
  checkInteger("state.position", s.position, 0);
  const at = (name: keyof SparseState, n: number | string) => expectShape(`state.${name}`, s[name] as Tensor, [B, c.Hkv, n, c.Dh]);
  const finished = s.position > 0 ? compressedBlockCount(s.position - 1, c.blocks) : 0;
  at("compressedKeys", finished);
  at("compressedValues", finished);
  at("pendingKeys", s.position - finished * c.blocks.stride);
  at("pendingValues", s.position - finished * c.blocks.stride);
  at("selectedKeys", s.position);
  at("selectedValues", s.position);
  const windowed = c.sharedKv ? 0 : Math.min(s.position, c.blocks.window - 1);
  at("windowKeys", windowed);
  at("windowValues", windowed);
}
