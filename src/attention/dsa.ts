// DeepSeek Sparse Attention (DeepSeek-V3.2-Exp, inference/model.py class Indexer): a light indexer scores every
// causal key, and MLA then attends only the top-k of them.
//
//   q^I_(t,h) = W^I_q · qr_t          (qr = RMSNorm(W_qa x), MLA's own query latent; x itself when q_lora_rank = 0)
//   k^I_s     = LayerNorm(W^I_k x_s)  (one key per token, shared by the indexer heads, cached)
//   w_h(t)    = (W^I_w x_t)_h / sqrt(H_I · d_I)
//   I(t, s)   = Σ_h w_h(t) · ReLU(q^I_(t,h) · k^I_s)              for s <= t (causal), else -∞
//   S_t       = the k keys of highest I(t, ·), ties to the lower index (all causal keys when t + 1 <= k)
//   out_t     = MLA attending the keys S_t only
// The first qk_rope_head_dim features of q^I and k^I are rotated in the non-interleaved (half-split) layout, as the
// reference does since its 2025-11-17 fix. The reference also applies a Hadamard rotation and FP8 quantisation to
// q^I and k^I; the rotation is orthogonal, so it leaves every q·k unchanged, and we compute in float64 instead of FP8.

import { argError, checkInteger, TinyseekError } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import * as ops from "../ops.ts";
import { type Random, randn } from "../random.ts";
import { ropeFrequencies } from "../rope.ts";
import { expectShape, reshape, tensor, type Tensor } from "../tensor.ts";
import { appendTime } from "./heads.ts";
import { transposed } from "./masked.ts";
import {
  checkMlaConfig, createMlaCache, initMla, mla, yarnOptions, type MlaAttend, type MlaCache, type MlaConfig, type MlaMode,
  type MlaWeights,
} from "./mla.ts";

/** MLA's config plus DeepSeek-V3.2's indexer fields. */
export interface DsaConfig extends MlaConfig {
  index_n_heads: number; // V3.2: 64
  index_head_dim: number; // V3.2: 128, of which the first qk_rope_head_dim are rotated
  index_topk: number; // V3.2: 2048; tiny: 16
}

/** Checkpoint names under self_attn.indexer. */
export interface IndexerWeights {
  wq_b: Tensor; // [H_I·d_I, q_lora_rank] (or [H_I·d_I, D] when q_lora_rank = 0)
  wk: Tensor; // [d_I, D]
  k_norm: Tensor; // [d_I], LayerNorm weight
  k_norm_bias: Tensor; // [d_I], LayerNorm bias
  weights_proj: Tensor; // [H_I, D]
}

export interface DsaWeights extends MlaWeights {
  indexer: IndexerWeights;
}

/** The latent cache of MLA plus the indexer's keys [B, L, d_I]; both hold the same positions. */
export interface DsaCache {
  readonly mla: MlaCache;
  indexKeys: Tensor;
}

export type CheckedDsaConfig = Readonly<DsaConfig & ReturnType<typeof checkMlaConfig>>;

/** Configs checkDsaConfig returned (frozen), and its answer for each frozen config it was given (a model's:
 *  resolveConfig freezes it), so that checking one again, as a model's indexer does at every step, is free. */
const checkedDsa = new WeakSet<object>();
const checkedFrozen = new WeakMap<object, CheckedDsaConfig>();

export function checkDsaConfig(config: DsaConfig): CheckedDsaConfig {
  if (typeof config === "object" && config !== null) {
    if (checkedDsa.has(config)) return config as CheckedDsaConfig;
    const known = checkedFrozen.get(config);
    if (known) return known;
  }
  const c = checkMlaConfig(config);
  checkInteger("config.index_n_heads", config.index_n_heads, 1);
  checkInteger("config.index_head_dim", config.index_head_dim, c.qk_rope_head_dim);
  checkInteger("config.index_topk", config.index_topk, 1);
  const checked = Object.freeze({ ...config, ...c });
  checkedDsa.add(checked);
  if (Object.isFrozen(config)) checkedFrozen.set(config, checked);
  return checked;
}

/** The indexer's rotary frequencies of each checked (frozen) config, made once. */
const indexerFreqs = new WeakMap<CheckedDsaConfig, Float64Array>();
function freqsOf(c: CheckedDsaConfig): Float64Array {
  let freqs = indexerFreqs.get(c);
  if (!freqs) indexerFreqs.set(c, (freqs = ropeFrequencies({ dim: c.qk_rope_head_dim, theta: c.rope_theta, yarn: yarnOptions(c) })));
  return freqs;
}

export function initDsa(rng: Random, config: DsaConfig): DsaWeights {
  const c = checkDsaConfig(config);
  const attention = initMla(rng, c);
  const [D, dI] = [c.hidden_size, c.index_head_dim];
  const qIn = c.q_lora_rank === 0 ? D : c.q_lora_rank;
  return {
    ...attention,
    indexer: {
      wq_b: randn(rng, [c.index_n_heads * dI, qIn], 0.02),
      wk: randn(rng, [dI, D], 0.02),
      k_norm: tensor([dI], new Float32Array(dI).fill(1)),
      k_norm_bias: tensor([dI]),
      weights_proj: randn(rng, [c.index_n_heads, D], 0.02),
    },
  };
}

export function createDsaCache(config: DsaConfig, mode: MlaMode = "absorb", batch = 1): DsaCache {
  const c = checkDsaConfig(config);
  return { mla: createMlaCache(c, mode, batch), indexKeys: tensor([batch, 0, c.index_head_dim]) };
}

/**
 * The indexer's scores I [B, T, L] of the T new tokens (positions offset … offset + T - 1) against every key the
 * cache holds plus the new ones; keys in a query's future are -Infinity. Appends the new keys to `cache` (of its MLA part only the length is read).
 */
export function indexerScores(
  x: Tensor, weights: DsaWeights, config: DsaConfig, cache: { mla: { length: number }; indexKeys: Tensor }, kernels: Kernels = reference,
): Tensor {
  const c = checkDsaConfig(config);
  const { B, T } = expectShape("x", x, ["B", "T", c.hidden_size]);
  checkIndexerWeights(weights, c);
  const dI = c.index_head_dim;
  const offset = cache?.mla?.length;
  if (!Number.isInteger(offset)) throw argError("cache", "a DSA cache holding an MLA cache's length and the indexer keys (createDsaCache)", cache === undefined ? cache : "no MLA length");
  if (cache?.indexKeys?.shape?.[0] !== B || cache.indexKeys.shape[1] !== offset || cache.indexKeys.shape[2] !== dI) {
    const got = Array.isArray(cache.indexKeys?.shape) ? cache.indexKeys.shape : "indexer keys without a shape";
    throw argError("cache", `indexer keys [${B}, ${offset}, ${dI}] beside an MLA cache of ${offset} positions`, got);
  }
  const w = weights.indexer;
  const [HI, dr] = [c.index_n_heads, c.qk_rope_head_dim];
  const positions = Array.from({ length: T }, (_, i) => offset + i);
  const freqs = freqsOf(c);
  const rotate = (t: Tensor, heads: number) => rotated(t, heads, dI, dr, positions, freqs, kernels);

  const qr = c.q_lora_rank === 0 ? x : kernels.rmsnorm(kernels.linear(x, weights.q_a_proj!), weights.q_a_layernorm!, c.rms_norm_eps);
  const q = rotate(kernels.linear(qr, w.wq_b), HI); // [B, H_I, T, d_I]
  const k = rotate(ops.layernorm(kernels.linear(x, w.wk), w.k_norm, w.k_norm_bias, 1e-6), 1); // [B, 1, T, d_I]
  cache.indexKeys = appendTime(cache.indexKeys, { shape: [B, T, dI], data: k.data });
  const L = offset + T;
  const headWeights = kernels.linear(x, w.weights_proj); // [B, T, H_I]
  const norm = 1 / Math.sqrt(HI * dI);

  const scores = new Float32Array(B * T * L);
  const weighted = new Float64Array(HI); // w_h(t) = head weight · norm in float64, then times the ReLU: (w·norm)·ReLU
  for (let b = 0; b < B; b++) {
    const keys = { shape: [L, dI], data: cache.indexKeys.data.subarray(b * L * dI, (b + 1) * L * dI) };
    const queries = { shape: [HI * T, dI], data: q.data.subarray(b * HI * T * dI, (b + 1) * HI * T * dI) };
    const dots = kernels.matmul(queries, transposed(keys)).data; // [H_I·T, L]: q^I_(t,h)·k^I_s (keys are no weight)
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < HI; h++) weighted[h] = headWeights.data[(b * T + t) * HI + h]! * norm;
      const row = (b * T + t) * L;
      for (let s = 0; s <= offset + t; s++) {
        let sum = 0;
        for (let h = 0; h < HI; h++) sum += weighted[h]! * Math.max(dots[(h * T + t) * L + s]!, 0);
        scores[row + s] = sum;
      }
      scores.fill(-Infinity, row + offset + t + 1, row + L); // keys in the query's future
    }
  }
  return { shape: [B, T, L], data: scores };
}

/**
 * t [B, T, heads·d_I] → [B, heads, T, d_I] with each head's first dr features rotated (positions, freqs). The
 * rotated part goes through kernels.rope interleaved: q^I and k^I are permuted alike, so each q^I·k^I is the
 * half-split one.
 */
function rotated(t: Tensor, heads: number, dI: number, dr: number, positions: number[], freqs: Float64Array, kernels: Kernels): Tensor {
  const [B, T] = t.shape as [number, number];
  const m = dr / 2;
  const rows = B * heads * T;
  const pe = new Float32Array(rows * dr); // [B, heads, T, dr], adjacent pairs (x_0, y_0, x_1, y_1, …)
  const out = new Float32Array(rows * dI);
  for (let b = 0; b < B; b++) {
    for (let tt = 0; tt < T; tt++) {
      for (let h = 0; h < heads; h++) {
        const from = ((b * T + tt) * heads + h) * dI;
        const row = (b * heads + h) * T + tt;
        for (let i = 0; i < m; i++) {
          pe[row * dr + 2 * i] = t.data[from + i]!;
          pe[row * dr + 2 * i + 1] = t.data[from + m + i]!;
        }
        for (let i = dr; i < dI; i++) out[row * dI + i] = t.data[from + i]!;
      }
    }
  }
  const roped = kernels.rope({ shape: [B, heads, T, dr], data: pe }, positions, freqs).data;
  for (let row = 0; row < rows; row++) for (let i = 0; i < dr; i++) out[row * dI + i] = roped[row * dr + i]!;
  return { shape: [B, heads, T, dI], data: out };
}

/**
 * The selected keys of each query: the k highest finite scores of its row, ties to the lower index, in ascending
 * key order. [B, T, min(k, L)] as Int32, rows with fewer finite scores padded with -1.
 */
export function topKeys(scores: Tensor, k: number): { shape: number[]; data: Int32Array } {
  const { B, T, L } = expectShape("scores", scores, ["B", "T", "L"]);
  checkInteger("k", k, 1);
  const width = Math.min(k, L);
  const out = new Int32Array(B * T * width).fill(-1);
  const best = new Int32Array(width); // the row's best keys so far, best first
  for (let row = 0; row < B * T; row++) {
    if (!topOfRow(scores.data, row * L, L, best, out, row * width)) {
      // A NaN score: the sort's order, whatever it makes of NaN, is the definition.
      const at = (s: number) => scores.data[row * L + s]!;
      const finite = Array.from({ length: L }, (_, s) => s).filter((s) => at(s) !== -Infinity);
      const chosen = finite.sort((a, b) => at(b) - at(a) || a - b).slice(0, width).sort((a, b) => a - b);
      out.set(chosen, row * width);
    }
  }
  return { shape: [B, T, width], data: out };
}

/**
 * One row's selection into out[at …], without sorting the row: keys are met in ascending order and one joins the
 * best (kept best first) only when it beats a kept score strictly, so that of equal scores the lower key stays
 * ahead, as the sort by (score descending, key ascending) ranks them. False, writing nothing, on a NaN score.
 */
function topOfRow(row: Float32Array, from: number, L: number, best: Int32Array, out: Int32Array, at: number): boolean {
  const width = best.length;
  let kept = 0;
  for (let s = 0; s < L; s++) {
    const v = row[from + s]!;
    if (v !== v) return false;
    if (v === -Infinity) continue;
    if (kept === width && !(v > row[from + best[width - 1]!]!)) continue;
    let i = kept < width ? kept++ : width - 1;
    for (; i > 0 && v > row[from + best[i - 1]!]!; i--) best[i] = best[i - 1]!;
    best[i] = s;
  }
  const chosen = best.subarray(0, kept).sort(); // Int32Array sorts numerically
  out.set(chosen, at);
  return true;
}

/**
 * MLA attending, for each query, only the keys `selected` names: they are gathered into a dense block and run
 * through kernels.attention, so the scored keys are exactly k per query (or t + 1 early in a sequence).
 */
export function selectedKeysAttend(selected: { shape: number[]; data: Int32Array }): MlaAttend {
  return (q, k, v, scale, _offset, kernels) => {
    const { B, H, T, dq } = expectShape("q", q, ["B", "H", "T", "dq"]);
    const { Hkv, L } = expectShape("k", k, ["B", "Hkv", "L", dq], { B });
    const dv = v.shape[3]!;
    const width = selected.shape[2]!;
    if (selected.shape.length !== 3 || selected.shape[0] !== B || selected.shape[1] !== T || selected.data.length !== B * T * width) {
      throw argError("selected", `key indices of shape [${B}, ${T}, k]`, `[${selected.shape.join(", ")}]`);
    }
    const out = new Float32Array(B * H * T * dv);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const keys = Array.from(selected.data.subarray((b * T + t) * width, (b * T + t + 1) * width)).filter((s) => s >= 0);
        if (keys.some((s) => s >= L)) throw argError("selected", `key indices below ${L}`, keys);
        const gather = (from: Tensor, d: number) => {
          const data = new Float32Array(Hkv * keys.length * d);
          for (let g = 0; g < Hkv; g++) {
            keys.forEach((s, n) => {
              const row = (b * Hkv + g) * L + s;
              data.set(from.data.subarray(row * d, (row + 1) * d), (g * keys.length + n) * d);
            });
          }
          return { shape: [1, Hkv, keys.length, d], data };
        };
        const qRow = new Float32Array(H * dq);
        for (let h = 0; h < H; h++) qRow.set(q.data.subarray(((b * H + h) * T + t) * dq, ((b * H + h) * T + t + 1) * dq), h * dq);
        const o = kernels.attention({ shape: [1, H, 1, dq], data: qRow }, gather(k, dq), gather(v, dv), { scale });
        for (let h = 0; h < H; h++) out.set(o.data.subarray(h * dv, (h + 1) * dv), ((b * H + h) * T + t) * dv);
      }
    }
    return { shape: [B, H, T, dv], data: out };
  };
}

export interface DsaResult {
  out: Tensor; // same shape as x
  scores: Tensor; // [B, T, L] indexer scores
  selected: { shape: number[]; data: Int32Array }; // [B, T, min(k, L)]
}

/** DSA over x [B, T, D] (or [T, D]); with a cache, x continues the cached sequences, as in `mla`. */
export function dsa(
  x: Tensor, weights: DsaWeights, config: DsaConfig, cache?: DsaCache, kernels: Kernels = reference, mode?: MlaMode,
): DsaResult {
  const c = checkDsaConfig(config);
  const flat = x?.shape?.length === 2;
  const x3 = flat ? reshape(x, [1, ...x.shape]) : x;
  const { B, T } = expectShape("x", x3, ["B", "T", c.hidden_size]);
  const live = cache ?? createDsaCache(c, mode ?? "absorb", B);
  if (live.mla.length + T > c.max_position_embeddings) {
    const limit = c.max_position_embeddings;
    throw new TinyseekError(`x: ${live.mla.length} cached + ${T} new positions exceed max_position_embeddings ${limit}`);
  }
  const keysBefore = live.indexKeys;
  try {
    const scores = indexerScores(x3, weights, c, live, kernels);
    const selected = topKeys(scores, c.index_topk);
    const out = mla(x, weights, c, live.mla, kernels, mode ?? live.mla.mode, selectedKeysAttend(selected));
    return { out, scores, selected };
  } catch (error) {
    live.indexKeys = keysBefore; // MLA's cache is unchanged on failure; keep the indexer's in step with it
    throw error;
  }
}

function checkIndexerWeights(weights: DsaWeights, c: ReturnType<typeof checkDsaConfig>): IndexerWeights {
  const w = weights?.indexer as unknown as Record<string, Tensor> | undefined;
  if (typeof w !== "object" || w === null) throw argError("weights.indexer", "the indexer's weights", w);
  const [D, HI, dI] = [c.hidden_size, c.index_n_heads, c.index_head_dim];
  expectShape("weights.indexer.wq_b", w.wq_b, [HI * dI, c.q_lora_rank === 0 ? D : c.q_lora_rank]);
  expectShape("weights.indexer.wk", w.wk, [dI, D]);
  expectShape("weights.indexer.k_norm", w.k_norm, [dI]);
  expectShape("weights.indexer.k_norm_bias", w.k_norm_bias, [dI]);
  expectShape("weights.indexer.weights_proj", w.weights_proj, [HI, D]);
  return weights.indexer;
}
