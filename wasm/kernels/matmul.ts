// Matrix products on the module's packed-panel gemm (wasm/assembly/matmul.ts): B is packed into panels of 8
// columns, once for a weight (kept resident in the weight cache, wasm/weights.ts) or on every call for an operand,
// and large products split over the pool by rows or panels (the kernel splits the dimension with more tiles).
// Pointer-level: gemm, gemmBatches, linearAt, quantLinearAt and the packed-weight helpers, which the device kernels
// call too; host kernels: matmul, bmm, linear and quantLinear over Tensors.

import { argError } from "../../src/errors.ts";
import { dequantizeFp8, quantizeActivationTiles } from "../../src/quant/fp8.ts";
import { dequantizeInt } from "../../src/quant/int.ts";
import { quantizeTokenInt8, type QuantLinearOptions, type QuantWeight } from "../../src/quant/linear.ts";
import { expectShape, isConstant, numel, shapeString, type Tensor } from "../../src/tensor.ts";
import { CHUNKS_PER_THREAD, fits, type WasmCore } from "../core.ts";
import { bf16Weight } from "./bf16.ts";

/** Bytes of B [K, N] packed into panels of 8 columns (zeros past N). */
export const panelBytes = (K: number, N: number) => Math.ceil(N / 8) * 8 * K * 4;

/** 2²⁶: packs two sizes into one weight-cache key number (each below 2²⁶). */
const KEY = 2 ** 26;

/** Pool chunks for an M × K · K × N product: a few per thread when it pays, else 1 (the calling thread). */
function gemmChunks(core: WasmCore, M: number, N: number, K: number): number {
  const tiles = Math.max(Math.ceil(N / 8), Math.ceil(M / 4));
  return core.pool && 2 * M * N * K >= core.parallelFlops && tiles > 1 ? Math.min(tiles, CHUNKS_PER_THREAD * core.threads) : 1;
}

/**
 * C[M, N] = A · B for B packed at bp; rows or panels split over the pool when it pays. With `outLength` (≥ 0) it
 * also returns a fresh array for the result (core.readInto), made while the pool works. `kernel` "gemmBf16" when bp
 * holds BF16 panels (wasm/kernels/bf16.ts). Inside a kernel's try.
 */
export function gemm(core: WasmCore, M: number, N: number, K: number, a: number, bp: number, c: number, outLength = -1,
  kernel: "gemm" | "gemmBf16" = "gemm"): Float32Array | undefined {
  const chunks = gemmChunks(core, M, N, K);
  if (chunks === 1) {
    core.ex[kernel](M, N, K, a, K, bp, c, N, core.localScratch, 0, 1);
    return outLength >= 0 ? core.output(outLength) : undefined;
  }
  let out: Float32Array | undefined;
  const args = [M, N, K, a, K, bp, c, N, core.alloc(chunks * core.gemmScratch)];
  core.pool!.run(kernel, args, core.ex[kernel], chunks, outLength >= 0 ? () => (out = core.touchedOutput(outLength)) : undefined);
  return out;
}

/**
 * gemm for B [K, N] at b, packed into bp on the way. Split on panels over the pool, every chunk packs its own
 * panels (gemmPackB): one job, no barrier between packing and product, and no panel crosses cores.
 */
function gemmB(core: WasmCore, M: number, N: number, K: number, a: number, b: number, bp: number, c: number, outLength = -1): Float32Array | undefined {
  const chunks = gemmChunks(core, M, N, K);
  if (chunks === 1 || Math.ceil(N / 8) < Math.ceil(M / 4)) {
    packB(core, b, K, N, bp, M);
    return gemm(core, M, N, K, a, bp, c, outLength);
  }
  let out: Float32Array | undefined;
  const args = [M, N, K, a, K, b, N, bp, c, N, core.alloc(chunks * core.gemmScratch)];
  core.pool!.run("gemmPackB", args, core.ex.gemmPackB, chunks, outLength >= 0 ? () => (out = core.touchedOutput(outLength)) : undefined);
  return out;
}

/** Packs B [K, N] into panels, over the pool when the matmul it serves goes there (else it stays serial). */
function packB(core: WasmCore, b: number, K: number, N: number, bp: number, M: number): void {
  const panels = Math.ceil(N / 8);
  if (core.pool && 2 * M * N * K >= core.parallelFlops && panels > 1) {
    core.pool.run("packPanels", [b, K, N, N, bp], core.ex.packPanels, Math.min(panels, core.threads));
  } else {
    core.ex.packB(b, K, N, N, bp);
  }
}

/** `batches` products C_i = A_i · B_i [M, K] · [K, N], B_i packed at bp + i · panelBytes; strides in elements. */
export function gemmBatches(core: WasmCore, batches: number, M: number, N: number, K: number, a: number, strideA: number, bp: number, c: number, strideC: number): void {
  const panel = panelBytes(K, N);
  for (let i = 0; i < batches; i++) gemm(core, M, N, K, a + i * strideA * 4, bp + i * panel, c + i * strideC * 4);
}

/** W [N, K] packed as Wᵀ panels, resident across calls. */
export function packedWeight(core: WasmCore, data: Float32Array, N: number, K: number): number {
  const { weights, heap, ex } = core;
  return weights.find(data, "t", N, K) || weights.get(data, "t", N, K, panelBytes(K, N), (ptr) => {
    const raw = heap.put(data);
    ex.packBt(raw, N, K, K, ptr);
    heap.release(raw);
  });
}

/**
 * A constant's slices B_i = data[offB + i·strideB …] ([N, K] when transB, else [K, N]) packed, one panel set each,
 * resident across calls: bmm's constant operand (MLA's absorbed weights) and the device gemm's weight.
 */
export function packedSlices(core: WasmCore, data: Float32Array, transB: boolean, K: number, N: number, offB: number, strideB: number, batches: number): number {
  const { weights, heap, ex } = core;
  const kind = transB ? "sliceT" : "slice";
  const panel = panelBytes(K, N);
  // The key holds K, N, offB and strideB; the number of slices follows from them for a given weight.
  const a = K * KEY + N, b = offB * KEY + strideB;
  return weights.find(data, kind, a, b) || weights.get(data, kind, a, b, Math.max(1, batches * panel), (ptr) => {
    const raw = heap.put(data);
    for (let i = 0; i < batches; i++) {
      const at = raw + (offB + i * strideB) * 4;
      if (transB) ex.packBt(at, N, K, K, ptr + i * panel);
      else ex.packB(at, K, N, N, ptr + i * panel);
    }
    heap.release(raw);
  });
}

/** x [M, K] at px times Wᵀ (W [N, K], packed and resident) into out; outLength as gemm's. Inside a kernel's try. */
export function linearAt(core: WasmCore, px: number, M: number, N: number, K: number, w: Float32Array, out: number, outLength = -1): Float32Array | undefined {
  const bf16 = bf16Weight(core, w, N, K); // BF16 panels when W is exactly BF16 (wasm/kernels/bf16.ts): the same bits
  if (bf16) return gemm(core, M, N, K, px, bf16, out, outLength, "gemmBf16");
  return gemm(core, M, N, K, px, packedWeight(core, w, N, K), out, outLength);
}

/**
 * Quantised linear on x [rows, K] at px into out [rows, N]: the weight is dequantised once (codes · scales, in
 * float32) and kept packed like any other; activations are quantised per row exactly as the reference does (int8
 * per token, e4m3 per 128-wide tile) and turned back into values·scale in the arena, so the product is the same
 * sum as the reference's, in float32. Inside a kernel's try.
 */
export function quantLinearAt(core: WasmCore, px: number, rows: number, w: QuantWeight, activations: boolean, out: number): void {
  const [N, K] = w.shape;
  const codes = w.scheme === "fp8" ? w.bits : w.codes;
  const bp = core.weights.get(codes, `q${w.scheme}`, N, K, panelBytes(K, N), (ptr) => {
    const raw = core.heap.put((w.scheme === "fp8" ? dequantizeFp8(w) : dequantizeInt(w)).data);
    core.ex.packBt(raw, N, K, K, ptr);
    core.heap.release(raw);
  });
  let pa = px;
  if (w.scheme === "fp8" || activations) {
    pa = core.alloc(rows * K * 4);
    const f32 = core.heap.F32; // after the allocations, which may grow the memory
    for (let r = 0; r < rows; r++) {
      const row = f32.subarray((px >>> 2) + r * K, (px >>> 2) + (r + 1) * K), at = (pa >>> 2) + r * K;
      if (w.scheme === "fp8") {
        const { values, scales } = quantizeActivationTiles(row, w.block);
        for (let i = 0; i < K; i++) f32[at + i] = values[i]! * scales[Math.floor(i / w.block)]!;
      } else {
        const { codes: q, scale } = quantizeTokenInt8(row);
        for (let i = 0; i < K; i++) f32[at + i] = q[i]! * scale;
      }
    }
  }
  gemm(core, rows, N, K, pa, bp, out);
}

export function matmul(core: WasmCore, a: Tensor, b: Tensor): Tensor {
  if (a.shape.length < 2) throw argError("a", "shape [..., M, K]", shapeString(a.shape));
  const K = a.shape[a.shape.length - 1]!;
  const { N } = expectShape("b", b, ["K", "N"], { K });
  const M = K === 0 ? numel(a.shape.slice(0, -1)) : a.data.length / K;
  try {
    const pa = core.put(a.data), pbRaw = core.put(b.data);
    const bp = core.alloc(panelBytes(K, N));
    const c = core.alloc(M * N * 4);
    const out = gemmB(core, M, N, K, pa, pbRaw, bp, c, M * N)!;
    core.verify("matmul");
    return core.readInto(out, c, [...a.shape.slice(0, -1), N]);
  } finally {
    core.temp.reset();
  }
}

/** N for bmm's b [lead..., K, N]; the reference's shape check (and message) only when the quick one fails. */
function bmmColumns(b: Tensor, lead: readonly number[], K: number): number {
  const s = b?.shape;
  if (Array.isArray(s) && b.data instanceof Float32Array && s.length === lead.length + 2 && s[lead.length] === K) {
    let same = b.data.length === numel(s);
    for (let i = 0; i < lead.length && same; i++) same = s[i] === lead[i];
    if (same) return s[s.length - 1]!;
  }
  const names = lead.map((_, i) => `b${i}`);
  const known = { ...Object.fromEntries(lead.map((d, i) => [`b${i}`, d])), K };
  return expectShape("b", b, [...names, "K", "N"], known).N!;
}

// bmm's b is packed and kept resident when its maker marked it constant (src/tensor.ts markConstant): MLA's
// absorbed W_uk and W_uvᵀ are made once per weight and passed every step. Anything else is packed per call, so an
// array a caller changes in place between calls can never give a stale result.

export function bmm(core: WasmCore, a: Tensor, b: Tensor): Tensor {
  if (a.shape.length < 3) throw argError("a", "shape [batch..., M, K]", shapeString(a.shape));
  const lead = a.shape.slice(0, -2);
  const M = a.shape[a.shape.length - 2]!, K = a.shape[a.shape.length - 1]!;
  const N = bmmColumns(b, lead, K);
  const batches = numel(lead);
  const resident = isConstant(b.data) ? packedSlices(core, b.data, false, K, N, 0, K * N, batches) : 0;
  try {
    const pa = core.put(a.data);
    const c = core.alloc(batches * M * N * 4);
    if (resident) {
      gemmBatches(core, batches, M, N, K, pa, M * K, resident, c, M * N);
    } else {
      const pb = core.put(b.data);
      const bp = core.alloc(panelBytes(K, N));
      for (let i = 0; i < batches; i++) gemmB(core, M, N, K, pa + i * M * K * 4, pb + i * K * N * 4, bp, c + i * M * N * 4);
    }
    core.verify("bmm");
    return core.read(c, [...lead, M, N], batches * M * N);
  } finally {
    core.temp.reset();
  }
}

export function linear(core: WasmCore, x: Tensor, weight: Tensor): Tensor {
  if (x.shape.length < 1) throw argError("x", "shape [..., in]", shapeString(x.shape));
  const K = x.shape[x.shape.length - 1]!;
  if (!fits(weight, 2) || weight.shape[1] !== K) expectShape("weight", weight, ["out", "in"], { in: K });
  const N = weight.shape[0]!;
  const M = K === 0 ? numel(x.shape.slice(0, -1)) : x.data.length / K;
  try {
    const pa = core.put(x.data);
    const c = core.alloc(M * N * 4);
    const out = linearAt(core, pa, M, N, K, weight.data, c, M * N)!;
    core.verify("linear");
    const shape = x.shape.slice();
    shape[shape.length - 1] = N;
    return core.readInto(out, c, shape);
  } finally {
    core.temp.reset();
  }
}

export function quantLinear(core: WasmCore, x: Tensor, w: QuantWeight, options: QuantLinearOptions = {}): Tensor {
  const [N, K] = w.shape;
  if (x.shape[x.shape.length - 1] !== K) throw argError("x", `shape [..., ${K}]`, `[${x.shape.join(", ")}]`);
  const rows = K === 0 ? numel(x.shape.slice(0, -1)) : x.data.length / K;
  try {
    const px = core.put(x.data);
    const c = core.alloc(rows * N * 4);
    quantLinearAt(core, px, rows, w, !!options.activations, c);
    core.verify("quantLinear");
    return core.read(c, [...x.shape.slice(0, -1), N], rows * N);
  } finally {
    core.temp.reset();
  }
}
