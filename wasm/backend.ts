// The WASM SIMD backend: the Kernels interface over an AssemblyScript module (wasm/assembly/) compiled with
// SIMD128 into wasm/build/tinyseek.wasm. Inputs are copied into the module's memory per call, weights are packed
// once and stay resident (wasm/weights.ts: linear's and the experts' weights, RMSNorm's, and bmm's second operand
// when it is marked constant, as MLA's absorbed weights are), outputs are copied out; large matmuls
// and attention split across a worker pool sharing the memory (wasm/pool.ts). Validation matches the
// reference's, argument names and all. A decode step is ~80 small calls, so each call is kept cheap: see
// wasmKernels below.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { type Backend, type BackendOptions } from "../src/backend.ts";
import { argError, checkInteger, checkNumber, TinyseekError } from "../src/errors.ts";
import { type FusedAttentionOptions, type Kernels } from "../src/kernels.ts";
import { type MaskSpec } from "../src/masks.ts";
import { type ExpertWeights, type Routing } from "../src/moe/experts.ts";
import { dequantizeFp8, quantizeActivationTiles } from "../src/quant/fp8.ts";
import { dequantizeInt } from "../src/quant/int.ts";
import { quantizeTokenInt8, type QuantLinearOptions, type QuantWeight } from "../src/quant/linear.ts";
import { ropeSizes } from "../src/rope.ts";
import { expectShape, isConstant, numel, shapeString, type Tensor } from "../src/tensor.ts";
// Type-only: erased, so loading the kernels never loads the model code.
import type { Model } from "../src/model/weights.ts";
import type { ResidentForwardOptions, ResidentForwardResult } from "../src/model/resident.ts";
import { Arena } from "./arena.ts";
import { Heap } from "./heap.ts";
import type { WasmTensor } from "./model.ts";
import { Pool } from "./pool.ts";
import { WebAssemblyApi, type WasmModule } from "./webassembly.ts";
import { WeightCache } from "./weights.ts";

export interface WasmOptions extends BackendOptions {
  /** Guard bytes around every buffer, checked after each kernel, and NaN-filled outputs (tests). Env: TINYSEEK_WASM_CHECK=1. */
  check?: boolean;
  /** Bytes of packed weights kept resident before the least recently used are evicted (default 1 GiB). */
  weightBudget?: number;
  /** Jobs of fewer flops stay on the calling thread (default 2²¹; 0 sends every matmul and attention to the pool). */
  parallelFlops?: number;
  /**
   * Use the relaxed-SIMD build (fused multiply-add in matmul) where the engine supports it: Node 22+, or Node 20
   * with --experimental-wasm-relaxed-simd. Default true; env TINYSEEK_WASM_RELAXED=0 turns it off. Its results
   * round once per multiply-add instead of twice, so they differ from the SIMD128 build's in the last bits.
   */
  relaxed?: boolean;
}

export interface Exports {
  heapBase(): number;
  gemm(M: number, N: number, K: number, a: number, lda: number, bp: number, c: number, ldc: number, scratch: number, part: number, parts: number): void;
  gemmScratch(): number;
  gemmPackB(M: number, N: number, K: number, a: number, lda: number, b: number, ldb: number, bp: number, c: number, ldc: number, scratch: number, part: number, parts: number): void;
  packB(b: number, K: number, N: number, ldb: number, out: number): void;
  packPanels(b: number, K: number, N: number, ldb: number, out: number, part: number, parts: number): void;
  packBt(w: number, N: number, K: number, ldw: number, out: number): void;
  attention(
    q: number, k: number, v: number, out: number, B: number, H: number, Hkv: number, Tq: number, Tk: number, Dh: number, Dv: number,
    scale: number, lo: number, hi: number, logGammas: number, offset: number, scratch: number, scratchStride: number, part: number, parts: number,
  ): void;
  attentionScratch(Tk: number, Dh: number, Dv: number): number;
  softmax(x: number, flags: number, rows: number, N: number, out: number): void;
  rmsnorm(x: number, w: number, rows: number, D: number, eps: number, out: number): void;
  rope(x: number, cosines: number, sines: number, planes: number, T: number, dim: number, out: number): void;
  silu(x: number, n: number, out: number): void;
  swiglu(gate: number, up: number, n: number, out: number): void;
}

/** Exports that split across threads (they take part, parts last). */
const THREADED = ["gemm", "gemmPackB", "attention", "packPanels"];
/** Below this many flops a job stays on the calling thread: waking a worker costs tens of microseconds. */
const PARALLEL_FLOPS = 2 ** 21;
/** Chunks per thread: enough that a thread the OS runs late leaves little for the others to wait on. */
const CHUNKS_PER_THREAD = 4;
/** Outputs of up to SLAB_MAX bytes are carved from shared SLAB_BYTES buffers (see output() below). */
const SLAB_BYTES = 32768, SLAB_MAX = 4096;

const buildPath = (name: string) => fileURLToPath(new URL(`./build/${name}`, import.meta.url));
const compiled = new Map<string, Promise<WasmModule>>();

/**
 * The compiled module (built first if this checkout has not built it yet): the relaxed-SIMD build when asked for
 * and the engine validates it, else the SIMD128 one. Says which it gave.
 */
export async function wasmModule(relaxed: boolean): Promise<{ module: WasmModule; relaxed: boolean }> {
  const path = buildPath("tinyseek.wasm"), relaxedPath = buildPath("tinyseek.relaxed.wasm");
  if (!existsSync(path) || !existsSync(relaxedPath)) {
    execFileSync(process.execPath, [fileURLToPath(new URL("./build.mjs", import.meta.url))], { stdio: "inherit" });
  }
  if (!existsSync(path)) throw new TinyseekError(`wasm: ${path} is missing: run npm run build:wasm`);
  const use = relaxed && existsSync(relaxedPath) && WebAssemblyApi.validate(readFileSync(relaxedPath)) ? relaxedPath : path;
  if (!compiled.has(use)) compiled.set(use, WebAssemblyApi.compile(readFileSync(use)));
  return { module: await compiled.get(use)!, relaxed: use === relaxedPath };
}

export interface WasmStats {
  liveBytes: number;
  liveBlocks: number;
  memoryBytes: number;
  weightBytes: number;
}

export interface WasmBackend extends Backend {
  /** Memory in use and resident weights (tests and benchmarks watch these over long runs). */
  stats(): WasmStats;
  /** The whole forward kept in WASM memory (wasm/model.ts; caches from its createWasmCache). */
  forwardModel(model: Model, tokens: ArrayLike<number>, options?: ResidentForwardOptions<WasmTensor>): Promise<ResidentForwardResult>;
}

export async function createBackend(options: WasmOptions = {}): Promise<WasmBackend> {
  const threads = options.threads ?? availableParallelism();
  checkInteger("threads", threads, 1, 256);
  const check = options.check ?? process.env.TINYSEEK_WASM_CHECK === "1";
  const { module, relaxed } = await wasmModule(options.relaxed ?? process.env.TINYSEEK_WASM_RELAXED !== "0");
  const memory = new WebAssemblyApi.Memory({ initial: 256, maximum: 65536, shared: true });
  const abort = () => {
    throw new TinyseekError("wasm: the module aborted");
  };
  const instance = await WebAssemblyApi.instantiate(module, { env: { memory, abort } });
  const exports = instance.exports as unknown as Exports;
  const heap = new Heap(memory, exports.heapBase(), check);
  const pool = threads > 1 ? await Pool.create(module, memory, threads, THREADED) : undefined;
  const weights = new WeightCache(heap, options.weightBudget ?? 2 ** 30);
  const kernels = wasmKernels(exports, heap, weights, pool, options.parallelFlops ?? PARALLEL_FLOPS);
  let resident: typeof import("./model.ts") | undefined;
  return {
    name: "wasm",
    description: `WebAssembly ${relaxed ? "relaxed SIMD" : "SIMD128"}, ${threads} thread${threads > 1 ? "s" : ""}${check ? ", checked buffers" : ""}`,
    kernels,
    asyncKernels: kernels,
    // Loaded on first use (a user of the kernels alone never loads the model code), then kept: a decode step is
    // ~200 µs, and even a resolved import() costs a few.
    forwardModel: async (model, tokens, forwardOptions) => (resident ??= await import("./model.ts")).forwardInWasm(kernels, model, tokens, forwardOptions),
    dispose: async () => {
      weights.clear();
      await pool?.dispose();
    },
    stats: () => ({ ...heap.stats(), weightBytes: weights.residentBytes }),
  };
}

/** Memory statistics of a wasm backend (undefined for others). */
export function wasmStats(backend: Backend): WasmStats | undefined {
  return "stats" in backend ? (backend as WasmBackend).stats() : undefined;
}

function wasmKernels(ex: Exports, heap: Heap, weights: WeightCache, pool: Pool | undefined, parallelFlops: number): Kernels {
  const threads = pool?.threads ?? 1;
  const gemmScratch = ex.gemmScratch();
  // A decode step makes ~80 small calls, so the fixed cost of a call matters as much as its arithmetic: no closure
  // per call (each kernel frees its temporaries in its own finally), inputs written through the heap's
  // whole-memory views, one resident scratch block for every matmul that stays on the calling thread, resident
  // weights found through a per-array memo (WeightCache.find), shape checks done inline with expectShape called
  // only to word an error, outputs carved from slabs (output() below).
  const localScratch = heap.alloc(gemmScratch);

  const temp = new Arena(heap);
  /** A kernel's last step on success: checks every guard (check mode). The caller's finally resets the arena. */
  function verify(kernel: string): void {
    if (heap.check) heap.verify(kernel);
  }
  function put(data: Float32Array | Int32Array | Uint8Array): number {
    return temp.put(data);
  }
  function alloc(bytes: number): number {
    return temp.alloc(bytes);
  }
  // Outputs. A fresh Float32Array of more than 64 bytes costs V8 ~0.7 µs (a backing store off the JS heap, zeroed
  // and tracked): more than the rest of a small call. So outputs up to SLAB_MAX bytes are views carved one after
  // another out of a SLAB_BYTES ArrayBuffer, and a new slab is made when one is used up: a slab lives as long as
  // any output in it is referenced, then goes to the garbage collector like any array. An output's buffer may thus
  // hold other tensors' data beside its own, as appendTime's cache views and the expert views already do.
  let slab = new ArrayBuffer(SLAB_BYTES), slabTop = 0;
  function output(n: number): Float32Array {
    const bytes = n * 4;
    if (bytes <= 64 || bytes > SLAB_MAX) return new Float32Array(n);
    if (slabTop + bytes > SLAB_BYTES) {
      slab = new ArrayBuffer(SLAB_BYTES);
      slabTop = 0;
    }
    const data = new Float32Array(slab, slabTop, n);
    slabTop += (bytes + 15) & ~15;
    return data;
  }
  /** The n floats at ptr as a new tensor (new + set: slice() of a view of shared memory is far slower in V8). */
  function read(ptr: number, shape: readonly number[], n: number): Tensor {
    const data = output(n);
    const at = ptr >>> 2;
    data.set(heap.F32.subarray(at, at + n));
    return { shape: [...shape], data };
  }

  /** Pool chunks for an M × K · K × N product: a few per thread when it pays, else 1 (the calling thread). */
  function gemmChunks(M: number, N: number, K: number): number {
    const tiles = Math.max(Math.ceil(N / 8), Math.ceil(M / 4));
    return pool && 2 * M * N * K >= parallelFlops && tiles > 1 ? Math.min(tiles, CHUNKS_PER_THREAD * threads) : 1;
  }

  /**
   * C[M, N] = A · B for B packed at bp; rows or panels split over the pool when it pays (the kernel splits the
   * dimension with more tiles). With `outLength` (≥ 0) it also returns a fresh array for the result (readInto),
   * made while the pool works. Inside a kernel's try.
   */
  function gemm(M: number, N: number, K: number, a: number, bp: number, c: number, outLength = -1): Float32Array | undefined {
    const chunks = gemmChunks(M, N, K);
    if (chunks === 1) {
      ex.gemm(M, N, K, a, K, bp, c, N, localScratch, 0, 1);
      return outLength >= 0 ? output(outLength) : undefined;
    }
    let out: Float32Array | undefined;
    const args = [M, N, K, a, K, bp, c, N, alloc(chunks * gemmScratch)];
    pool!.run("gemm", args, ex.gemm, chunks, outLength >= 0 ? () => (out = touchedOutput(outLength)) : undefined);
    return out;
  }
  const panelBytes = (K: number, N: number) => Math.ceil(N / 8) * 8 * K * 4;

  /**
   * gemm for B [K, N] at b, packed into bp on the way. Split on panels over the pool, every chunk packs its own
   * panels (gemmPackB): one job, no barrier between packing and product, and no panel crosses cores.
   */
  function gemmB(M: number, N: number, K: number, a: number, b: number, bp: number, c: number, outLength = -1): Float32Array | undefined {
    const chunks = gemmChunks(M, N, K);
    if (chunks === 1 || Math.ceil(N / 8) < Math.ceil(M / 4)) {
      packB(b, K, N, bp, M);
      return gemm(M, N, K, a, bp, c, outLength);
    }
    let out: Float32Array | undefined;
    const args = [M, N, K, a, K, b, N, bp, c, N, alloc(chunks * gemmScratch)];
    pool!.run("gemmPackB", args, ex.gemmPackB, chunks, outLength >= 0 ? () => (out = touchedOutput(outLength)) : undefined);
    return out;
  }

  /**
   * A fresh output of n floats with its pages written once, made while a pool job runs (Pool.run's meanwhile):
   * its allocation and page faults (~0.6 ms for 1 MiB here, eight times the copy into it) overlap the job.
   */
  function touchedOutput(n: number): Float32Array {
    const data = output(n);
    for (let i = 0; i < n; i += 1024) data[i] = 0;
    return data;
  }

  /** The result at ptr copied into `data` (from gemm's outLength), as read() does. */
  function readInto(data: Float32Array, ptr: number, shape: number[]): Tensor {
    const at = ptr >>> 2;
    data.set(heap.F32.subarray(at, at + data.length));
    return { shape, data };
  }

  /** Packs B [K, N] into panels, over the pool when the matmul it serves goes there (else it stays serial). */
  function packB(b: number, K: number, N: number, bp: number, M: number): void {
    const panels = Math.ceil(N / 8);
    if (pool && 2 * M * N * K >= parallelFlops && panels > 1) {
      pool.run("packPanels", [b, K, N, N, bp], ex.packPanels, Math.min(panels, threads));
    } else {
      ex.packB(b, K, N, N, bp);
    }
  }

  /** W [N, K] packed as Wᵀ panels, resident across calls. */
  function packedWeight(data: Float32Array, N: number, K: number): number {
    return weights.find(data, "t", N, K) || weights.get(data, "t", N, K, panelBytes(K, N), (ptr) => {
      const raw = heap.put(data);
      ex.packBt(raw, N, K, K, ptr);
      heap.release(raw);
    });
  }

  /** A vector weight (RMSNorm's) copied in once and resident, like a linear weight. */
  function residentVector(data: Float32Array): number {
    return weights.find(data, "v", data.length, 0) || weights.get(data, "v", data.length, 0, data.byteLength, (ptr) => heap.write(ptr, data));
  }

  function matmul(a: Tensor, b: Tensor): Tensor {
    if (a.shape.length < 2) throw argError("a", "shape [..., M, K]", shapeString(a.shape));
    const K = a.shape[a.shape.length - 1]!;
    const { N } = expectShape("b", b, ["K", "N"], { K });
    const M = K === 0 ? numel(a.shape.slice(0, -1)) : a.data.length / K;
    try {
      const pa = put(a.data), pbRaw = put(b.data);
      const bp = alloc(panelBytes(K, N));
      const c = alloc(M * N * 4);
      const out = gemmB(M, N, K, pa, pbRaw, bp, c, M * N)!;
      verify("matmul");
      return readInto(out, c, [...a.shape.slice(0, -1), N]);
    } finally {
      temp.reset();
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

  function bmm(a: Tensor, b: Tensor): Tensor {
    if (a.shape.length < 3) throw argError("a", "shape [batch..., M, K]", shapeString(a.shape));
    const lead = a.shape.slice(0, -2);
    const M = a.shape[a.shape.length - 2]!, K = a.shape[a.shape.length - 1]!;
    const N = bmmColumns(b, lead, K);
    const batches = numel(lead);
    const panel = panelBytes(K, N);
    let resident = 0;
    if (isConstant(b.data)) {
      resident = weights.find(b.data, "bmm", K, N) || weights.get(b.data, "bmm", K, N, Math.max(1, batches * panel), (ptr) => {
        const raw = heap.put(b.data);
        for (let i = 0; i < batches; i++) ex.packB(raw + i * K * N * 4, K, N, N, ptr + i * panel);
        heap.release(raw);
      });
    }
    try {
      const pa = put(a.data);
      const pb = resident ? 0 : put(b.data);
      const bp = resident ? 0 : alloc(panel);
      const c = alloc(batches * M * N * 4);
      for (let i = 0; i < batches; i++) {
        if (resident) {
          gemm(M, N, K, pa + i * M * K * 4, resident + i * panel, c + i * M * N * 4);
        } else {
          gemmB(M, N, K, pa + i * M * K * 4, pb + i * K * N * 4, bp, c + i * M * N * 4);
        }
      }
      verify("bmm");
      return read(c, [...lead, M, N], batches * M * N);
    } finally {
      temp.reset();
    }
  }

  function linear(x: Tensor, weight: Tensor): Tensor {
    if (x.shape.length < 1) throw argError("x", "shape [..., in]", shapeString(x.shape));
    const K = x.shape[x.shape.length - 1]!;
    if (!fits(weight, 2) || weight.shape[1] !== K) expectShape("weight", weight, ["out", "in"], { in: K });
    const N = weight.shape[0]!;
    const M = K === 0 ? numel(x.shape.slice(0, -1)) : x.data.length / K;
    const bp = packedWeight(weight.data, N, K);
    try {
      const pa = put(x.data);
      const c = alloc(M * N * 4);
      const out = gemm(M, N, K, pa, bp, c, M * N)!;
      verify("linear");
      const shape = x.shape.slice();
      shape[shape.length - 1] = N;
      return readInto(out, c, shape);
    } finally {
      temp.reset();
    }
  }

  /**
   * Quantised linear: the weight is dequantised once (codes · scales, in float32) and kept packed like any other;
   * activations are quantised per row exactly as the reference does (int8 per token, e4m3 per 128-wide tile) and
   * turned back into values·scale, so the product is the same sum as the reference's, in float32.
   */
  function quantLinear(x: Tensor, w: QuantWeight, options: QuantLinearOptions = {}): Tensor {
    const [N, K] = w.shape;
    if (x.shape[x.shape.length - 1] !== K) throw argError("x", `shape [..., ${K}]`, `[${x.shape.join(", ")}]`);
    const rows = K === 0 ? numel(x.shape.slice(0, -1)) : x.data.length / K;
    const codes = w.scheme === "fp8" ? w.bits : w.codes;
    const bp = weights.get(codes, `q${w.scheme}`, N, K, panelBytes(K, N), (ptr) => {
      const raw = heap.put((w.scheme === "fp8" ? dequantizeFp8(w) : dequantizeInt(w)).data);
      ex.packBt(raw, N, K, K, ptr);
      heap.release(raw);
    });
    let xs = x.data;
    if (w.scheme === "fp8" || options.activations) {
      xs = new Float32Array(x.data.length);
      for (let r = 0; r < rows; r++) {
        const row = x.data.subarray(r * K, (r + 1) * K);
        if (w.scheme === "fp8") {
          const { values, scales } = quantizeActivationTiles(row, w.block);
          for (let i = 0; i < K; i++) xs[r * K + i] = values[i]! * scales[Math.floor(i / w.block)]!;
        } else {
          const { codes: q, scale } = quantizeTokenInt8(row);
          for (let i = 0; i < K; i++) xs[r * K + i] = q[i]! * scale;
        }
      }
    }
    try {
      const pa = put(xs);
      const c = alloc(rows * N * 4);
      gemm(rows, N, K, pa, bp, c);
      verify("quantLinear");
      return read(c, [...x.shape.slice(0, -1), N], rows * N);
    } finally {
      temp.reset();
    }
  }

  function softmax(x: Tensor, visible?: Uint8Array): Tensor {
    const N = x.shape[x.shape.length - 1] ?? 1;
    if (visible && visible.length !== x.data.length) throw argError("visible", `${x.data.length} flags`, visible.length);
    if (N === 0 || x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(x.data.length) };
    try {
      const px = put(x.data);
      const flags = visible ? put(visible) : 0;
      const out = alloc(x.data.length * 4);
      ex.softmax(px, flags, x.data.length / N, N, out);
      verify("softmax");
      return read(out, x.shape, x.data.length);
    } finally {
      temp.reset();
    }
  }

  function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
    if (x.shape.length < 1) throw argError("x", "shape [..., D]", shapeString(x.shape));
    const D = x.shape[x.shape.length - 1]!;
    if (!fits(weight, 1) || weight.shape[0] !== D) expectShape("weight", weight, ["D"], { D });
    checkNumber("eps", eps, 0, 1);
    if (D === 0 || x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(x.data.length) };
    const pw = residentVector(weight.data);
    try {
      const px = put(x.data);
      const out = alloc(x.data.length * 4);
      ex.rmsnorm(px, pw, x.data.length / D, D, eps, out);
      verify("rmsnorm");
      return read(out, x.shape, x.data.length);
    } finally {
      temp.reset();
    }
  }

  function rope(x: Tensor, positions: ArrayLike<number>, freqs: Float64Array): Tensor {
    const { dim, T } = ropeSizes(x, positions, freqs);
    if (x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(0) };
    try {
      const px = put(x.data), pc = alloc(T * dim * 4), ps = alloc(T * dim * 4);
      const out = alloc(x.data.length * 4);
      writeRopeTables(heap.F32, pc >>> 2, ps >>> 2, positions, freqs, T);
      ex.rope(px, pc, ps, x.data.length / (T * dim), T, dim, out);
      verify("rope");
      return read(out, x.shape, x.data.length);
    } finally {
      temp.reset();
    }
  }

  function silu(x: Tensor): Tensor {
    try {
      const px = put(x.data);
      const out = alloc(x.data.length * 4);
      ex.silu(px, x.data.length, out);
      verify("silu");
      return read(out, x.shape, x.data.length);
    } finally {
      temp.reset();
    }
  }

  function swiglu(gate: Tensor, up: Tensor): Tensor {
    const gs = gate.shape, us = up?.shape;
    let same = Array.isArray(us) && up.data instanceof Float32Array && us.length === gs.length && up.data.length === numel(us);
    for (let i = 0; i < gs.length && same; i++) same = us[i] === gs[i];
    if (!same) expectShape("up", up, gs.map((_, i) => `d${i}`), Object.fromEntries(gs.map((d, i) => [`d${i}`, d])));
    try {
      const pg = put(gate.data), pu = put(up.data);
      const out = alloc(gate.data.length * 4);
      ex.swiglu(pg, pu, gate.data.length, out);
      verify("swiglu");
      return read(out, gate.shape, gate.data.length);
    } finally {
      temp.reset();
    }
  }

  /** The attention kernel on operands in memory (intervals at plo, phi; ln γ at pg or 0), split over the pool
   *  when it pays. Inside a kernel's try: its scratch comes from the arena. */
  function attentionAt(
    pq: number, pk: number, pv: number, out: number, B: number, H: number, Hkv: number, Tq: number, Tk: number, Dh: number, Dv: number,
    scale: number, plo: number, phi: number, pg: number, offset: number,
  ): void {
    const flops = 2 * B * H * Tq * Tk * (Dh + Dv);
    // Chunks are (batch row, kv head) units when there are enough of them, else row blocks of every unit (each
    // chunk then packs every unit's K and V again: a few percent of the work at T = 512).
    const units = B * Hkv, rowBlocks = Math.ceil(((H / Hkv) * Tq) / 4);
    const chunks = units >= threads ? units : rowBlocks;
    const parts = pool && flops >= parallelFlops && chunks > 1 ? Math.min(CHUNKS_PER_THREAD * threads, chunks) : 1;
    const stride = Math.ceil(ex.attentionScratch(Tk, Dh, Dv) / 64) * 64;
    const scratch = alloc(stride * parts); // one scratch region per chunk: chunks may run concurrently
    if (parts > 1) {
      const args = [pq, pk, pv, out, B, H, Hkv, Tq, Tk, Dh, Dv, scale, plo, phi, pg, offset, scratch, stride];
      pool!.run("attention", args, ex.attention as (...args: number[]) => void, parts);
    } else {
      ex.attention(pq, pk, pv, out, B, H, Hkv, Tq, Tk, Dh, Dv, scale, plo, phi, pg, offset, scratch, stride, 0, 1);
    }
  }

  function attention(q: Tensor, k: Tensor, v: Tensor, options: FusedAttentionOptions = {}): Tensor {
    if (!(fits(q, 4) && fits(k, 4) && fits(v, 4) && k.shape[0] === q.shape[0] && k.shape[3] === q.shape[3] &&
      v.shape[0] === q.shape[0] && v.shape[1] === k.shape[1] && v.shape[2] === k.shape[2])) {
      const { B, Dh } = expectShape("q", q, ["B", "H", "Tq", "Dh"]);
      const { Hkv, Tk } = expectShape("k", k, ["B", "Hkv", "Tk", "Dh"], { B, Dh });
      expectShape("v", v, ["B", "Hkv", "Tk", "Dv"], { B, Hkv, Tk });
    }
    const [B, H, Tq, Dh] = q.shape as [number, number, number, number];
    const [, Hkv, Tk] = k.shape as [number, number, number];
    const Dv = v.shape[3]!;
    if (Hkv === 0 || H % Hkv !== 0) throw argError("k", `a number of kv heads that divides H=${H}`, Hkv);
    const scale = options.scale ?? 1 / Math.sqrt(Dh);
    if (!Number.isFinite(scale)) throw argError("scale", "a finite number", scale);
    const mask = options.mask;
    const offset = checkMask(mask, B, Tq, Tk);
    const logGammas = options.logGammas;
    if (logGammas) {
      if (logGammas.length !== H) throw argError("logGammas", `${H} values (one per query head)`, logGammas.length);
      logGammas.forEach((g, h) => checkNumber(`logGammas[${h}]`, g, -Number.MAX_VALUE, 0, " (ln γ with γ in (0, 1])"));
      checkInteger("offset", offset, 0);
    }
    const outShape = [B, H, Tq, Dv];
    const size = B * H * Tq * Dv;
    if (size === 0) return { shape: outShape, data: new Float32Array(0) };
    try {
      const pq = put(q.data), pk = put(k.data), pv = put(v.data);
      const plo = alloc(B * Tq * 4), phi = alloc(B * Tq * 4);
      const pg = logGammas ? alloc(H * 4) : 0;
      const out = alloc(size * 4);
      fillIntervals(heap.I32, plo >>> 2, phi >>> 2, mask, offset, B, Tq, Tk);
      if (logGammas) for (let h = 0; h < H; h++) heap.F32[(pg >>> 2) + h] = logGammas[h]!;
      attentionAt(pq, pk, pv, out, B, H, Hkv, Tq, Tk, Dh, Dv, scale, plo, phi, pg, offset);
      verify("attention");
      return read(out, outShape, size);
    } finally {
      temp.reset();
    }
  }

  // Each expert's gate, up and down weights as views of the stacked tensors, made once per stacked array (the
  // model passes the same [E, F, D] tensors every step), so the weight cache's per-view memo hits every call.
  const expertViews = new WeakMap<Float32Array, { size: number; views: Float32Array[] }>();
  function expertWeight(stacked: Float32Array, e: number, size: number): Float32Array {
    let held = expertViews.get(stacked);
    if (!held || held.size !== size) expertViews.set(stacked, (held = { size, views: [] }));
    return (held.views[e] ??= stacked.subarray(e * size, (e + 1) * size));
  }

  let moeIndex = new Int32Array(0), moeSum = new Float64Array(0);
  function moe(x: Tensor, routing: Routing, experts: ExpertWeights): Tensor {
    const { gate, up, down } = experts;
    if (!(fits(x, 2) && fits(gate, 3) && fits(up, 3) && fits(down, 3) && gate.shape[2] === x.shape[1] &&
      up.shape[0] === gate.shape[0] && up.shape[1] === gate.shape[1] && up.shape[2] === gate.shape[2] &&
      down.shape[0] === gate.shape[0] && down.shape[1] === gate.shape[2] && down.shape[2] === gate.shape[1])) {
      const { D } = expectShape("x", x, ["N", "D"]);
      const { E, F } = expectShape("experts.gate", gate, ["E", "F", "D"], { D });
      expectShape("experts.up", up, ["E", "F", "D"], { E, F, D });
      expectShape("experts.down", down, ["E", "D", "F"], { E, F, D });
    }
    const [N, D] = x.shape as [number, number];
    const [E, F] = gate.shape as [number, number];
    try {
      const sum = moeAt(put(x.data), N, D, routing, gate.data, up.data, down.data, E, F);
      const out = output(N * D);
      for (let i = 0; i < N * D; i++) out[i] = sum[i]!;
      return { shape: [N, D], data: out };
    } finally {
      temp.reset();
    }
  }

  /**
   * The mixture for x at px [N, D] in memory: Σ over kept assignments of w · SwiGLU expert (x), summed in float64
   * as the reference does (the returned array is reused by the next call). Inside a kernel's try.
   */
  function moeAt(px: number, N: number, D: number, routing: Routing, gate: Float32Array, up: Float32Array, down: Float32Array, E: number, F: number): Float64Array {
    const { k } = routing;
    const A = N * k;
    if (routing.experts.length !== A) throw argError("routing.experts", `${A} entries (N=${N} · k=${k})`, routing.experts.length);
    if (routing.weights.length !== A) throw argError("routing.weights", `${A} entries (N=${N} · k=${k})`, routing.weights.length);
    if (routing.kept.length !== A) throw argError("routing.kept", `${A} entries (N=${N} · k=${k})`, routing.kept.length);
    // Kept assignments grouped by expert, in token order within each (a counting sort). The index arrays and (for
    // up to 2¹⁶ numbers, a decode step's size) the float64 sum are kept between calls, grown when too small.
    if (moeIndex.length < 2 * E + 1 + A) moeIndex = new Int32Array(2 * (2 * E + 1 + A));
    const start = moeIndex, next = E + 1, order = 2 * E + 1; // start[0..E], next[0..E), order[0..A)
    start.fill(0, 0, E + 1);
    for (let a = 0; a < A; a++) {
      const chosen = routing.experts[a]!;
      if (!Number.isInteger(chosen) || chosen < 0 || chosen >= E) {
        throw argError(`routing.experts[${a}]`, `an expert in [0, ${E - 1}]`, chosen);
      }
      if (routing.kept[a]) start[chosen + 1]!++;
    }
    let busiest = 0;
    for (let e = 0; e < E; e++) {
      busiest = Math.max(busiest, start[e + 1]!);
      start[e + 1]! += start[e]!;
      start[next + e] = start[e]!;
    }
    for (let a = 0; a < A; a++) if (routing.kept[a]) start[order + start[next + routing.experts[a]!]!++] = a;
    if (moeSum.length < N * D && N * D <= 1 << 16) moeSum = new Float64Array(N * D);
    const sum = N * D <= moeSum.length ? moeSum.fill(0, 0, N * D) : new Float64Array(N * D); // float64 over a token's k experts, as the reference
    if (busiest > 0) {
      const tokens = alloc(busiest * D * 4);
      const g = alloc(busiest * F * 4), u = alloc(busiest * F * 4);
      const y = alloc(busiest * D * 4);
      for (let e = 0; e < E; e++) {
        const from = start[e]!, n = start[e + 1]! - from;
        if (n === 0) continue;
        const rows = heap.F32;
        for (let i = 0; i < n; i++) {
          const src = (px >>> 2) + Math.floor(start[order + from + i]! / k) * D;
          rows.copyWithin((tokens >>> 2) + i * D, src, src + D);
        }
        // Each packed weight is used as soon as it is fetched: under a small weight budget, fetching the next one
        // may evict the last.
        gemm(n, F, D, tokens, packedWeight(expertWeight(gate, e, F * D), F, D), g);
        gemm(n, F, D, tokens, packedWeight(expertWeight(up, e, F * D), F, D), u);
        ex.swiglu(g, u, n * F, g);
        gemm(n, D, F, g, packedWeight(expertWeight(down, e, D * F), D, F), y);
        const f32 = heap.F32; // after the packing a first use does, which may grow the memory
        const ys = y >>> 2;
        for (let i = 0; i < n; i++) {
          const a = start[order + from + i]!, row = Math.floor(a / k) * D, w = routing.weights[a]!;
          for (let d = 0; d < D; d++) sum[row + d]! += w * f32[ys + i * D + d]!;
        }
      }
      verify("moe");
    }
    return sum;
  }

  const kernels: Kernels = { name: "wasm", matmul, bmm, linear, softmax, rmsnorm, rope, silu, swiglu, attention, moe, quantLinear };
  cores.set(kernels, { ex, heap, weights, temp, kernels, gemm, packedWeight, residentVector, attentionAt, moeAt });
  return kernels;
}

/** What the resident forward (wasm/model.ts) shares with the kernels: the module, its memory and weights, the
 *  per-call arena and the kernels' own helpers (so that both split work over the pool the same way). */
export interface WasmCore {
  ex: Exports;
  heap: Heap;
  weights: WeightCache;
  temp: Arena;
  kernels: Kernels;
  gemm(M: number, N: number, K: number, a: number, bp: number, c: number): void;
  packedWeight(data: Float32Array, N: number, K: number): number;
  residentVector(data: Float32Array): number;
  attentionAt(
    pq: number, pk: number, pv: number, out: number, B: number, H: number, Hkv: number, Tq: number, Tk: number, Dh: number, Dv: number,
    scale: number, plo: number, phi: number, pg: number, offset: number,
  ): void;
  moeAt(px: number, N: number, D: number, routing: Routing, gate: Float32Array, up: Float32Array, down: Float32Array, E: number, F: number): Float64Array;
}

const cores = new WeakMap<Kernels, WasmCore>();

/** The core behind a wasm backend's kernels. */
export function wasmCore(kernels: Kernels | undefined): WasmCore {
  const core = kernels && cores.get(kernels);
  if (!core) throw new TinyseekError("wasm: expected the kernels of a wasm backend (createBackend)");
  return core;
}

/**
 * The rope kernel's tables, written straight into memory at f32 indices cos and sin: [T, dim] each, (c, c) and
 * (-s, s) per pair. Angles in float64 as the reference takes them, rounded to float32 on store; the rotation
 * itself runs in float32 lanes.
 */
export function writeRopeTables(f32: Float32Array, cos: number, sin: number, positions: ArrayLike<number>, freqs: Float64Array, T: number): void {
  const dim = 2 * freqs.length;
  for (let t = 0; t < T; t++) {
    const row = t * dim;
    for (let i = 0; i < dim / 2; i++) {
      const angle = positions[t]! * freqs[i]!;
      const c = Math.cos(angle), s = Math.sin(angle);
      f32[cos + row + 2 * i] = c;
      f32[cos + row + 2 * i + 1] = c;
      f32[sin + row + 2 * i] = -s;
      f32[sin + row + 2 * i + 1] = s;
    }
  }
}

/**
 * Whether t is a tensor of this rank whose data fits its shape: the quick check the hot kernels make before their
 * own size comparisons, calling expectShape (for the reference's message) only when one fails.
 */
function fits(t: Tensor | undefined, rank: number): t is Tensor {
  if (t == null || !Array.isArray(t.shape) || t.shape.length !== rank || !(t.data instanceof Float32Array)) return false;
  return t.data.length === numel(t.shape);
}

/**
 * Checks `spec` as masks.ts does (specVisible, maskFromSpec) and gives the position offset of query 0.
 */
function checkMask(spec: MaskSpec | undefined, B: number, Tq: number, Tk: number): number {
  const offset = spec?.offset ?? Tk - Tq;
  if (!spec) return offset;
  checkInteger("mask.offset", offset, 0);
  if (spec.window !== undefined) checkInteger("mask.window", spec.window, 1);
  if (spec.segment) {
    checkInteger("mask.segment.size", spec.segment.size, 1);
    checkInteger("mask.segment.overlap", spec.segment.overlap, 0);
  }
  if (spec.lengths && spec.lengths.length !== B) throw argError("mask.lengths", `${B} lengths`, spec.lengths.length);
  spec.lengths?.forEach((l, b) => checkInteger(`mask.lengths[${b}]`, l, 0, Tk));
  return offset;
}

/**
 * The keys query i of batch row b sees under `spec` (checked by checkMask), as one interval [lo, hi) per (b, i),
 * written into i32 at lo and hi: causal, window and segment bound it from above and below, padding lengths from
 * above (and empty it for queries at padded positions).
 */
export function fillIntervals(i32: Int32Array, lo: number, hi: number, spec: MaskSpec | undefined, offset: number, B: number, Tq: number, Tk: number): void {
  if (!spec) {
    i32.fill(0, lo, lo + B * Tq);
    i32.fill(Tk, hi, hi + B * Tq);
    return;
  }
  const causalOn = spec.causal || spec.window !== undefined || spec.segment !== undefined;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Tq; i++) {
      const p = offset + i;
      let from = 0, to = Tk;
      if (causalOn) to = Math.min(to, p + 1);
      if (spec.window !== undefined) from = Math.max(from, p - spec.window + 1);
      if (spec.segment) from = Math.max(from, Math.floor(p / spec.segment.size) * spec.segment.size - spec.segment.overlap);
      if (spec.lengths) to = p >= spec.lengths[b]! ? 0 : Math.min(to, spec.lengths[b]!); // padded query or key
      if (from >= to) from = to = 0;
      i32[lo + b * Tq + i] = from;
      i32[hi + b * Tq + i] = to;
    }
  }
}
