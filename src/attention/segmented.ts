// Segmented attention with an overlap window and compressed memory (spec/segmented-attention.md).
//
//   tokens are cut into segments of S; a query at position p in segment s = floor(p / S) sees
//     its own segment causally, the W tokens before the segment's start, and the M memory slots mem_s
//   mem_0 = a learned [M, D];   mem_s = softmax(P·Zᵀ / √D)·Z,   Z = [mem_(s-1); x_(s-1)]      (P: [M, D] learned)
//   x ← x + E_abs(p) at the layer's input (sinusoidal by default, or learned); q and token keys are rotated at
//   their absolute positions, memory keys are not (a summary has no position); memory goes through the same
//   k_proj and v_proj as tokens.
//
// The token part is masks.ts `blockLocal(T, S, W)` (the tests prove it); it is computed segment by segment, so the
// state holds only the window and the memory: at most S + W token keys and values, M memory vectors and the current
// segment's S inputs, O(S + W + M) instead of O(T).

import { argError, checkInteger, checkNumber, checkOneOf } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { randn, type Random } from "../random.ts";
import { ropeFrequencies, rotaryHeadSize } from "../rope.ts";
import { add, expectShape, reshape, shapeString, type Tensor } from "../tensor.ts";
import { concatTime, mergeHeads, splitHeads } from "./heads.ts";
import { sliceTime } from "./masked.ts";

export const ABSOLUTE_POSITIONS = ["sinusoidal", "learned", "none"] as const;
export type AbsolutePosition = (typeof ABSOLUTE_POSITIONS)[number];

/** The fields it reads, named as the model's config names them. */
export interface SegmentedConfig {
  hidden_size: number; // D
  num_attention_heads: number; // H; head size D / H, even (rotary pairs)
  num_key_value_heads?: number; // Hkv, a divisor of H (grouped-query attention); default H
  segment_size?: number; // S, default 512
  segment_overlap?: number; // W, default S / 2 (rounded down)
  memory_slots?: number; // M, default 0
  /** Absolute embedding added at the layer's input: "sinusoidal" (default), "learned" (pos_embed), "none". */
  absolute_position?: AbsolutePosition;
  /** Rows of the learned table; required with "learned". */
  max_position_embeddings?: number;
  rope_theta?: number; // default 10000
}

export type ResolvedSegmentedConfig = Required<SegmentedConfig> & { headDim: number };

/** PyTorch-style names, linear weights [out, in]. */
export interface SegmentedWeights {
  q_proj: Tensor; // [D, D]
  k_proj: Tensor; // [Hkv·Dh, D]
  v_proj: Tensor; // [Hkv·Dh, D]
  o_proj: Tensor; // [D, D]
  memory?: Tensor; // [M, D] mem_0, when M > 0
  memory_queries?: Tensor; // [M, D] the pooling queries P, when M > 0
  pos_embed?: Tensor; // [max_position_embeddings, D], with "learned"
}

/** What decoding carries from one call to the next; created by createSegmentedState, updated in place. */
export interface SegmentedState {
  /** Tokens seen so far: the next token sits at this absolute position. */
  position: number;
  /** Rotated keys and values of the cached tokens, positions [position - n, position): [B, Hkv, n, Dh]. */
  keys: Tensor;
  values: Tensor;
  /** mem_s of the segment of the last token seen (mem_0 before any): [B, M, D]. */
  memory: Tensor | null;
  /** That segment's inputs so far, pooled into the next memory when the segment ends: [B, n, D]. */
  segmentInputs: Tensor;
}

export function resolveSegmentedConfig(config: SegmentedConfig): ResolvedSegmentedConfig {
  const { hidden_size: D, num_attention_heads: H } = config;
  const headDim = rotaryHeadSize(D, H);
  const num_key_value_heads = config.num_key_value_heads ?? H;
  checkInteger("num_key_value_heads", num_key_value_heads, 1);
  if (H % num_key_value_heads !== 0) throw argError("num_key_value_heads", `a divisor of num_attention_heads=${H}`, num_key_value_heads);
  const segment_size = config.segment_size ?? 512;
  checkInteger("segment_size", segment_size, 1);
  const segment_overlap = config.segment_overlap ?? Math.floor(segment_size / 2);
  checkInteger("segment_overlap", segment_overlap, 0);
  const memory_slots = config.memory_slots ?? 0;
  checkInteger("memory_slots", memory_slots, 0);
  const absolute_position = config.absolute_position ?? "sinusoidal";
  checkOneOf("absolute_position", absolute_position, ABSOLUTE_POSITIONS);
  const max_position_embeddings = config.max_position_embeddings ?? 0;
  if (absolute_position === "learned") checkInteger("max_position_embeddings", max_position_embeddings, 1);
  const rope_theta = config.rope_theta ?? 10000;
  checkNumber("rope_theta", rope_theta, 1, Infinity);
  return {
    hidden_size: D, num_attention_heads: H, num_key_value_heads, segment_size, segment_overlap, memory_slots, absolute_position,
    max_position_embeddings, rope_theta, headDim,
  };
}

/** Seeded weights: normal with the given std (0.02, GPT-2's and DeepSeek-V3's init), in the order listed above. */
export function initSegmented(rng: Random, config: SegmentedConfig, std = 0.02): SegmentedWeights {
  const c = resolveSegmentedConfig(config);
  const D = c.hidden_size;
  const kv = c.num_key_value_heads * c.headDim;
  const weights: SegmentedWeights = {
    q_proj: randn(rng, [D, D], std),
    k_proj: randn(rng, [kv, D], std),
    v_proj: randn(rng, [kv, D], std),
    o_proj: randn(rng, [D, D], std),
  };
  if (c.memory_slots > 0) {
    weights.memory = randn(rng, [c.memory_slots, D], std);
    weights.memory_queries = randn(rng, [c.memory_slots, D], std);
  }
  if (c.absolute_position === "learned") weights.pos_embed = randn(rng, [c.max_position_embeddings, D], std);
  return weights;
}

export function checkSegmentedWeights(weights: SegmentedWeights, config: SegmentedConfig): void {
  const c = resolveSegmentedConfig(config);
  const D = c.hidden_size;
  const kv = c.num_key_value_heads * c.headDim;
  for (const name of ["q_proj", "o_proj"] as const) expectShape(name, weights[name], [D, D]);
  for (const name of ["k_proj", "v_proj"] as const) expectShape(name, weights[name], [kv, D]);
  if (c.memory_slots > 0) {
    expectShape("memory", weights.memory, [c.memory_slots, D]);
    expectShape("memory_queries", weights.memory_queries, [c.memory_slots, D]);
  }
  if (c.absolute_position === "learned") expectShape("pos_embed", weights.pos_embed, [c.max_position_embeddings, D]);
}

export function createSegmentedState(config: SegmentedConfig, batch = 1): SegmentedState {
  const c = resolveSegmentedConfig(config);
  checkInteger("batch", batch, 1);
  const empty = (shape: number[]): Tensor => ({ shape, data: new Float32Array(0) });
  return {
    position: 0,
    keys: empty([batch, c.num_key_value_heads, 0, c.headDim]),
    values: empty([batch, c.num_key_value_heads, 0, c.headDim]),
    memory: null,
    segmentInputs: empty([batch, 0, c.hidden_size]),
  };
}

/**
 * x [B, T, D] (or [T, D]) → [B, T, D] (or [T, D]). With a state, x continues the sequence the state holds
 * (prefill and decode are the same call) and the state is updated; without one, x starts at position 0.
 */
export function segmentedAttention(
  x: Tensor, weights: SegmentedWeights, config: SegmentedConfig, state?: SegmentedState, kernels: Kernels = reference,
): Tensor {
  const c = resolveSegmentedConfig(config);
  checkSegmentedWeights(weights, config);
  const flat = x.shape.length === 2;
  const x3 = flat ? reshape(x, [1, ...x.shape]) : x;
  const { B, T } = expectShape("x", x3, ["B", "T", c.hidden_size]);
  const s = state ?? createSegmentedState(config, B);
  checkState(s, c, B);
  const { segment_size: S, memory_slots: M, num_attention_heads: H, num_key_value_heads: Hkv, headDim: Dh } = c;
  const start = s.position;
  if (c.absolute_position === "learned" && start + T > c.max_position_embeddings) {
    throw argError("x", `at most max_position_embeddings=${c.max_position_embeddings} positions in all`, start + T);
  }

  const positions = Array.from({ length: T }, (_, t) => start + t);
  const input = c.absolute_position === "none" ? x3 : add(x3, absolutePositions(c, positions, weights, B));
  const freqs = ropeFrequencies({ dim: Dh, theta: c.rope_theta });
  const [q] = splitHeads(kernels.linear(input, weights.q_proj), H, [Dh]);
  const [k] = splitHeads(kernels.linear(input, weights.k_proj), Hkv, [Dh]);
  const [v] = splitHeads(kernels.linear(input, weights.v_proj), Hkv, [Dh]);
  const qRot = kernels.rope(q!, positions, freqs);
  const kRot = kernels.rope(k!, positions, freqs);

  // One piece per segment the chunk touches: every query of a piece sees the same memory and window start.
  const pieces: Tensor[] = [{ shape: [B, H, 0, Dh], data: new Float32Array(0) }];
  for (let a = start; a < start + T; ) {
    const b = Math.min(start + T, (Math.floor(a / S) + 1) * S);
    if (a % S === 0 && a > 0) startSegment(s, c, weights, kernels);
    const [from, to] = [a - start, b - start];
    const cached = s.keys.shape[2]!;
    s.keys = concatTime(s.keys, sliceTime(kRot, from, to));
    s.values = concatTime(s.values, sliceTime(v!, from, to));
    let [keys, values] = [s.keys, s.values];
    if (M > 0) {
      s.memory ??= repeatRows(weights.memory!, B);
      const [memoryKeys] = splitHeads(kernels.linear(s.memory, weights.k_proj), Hkv, [Dh]); // no rotary phase
      const [memoryValues] = splitHeads(kernels.linear(s.memory, weights.v_proj), Hkv, [Dh]);
      keys = concatTime(memoryKeys!, keys);
      values = concatTime(memoryValues!, values);
      s.segmentInputs = concatTime(s.segmentInputs, sliceTime(input, from, to));
    }
    // Keys are [memory (M); cached window; this piece]: query i sees key j iff j <= M + cached + i.
    pieces.push(kernels.attention(sliceTime(qRot, from, to), keys, values, { mask: { causal: true, offset: M + cached } }));
    s.position = b;
    a = b;
  }
  const heads = pieces.reduce((all, p) => concatTime(all, p));
  const out = kernels.linear(mergeHeads(heads), weights.o_proj);
  return flat ? reshape(out, [T, c.hidden_size]) : out;
}

/** The first token of a new segment arrives at p = s.position: pool the memory, drop the keys before p - W. */
function startSegment(s: SegmentedState, c: ResolvedSegmentedConfig, weights: SegmentedWeights, kernels: Kernels): void {
  const B = s.keys.shape[0]!;
  if (c.memory_slots > 0) {
    s.memory = poolMemory(s.memory ?? repeatRows(weights.memory!, B), s.segmentInputs, weights.memory_queries!, kernels);
    s.segmentInputs = sliceTime(s.segmentInputs, 0, 0);
  }
  const keep = Math.min(c.segment_overlap, s.keys.shape[2]!);
  const n = s.keys.shape[2]!;
  s.keys = sliceTime(s.keys, n - keep, n);
  s.values = sliceTime(s.values, n - keep, n);
}

/**
 * mem_s = softmax(P·Zᵀ / √D)·Z with Z = [mem_(s-1); x_(s-1)]: single-head attention of the pooling queries P over
 * the previous memory and the previous segment's inputs. memory [B, M, D], inputs [B, n, D] → [B, M, D].
 */
export function poolMemory(memory: Tensor, inputs: Tensor, queries: Tensor, kernels: Kernels = reference): Tensor {
  const { B, M, D } = expectShape("memory", memory, ["B", "M", "D"]);
  const { n } = expectShape("inputs", inputs, [B, "n", D]);
  expectShape("memory_queries", queries, [M, D]);
  const z = concatTime(memory, inputs);
  const q = repeatRows(queries, B);
  const pooled = kernels.attention(reshape(q, [B, 1, M, D]), reshape(z, [B, 1, M + n, D]), reshape(z, [B, 1, M + n, D]));
  return reshape(pooled, [B, M, D]);
}

/**
 * The absolute embedding E_abs(p) for each position, [B, T, D]: sinusoidal (Vaswani et al. 2017:
 * sin(p / 10000^(2i/D)) at feature 2i, cos at 2i + 1) or rows of the learned pos_embed table.
 */
export function absolutePositions(
  config: SegmentedConfig, positions: readonly number[], weights?: Partial<SegmentedWeights>, batch = 1,
): Tensor {
  const c = resolveSegmentedConfig(config);
  const D = c.hidden_size;
  const T = positions.length;
  const data = new Float32Array(batch * T * D);
  // The sinusoid's wavelengths 10000^(2i/D), one per pair of features, computed once rather than per position.
  const wavelengths = c.absolute_position === "sinusoidal" ? Array.from({ length: D }, (_, i) => 10000 ** ((2 * Math.floor(i / 2)) / D)) : [];
  positions.forEach((p, t) => {
    checkInteger(`positions[${t}]`, p, 0);
    for (let i = 0; i < D; i++) {
      let value = 0;
      if (c.absolute_position === "sinusoidal") {
        const angle = p / wavelengths[i]!;
        value = i % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
      } else if (c.absolute_position === "learned") {
        const table = weights?.pos_embed;
        expectShape("pos_embed", table, [c.max_position_embeddings, D]);
        if (p >= c.max_position_embeddings) throw argError(`positions[${t}]`, `< max_position_embeddings=${c.max_position_embeddings}`, p);
        value = table!.data[p * D + i]!;
      }
      for (let b = 0; b < batch; b++) data[(b * T + t) * D + i] = value;
    }
  });
  return { shape: [batch, T, D], data };
}

/** How much the state holds (numbers, not bytes) at the peak over a sequence of T tokens, per layer. */
export interface SegmentedStateSize {
  /** Token keys and values in the window: 2·Hkv·Dh numbers per cached token. */
  keysValues: number;
  /** The memory vectors mem_s, M·D. */
  memory: number;
  /** The current segment's inputs, kept to pool the next memory (only with M > 0). */
  segmentInputs: number;
  total: number;
  /** total / T (0 at T = 0): what the state costs per token of the sequence, falling as T grows past S + W. */
  perToken: number;
  /** Cached tokens at the peak: at most S + W. */
  cachedTokens: number;
}

export function segmentedStateSize(config: SegmentedConfig, T: number): SegmentedStateSize {
  const c = resolveSegmentedConfig(config);
  checkInteger("T", T, 0);
  const { segment_size: S, segment_overlap: W, memory_slots: M, hidden_size: D } = c;
  // After the token at position p the window holds [max(0, floor(p/S)·S - W), p]; its largest size comes at the
  // end of a segment or at the last token.
  let cachedTokens = 0;
  const held = (p: number) => p + 1 - Math.max(0, Math.floor(p / S) * S - W);
  for (let end = S - 1; end < T; end += S) cachedTokens = Math.max(cachedTokens, held(end));
  if (T > 0) cachedTokens = Math.max(cachedTokens, held(T - 1));
  const keysValues = 2 * c.num_key_value_heads * c.headDim * cachedTokens;
  const memory = T > 0 ? M * D : 0;
  const segmentInputs = M > 0 ? Math.min(S, T) * D : 0;
  const total = keysValues + memory + segmentInputs;
  return { keysValues, memory, segmentInputs, total, perToken: T > 0 ? total / T : 0, cachedTokens };
}

function checkState(s: SegmentedState, c: ResolvedSegmentedConfig, B: number): void {
  checkInteger("state.position", s.position, 0);
  expectShape("state.keys", s.keys, [B, c.num_key_value_heads, "n", c.headDim]);
  expectShape("state.values", s.values, [B, c.num_key_value_heads, s.keys.shape[2]!, c.headDim]);
  if (s.memory !== null) expectShape("state.memory", s.memory, [B, c.memory_slots, c.hidden_size]);
  expectShape("state.segmentInputs", s.segmentInputs, [B, "n", c.hidden_size]);
}

/** t [R, D] repeated for each of B batch rows: [B, R, D]. */
function repeatRows(t: Tensor, B: number): Tensor {
  if (t.shape.length !== 2) throw argError("t", "shape [R, D]", shapeString(t.shape));
  const data = new Float32Array(B * t.data.length);
  for (let b = 0; b < B; b++) data.set(t.data, b * t.data.length);
  return { shape: [B, ...t.shape], data };
}
