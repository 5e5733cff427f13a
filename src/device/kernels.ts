// What a backend implements to run the model: kernels by name over handles (the tfjs idea). A handle is a value
// living where the backend computes (a host Float32Array for the reference, a block of WASM memory, a GPU buffer,
// a tf.Tensor); the forward only reads its shape. Reading a handle back to the host is explicit (`read`), and may
// answer with a promise (WebGPU): the forward is written so that it runs either way (src/device/drive.ts).
// Kernels do no validation: src/device/ops.ts checks every call, then calls the kernel of the same name.
//
// Layouts (no batch axis: the forward runs one sequence's rows at a time through attention):
//   rows        [N, D]           tokens of one or several sequences, packed
//   heads       [H, T, d]        one sequence's tokens split into heads
//   cache       [heads, rows, d] a layer's keys or values, `rows` allocated, the first ones filled

import type { Routing } from "../moe/experts.ts";
import type { MoeConfig } from "../moe/layer.ts";
import type { QuantWeight } from "../quant/linear.ts";
import type { Tensor } from "../tensor.ts";

/** A tensor on a backend: the forward reads only its shape. */
export interface Value {
  readonly shape: readonly number[];
}

/**
 * Block copy: for batch b < batches, row r < rows, column c < width:
 *   dst[dstOff + b·dstBatch + r·dstRow + c] = src[srcOff + b·srcBatch + r·srcRow + c].
 * Head splits, merges, concatenations and cache writes are all this one operation on the memory backends.
 */
export interface BlockCopy {
  batches?: number;
  rows: number;
  width: number;
  srcOff?: number;
  srcRow: number;
  srcBatch?: number;
  dstOff?: number;
  dstRow: number;
  dstBatch?: number;
}

/** C = A·B per batch (element offsets and strides); B is a weight, stored [N, K] when transB, else [K, N]. */
export interface GemmArgs {
  M: number;
  N: number;
  K: number;
  /** B is stored [N, K] (a linear layer's weight) rather than [K, N]. */
  transB: boolean;
  batches?: number;
  /** Element strides between batches (0 broadcasts), and element offsets of the first matrix. */
  strideA?: number;
  strideB?: number;
  strideC?: number;
  offA?: number;
  offB?: number;
  offC?: number;
}

/**
 * Causal attention of one sequence: Tq new queries at positions offset … offset + Tq - 1 over its first Tk keys.
 * q [H, Tq, Dh], k [Hkv, kvRows, Dh], v [Hkv, kvRows, Dv] → [H, Tq, Dv]; query head h reads kv head h / (H / Hkv).
 */
export interface AttentionArgs {
  H: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  Dh: number;
  Dv: number;
  scale: number;
  offset: number;
  /** ln γ per query head (float64; a float32 backend rounds them): the relative decay bias (offset + i - j)·ln γ_h. */
  logGammas?: readonly number[];
  /** Rows each kv head holds in k and v (a cache allocated for more positions than it has filled). */
  kvRows: number;
  /** Key j lies at row (firstRow + j) mod kvRows of its kv head: a ring holding the last kvRows positions, oldest at
   *  firstRow (NSA's window). Default 0: key j at row j. */
  firstRow?: number;
}

/** The sizes attendWith reads: attention's, less the query side. */
export type AttendArgs = Pick<AttentionArgs, "H" | "Hkv" | "Tq" | "Tk" | "Dv" | "kvRows">;

/**
 * DSA's indexer scores (DeepSeek-V3.2, inference/model.py class Indexer) of Tq new queries at positions
 * offset … offset + Tq - 1 over the first Tk keys of a cache:
 *   I[t, s] = Σ_h (w[t, h]·scale)·ReLU(q[h, t]·k[s])   for s <= offset + t,   -∞ for the keys after it.
 * q [H, Tq, D], keys [1, kvRows, D], w [Tq, H] → [Tq, Tk].
 */
export interface IndexScoreArgs {
  H: number;
  Tq: number;
  Tk: number;
  D: number;
  offset: number;
  scale: number;
  kvRows: number;
}

/** Stacked routed-expert weights as handles: gate, up [E, F, D], down [E, D, F]. */
export interface ExpertValues<X> {
  gate: X;
  up: X;
  down: X;
  E: number;
  F: number;
  D: number;
}

export interface DeviceKernels<X extends Value = Value> {
  /** The backend's name, for messages ("reference", "wasm", "webgpu", "tfjs"). */
  readonly name: string;

  // ── memory ──
  /** The backend's copy of a weight, made once per Float32Array and kept (never released). */
  weight(t: Tensor): X;
  /** A new value holding these host values (a hook's replacement, a layer computed on the host). */
  upload(t: Tensor): X;
  /** An uninitialised value. */
  empty(shape: readonly number[]): X;
  /** Hands values back for reuse; weights, views and values released before are ignored. */
  release(...xs: X[]): void;
  /** Frees a value's storage for good (a cache being dropped). */
  free(x: X): void;
  /** The value's elements on the host (a promise where the device reads asynchronously). */
  read(x: X): Float32Array | Promise<Float32Array>;

  // ── rows ──
  /** Rows `ids` of the table [V, D] (the embedding), a host weight: a backend may copy only those rows. */
  embed(table: Tensor, ids: Int32Array): X;
  /**
   * Rows `rows` of x [N, D] → [rows.length, D]; or of every plane of x [A, N, D] → [A, n, D] (a cache's kv heads):
   * with perPlane false every plane takes rows[0 … n − 1] (n = rows.length), with perPlane true plane a takes its own
   * rows[a·n … a·n + n − 1] (rows.length = A·n). A rank-2 x is one plane.
   */
  gatherRows(x: X, rows: Int32Array, perPlane?: boolean): X;
  /** x [N, D] + update[slots[r]] on rows whose slot is >= 0; other rows keep x. */
  addRows(x: X, update: X, slots: Int32Array): X;

  // ── layout: copies, no arithmetic ──
  /** x [T, H·Σw] → one value [H, T, w] per width (each head's features cut into consecutive parts). */
  splitHeads(x: X, H: number, widths: readonly number[]): X[];
  /** x [H, T, d] → [T, H·d]. */
  mergeHeads(x: X): X;
  /** Concatenation along the last axis of values [A, T, w_i]; a part with A = 1 is repeated over the others' A. */
  concatLast(parts: readonly X[]): X;
  /** Rows [start, start + count) of x [N, D]. */
  sliceRows(x: X, start: number, count: number): X;
  /** x's elements, in order, under another shape of as many (row-major: [Hkv, n·l, Dh] as [Hkv·n, l·Dh]). */
  reshape(x: X, shape: readonly number[]): X;
  /** Values [N_i, D] stacked: [Σ N_i, D]. */
  concatRows(parts: readonly X[]): X;
  /** src [A, T, w] written into rows at … at + T - 1 of dst [A, rows, w] (a cache), in place. */
  writeRows(dst: X, src: X, at: number): void;

  // ── arithmetic ──
  add(a: X, b: X): X;
  /** x [..., in] · Wᵀ with W [out, in] a weight. */
  linear(x: X, w: X): X;
  /** Writes C into c (offC + batches·strideC elements); B is a weight read in place (MLA's absorbed heads). */
  gemm(a: X, b: X, c: X, args: GemmArgs): void;
  rmsnorm(x: X, w: X, eps: number): X;
  /** LayerNorm over the last axis: (x - mean) / sqrt(var + eps) · w + b (DSA's indexer keys). */
  layernorm(x: X, w: X, b: X, eps: number): X;
  /** x [..., T, dim] rotated at the T absolute positions, pair i turned by the angle position·freqs[i]: the pairs
   *  are (2i, 2i + 1) when interleaved (DeepSeek-V3's MLA), (i, i + dim/2) when not (V3.2's indexer). */
  rope(x: X, positions: Int32Array, freqs: Float64Array, interleaved: boolean): X;
  /** silu(gate) ⊙ up. */
  swiglu(gate: X, up: X): X;
  /** Softmax over the last axis. */
  softmax(x: X): X;
  attention(q: X, k: X, v: X, args: AttentionArgs): X;
  /** attention's probabilities, [H, Tq, Tk]: p[h, i, j] = softmax over the keys j <= offset + i of scale·q[h, i]·k[j]
   *  (rounded to float32 as scores and again as probabilities on the reference), 0 for the others; a query that sees
   *  no key (offset + i < 0) gets a row of zeros. No decay bias and no ring (ops refuse logGammas and firstRow). */
  attentionProbs(q: X, k: X, args: AttentionArgs): X;
  /** probs [H, Tq, Tk] · v: out[h, i] = Σ_{j < Tk} probs[h, i, j]·v[h / (H / Hkv), j], [H, Tq, Dv], v [Hkv, kvRows, Dv]
   *  read over its first Tk rows. With attentionProbs: attention whose probabilities the host also reads (NSA). */
  attendWith(probs: X, v: X, args: AttendArgs): X;
  indexScores(q: X, keys: X, w: X, args: IndexScoreArgs): X;
  /** Σ over kept assignments of w · SwiGLU expert (x), x [N, D], w from `routing`. `router` carries the router's
   *  logits [N, E] as a value and its configuration, for a backend that differentiates through the chosen experts'
   *  weights (tfjs: the gradient reaches the gate through them, as in DeepSeek-V3); the others ignore it. */
  moe(x: X, routing: Routing, experts: ExpertValues<X>, router?: { logits: X; config: MoeConfig }): X;
  /** x · Wᵀ with W quantised (src/quant/linear.ts), activations quantised too when asked. Optional: without it,
   *  weight-only schemes run as their dequantised weights and quantised activations run on the host. */
  quantLinear?(x: X, w: QuantWeight, activations: boolean): X;

  /** Called when a forward ends (success or not): a chance to return memory that is no longer needed. */
  settle?(): void;
}
