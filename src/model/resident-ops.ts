// The operations a backend provides to run the whole model with its tensors resident on its device (WebGPU's GPU
// buffers, WASM's linear memory): src/model/resident.ts is the one forward written against them. A handle is
// opaque to the forward: it only reads its shape. Weights are handles too (made once per Float32Array by the
// backend); activations come from the backend's pool and go back with release(). Index lists (token ids, rows,
// residual slots) are host arrays: each backend moves them as it likes.

import { type Routing } from "../moe/experts.ts";
import { type Tensor } from "../tensor.ts";

/** A tensor living on the backend's device: the forward reads only its shape. */
export interface ResidentTensor {
  readonly shape: readonly number[];
}

/**
 * Block copy: for batch b < batches, row r < rows, column c < width:
 *   dst[dstOff + b·dstBatch + r·dstRow + c] = src[srcOff + b·srcBatch + r·srcRow + c].
 * Head splits, merges and cache appends are all this one operation.
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

/** Causal attention of Tq new queries at positions offset … offset + Tq - 1 over Tk keys (one sequence). */
export interface ResidentAttentionArgs {
  H: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  Dh: number;
  Dv: number;
  scale: number;
  offset: number;
  /** ln γ per query head: the relative decay bias (position - j)·ln γ_h. */
  logGammas?: Float32Array;
  /** Rows each kv head holds in k and v (a cache allocated for more positions than it has filled). */
  kvRows: number;
}

/** Stacked expert weights (gate, up [E, F, D], down [E, D, F]) as resident handles. */
export interface ResidentExperts<X> {
  gate: X;
  up: X;
  down: X;
  E: number;
  F: number;
  D: number;
}

export interface ResidentOps<X extends ResidentTensor> {
  /** The backend's name, for messages ("webgpu", "wasm"). */
  readonly name: string;
  /** The resident copy of a weight (made once per Float32Array; never released). */
  weight(t: Tensor): X;
  /** An uninitialised tensor from the pool. */
  empty(shape: readonly number[]): X;
  /** The same storage under another shape (never released itself). */
  view(x: X, shape: readonly number[]): X;
  /** Hands tensors back to the pool; weights and views are ignored. */
  release(...xs: X[]): void;
  /** Frees a tensor's storage for good (a cache being dropped), not only back to the pool. */
  free(x: X): void;
  /** The tensor's values on the host. */
  read(x: X): Float32Array | Promise<Float32Array>;
  /** Rows `ids` of a weight table [V, D] (the embedding). */
  embed(table: Tensor, ids: Uint32Array): X;
  /** Rows `rows` of x [N, D]. */
  gatherRows(x: X, rows: readonly number[]): X;
  /** x + update[slot[r]] on rows whose slot is >= 0; other rows keep x. */
  addRows(x: X, update: X, slots: Int32Array): X;
  add(a: X, b: X): X;
  /** x [..., in] · Wᵀ with W [out, in] a weight. */
  linear(x: X, weight: X): X;
  /** Writes C into c (offC + batches·strideC elements). */
  gemm(a: X, b: X, c: X, args: GemmArgs): void;
  rmsnorm(x: X, weight: X, eps: number): X;
  /** The rotation table for these positions and frequencies (what rope takes). */
  ropeTable(positions: readonly number[], freqs: Float64Array): X;
  /** x [..., T, dim] rotated by a table of T rows. */
  rope(x: X, table: X, T: number): X;
  swiglu(gate: X, up: X): X;
  softmax(x: X): X;
  copyBlocks(src: X, dst: X, b: BlockCopy): void;
  /** q [1, H, Tq, Dh] over k [1, Hkv, kvRows, Dh], v [1, Hkv, kvRows, Dv] → [1, H, Tq, Dv]. */
  attention(q: X, k: X, v: X, args: ResidentAttentionArgs): X;
  /** Σ over kept assignments of w · SwiGLU expert (x), x [N, D]. */
  moe(x: X, routing: Routing, experts: ResidentExperts<X>): X;
  /** Called when a forward ends (success or not): a chance to return memory the pool no longer needs. */
  settle?(): void;
}
