// The WASM SIMD backend: the Kernels interface over an AssemblyScript module (wasm/assembly/) compiled with
// SIMD128 into wasm/build/tinyseek.wasm. Inputs are copied into the module's memory per call, weights are packed
// once and stay resident (wasm/weights.ts), outputs are copied out; large matmuls and attention split across a
// worker pool sharing the memory (wasm/pool.ts). Validation matches the reference's, argument names and all.

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
import { expectShape, numel, shapeString, type Tensor } from "../src/tensor.ts";
import { Arena } from "./arena.ts";
import { Heap } from "./heap.ts";
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

interface Exports {
  heapBase(): number;
  gemm(M: number, N: number, K: number, a: number, lda: number, bp: number, c: number, ldc: number, scratch: number, part: number, parts: number): void;
  gemmScratch(): number;
  packB(b: number, K: number, N: number, ldb: number, out: number): void;
  packPanels(b: number, K: number, N: number, ldb: number, out: number, part: number, parts: number): void;
  packBt(w: number, N: number, K: number, ldw: number, out: number): void;
  attention(...args: number[]): void;
  attentionScratch(Tk: number, Dh: number, Dv: number): number;
  softmax(x: number, flags: number, rows: number, N: number, out: number): void;
  rmsnorm(x: number, w: number, rows: number, D: number, eps: number, out: number): void;
  rope(x: number, cosines: number, sines: number, planes: number, T: number, dim: number, out: number): void;
  silu(x: number, n: number, out: number): void;
  swiglu(gate: number, up: number, n: number, out: number): void;
}

/** Exports that split across threads (they take part, parts last). */
const THREADED = ["gemm", "attention", "packPanels"];
/** Below this many flops a job stays on the calling thread: waking a worker costs tens of microseconds. */
const PARALLEL_FLOPS = 2 ** 21;
/** Chunks per thread: enough that a thread the OS runs late leaves little for the others to wait on. */
const CHUNKS_PER_THREAD = 4;

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
  return {
    name: "wasm",
    description: `WebAssembly ${relaxed ? "relaxed SIMD" : "SIMD128"}, ${threads} thread${threads > 1 ? "s" : ""}${check ? ", checked buffers" : ""}`,
    kernels,
    asyncKernels: kernels,
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

  const temp = new Arena(heap);
  /** Runs body, checks every guard (check mode), and frees the call's temporaries. */
  function scoped<T>(kernel: string, body: () => T): T {
    try {
      const result = body();
      heap.verify(kernel);
      return result;
    } finally {
      temp.reset();
    }
  }
  const put = (data: Float32Array | Int32Array | Uint8Array) => temp.put(data);
  const alloc = (bytes: number) => temp.alloc(bytes);
  // new + set: slice() of a view of shared memory is an order of magnitude slower in V8.
  const read = (ptr: number, shape: readonly number[]): Tensor => {
    const data = new Float32Array(numel(shape));
    data.set(heap.f32(ptr, data.length));
    return { shape: [...shape], data };
  };

  /** C[M, N] = A · B for B packed at bp; rows or panels split over the pool when it pays. */
  function gemm(M: number, N: number, K: number, a: number, bp: number, c: number): void {
    // The same rule as the kernel's: split the dimension with more tiles, in a few chunks per thread.
    const tiles = Math.max(Math.ceil(N / 8), Math.ceil(M / 4));
    const chunks = pool && 2 * M * N * K >= parallelFlops && tiles > 1 ? Math.min(tiles, CHUNKS_PER_THREAD * threads) : 1;
    const scratch = alloc(chunks * gemmScratch); // callers are inside scoped(): freed with the call's temporaries
    if (chunks > 1) pool!.run("gemm", [M, N, K, a, K, bp, c, N, scratch], ex.gemm, chunks);
    else ex.gemm(M, N, K, a, K, bp, c, N, scratch, 0, 1);
  }
  const panelBytes = (K: number, N: number) => Math.ceil(N / 8) * 8 * K * 4;

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
    return weights.get(data, `t${N}x${K}`, panelBytes(K, N), (ptr) => {
      const raw = heap.put(data);
      ex.packBt(raw, N, K, K, ptr);
      heap.release(raw);
    });
  }

  function matmul(a: Tensor, b: Tensor): Tensor {
    if (a.shape.length < 2) throw argError("a", "shape [..., M, K]", shapeString(a.shape));
    const K = a.shape[a.shape.length - 1]!;
    const { N } = expectShape("b", b, ["K", "N"], { K });
    const M = K === 0 ? numel(a.shape.slice(0, -1)) : a.data.length / K;
    return scoped("matmul", () => {
      const pa = put(a.data), pbRaw = put(b.data);
      const bp = alloc(panelBytes(K, N));
      packB(pbRaw, K, N, bp, M);
      const c = alloc(M * N * 4);
      gemm(M, N, K, pa, bp, c);
      return read(c, [...a.shape.slice(0, -1), N]);
    });
  }

  function bmm(a: Tensor, b: Tensor): Tensor {
    if (a.shape.length < 3) throw argError("a", "shape [batch..., M, K]", shapeString(a.shape));
    const lead = a.shape.slice(0, -2);
    const [M, K] = a.shape.slice(-2) as [number, number];
    const names = lead.map((_, i) => `b${i}`);
    const known = { ...Object.fromEntries(lead.map((d, i) => [`b${i}`, d])), K };
    const { N } = expectShape("b", b, [...names, "K", "N"], known);
    const batches = numel(lead);
    return scoped("bmm", () => {
      const pa = put(a.data), pb = put(b.data);
      const bp = alloc(panelBytes(K, N));
      const c = alloc(batches * M * N * 4);
      for (let i = 0; i < batches; i++) {
        packB(pb + i * K * N * 4, K, N, bp, M);
        gemm(M, N, K, pa + i * M * K * 4, bp, c + i * M * N * 4);
      }
      return read(c, [...lead, M, N]);
    });
  }

  function linear(x: Tensor, weight: Tensor): Tensor {
    if (x.shape.length < 1) throw argError("x", "shape [..., in]", shapeString(x.shape));
    const K = x.shape[x.shape.length - 1]!;
    const { out: N } = expectShape("weight", weight, ["out", "in"], { in: K });
    const M = K === 0 ? numel(x.shape.slice(0, -1)) : x.data.length / K;
    return scoped("linear", () => {
      const bp = packedWeight(weight.data, N, K);
      const pa = put(x.data);
      const c = alloc(M * N * 4);
      gemm(M, N, K, pa, bp, c);
      return read(c, [...x.shape.slice(0, -1), N]);
    });
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
    const bp = weights.get(codes, `q${w.scheme}:${N}x${K}`, panelBytes(K, N), (ptr) => {
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
    return scoped("quantLinear", () => {
      const pa = put(xs);
      const c = alloc(rows * N * 4);
      gemm(rows, N, K, pa, bp, c);
      return read(c, [...x.shape.slice(0, -1), N]);
    });
  }

  function softmax(x: Tensor, visible?: Uint8Array): Tensor {
    const N = x.shape[x.shape.length - 1] ?? 1;
    if (visible && visible.length !== x.data.length) throw argError("visible", `${x.data.length} flags`, visible.length);
    if (N === 0 || x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(x.data.length) };
    return scoped("softmax", () => {
      const px = put(x.data);
      const flags = visible ? put(visible) : 0;
      const out = alloc(x.data.length * 4);
      ex.softmax(px, flags, x.data.length / N, N, out);
      return read(out, x.shape);
    });
  }

  function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
    if (x.shape.length < 1) throw argError("x", "shape [..., D]", shapeString(x.shape));
    const D = x.shape[x.shape.length - 1]!;
    expectShape("weight", weight, ["D"], { D });
    checkNumber("eps", eps, 0, 1);
    if (D === 0 || x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(x.data.length) };
    return scoped("rmsnorm", () => {
      const px = put(x.data), pw = put(weight.data);
      const out = alloc(x.data.length * 4);
      ex.rmsnorm(px, pw, x.data.length / D, D, eps, out);
      return read(out, x.shape);
    });
  }

  function rope(x: Tensor, positions: ArrayLike<number>, freqs: Float64Array): Tensor {
    const dim = freqs.length * 2;
    const T = positions.length;
    if (x.shape.length < 2 || x.shape[x.shape.length - 1] !== dim || x.shape[x.shape.length - 2] !== T) {
      throw argError("x", `shape [..., T=${T}, ${dim}]`, `[${x.shape.join(", ")}]`);
    }
    for (let t = 0; t < T; t++) {
      if (!Number.isFinite(positions[t])) throw argError(`positions[${t}]`, "a finite number", positions[t]);
    }
    if (x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(0) };
    // Angles in float64 as the reference takes them; the rotation itself runs in float32 lanes.
    const cosines = new Float32Array(T * dim), sines = new Float32Array(T * dim);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < dim / 2; i++) {
        const angle = positions[t]! * freqs[i]!;
        const [c, s] = [Math.cos(angle), Math.sin(angle)];
        cosines[t * dim + 2 * i] = c;
        cosines[t * dim + 2 * i + 1] = c;
        sines[t * dim + 2 * i] = -s;
        sines[t * dim + 2 * i + 1] = s;
      }
    }
    return scoped("rope", () => {
      const px = put(x.data), pc = put(cosines), ps = put(sines);
      const out = alloc(x.data.length * 4);
      ex.rope(px, pc, ps, x.data.length / (T * dim), T, dim, out);
      return read(out, x.shape);
    });
  }

  function silu(x: Tensor): Tensor {
    return scoped("silu", () => {
      const px = put(x.data);
      const out = alloc(x.data.length * 4);
      ex.silu(px, x.data.length, out);
      return read(out, x.shape);
    });
  }

  function swiglu(gate: Tensor, up: Tensor): Tensor {
    expectShape("up", up, gate.shape.map((_, i) => `d${i}`), Object.fromEntries(gate.shape.map((d, i) => [`d${i}`, d])));
    return scoped("swiglu", () => {
      const pg = put(gate.data), pu = put(up.data);
      const out = alloc(gate.data.length * 4);
      ex.swiglu(pg, pu, gate.data.length, out);
      return read(out, gate.shape);
    });
  }

  function attention(q: Tensor, k: Tensor, v: Tensor, options: FusedAttentionOptions = {}): Tensor {
    const { B, H, Tq, Dh } = expectShape("q", q, ["B", "H", "Tq", "Dh"]);
    const { Hkv, Tk } = expectShape("k", k, ["B", "Hkv", "Tk", "Dh"], { B, Dh });
    const { Dv } = expectShape("v", v, ["B", "Hkv", "Tk", "Dv"], { B, Hkv, Tk });
    if (Hkv === 0 || H % Hkv !== 0) throw argError("k", `a number of kv heads that divides H=${H}`, Hkv);
    const scale = options.scale ?? 1 / Math.sqrt(Dh);
    if (!Number.isFinite(scale)) throw argError("scale", "a finite number", scale);
    const { lo, hi, offset } = visibleIntervals(options.mask, B, Tq, Tk);
    const logGammas = options.logGammas;
    if (logGammas) {
      if (logGammas.length !== H) throw argError("logGammas", `${H} values (one per query head)`, logGammas.length);
      logGammas.forEach((g, h) => checkNumber(`logGammas[${h}]`, g, -Number.MAX_VALUE, 0, " (ln γ with γ in (0, 1])"));
      checkInteger("offset", offset, 0);
    }
    const outShape = [B, H, Tq, Dv];
    if (numel(outShape) === 0) return { shape: outShape, data: new Float32Array(0) };
    return scoped("attention", () => {
      const pq = put(q.data), pk = put(k.data), pv = put(v.data);
      const plo = put(lo), phi = put(hi);
      const pg = logGammas ? put(Float32Array.from(logGammas)) : 0;
      const flops = 2 * B * H * Tq * Tk * (Dh + Dv);
      // Chunks are (batch row, kv head) units when there are enough of them, else row blocks of every unit (each
      // chunk then packs every unit's K and V again: a few percent of the work at T = 512).
      const units = B * Hkv, rowBlocks = Math.ceil(((H / Hkv) * Tq) / 4);
      const chunks = units >= threads ? units : rowBlocks;
      const parts = pool && flops >= parallelFlops && chunks > 1 ? Math.min(CHUNKS_PER_THREAD * threads, chunks) : 1;
      const stride = Math.ceil(ex.attentionScratch(Tk, Dh, Dv) / 64) * 64;
      const scratch = alloc(stride * parts); // one scratch region per chunk: chunks may run concurrently
      const out = alloc(numel(outShape) * 4);
      const args = [pq, pk, pv, out, B, H, Hkv, Tq, Tk, Dh, Dv, scale, plo, phi, pg, offset, scratch, stride];
      if (parts > 1) pool!.run("attention", args, ex.attention, parts);
      else ex.attention(...args, 0, 1);
      return read(out, outShape);
    });
  }

  function moe(x: Tensor, routing: Routing, experts: ExpertWeights): Tensor {
    const { N, D } = expectShape("x", x, ["N", "D"]);
    const { E, F } = expectShape("experts.gate", experts.gate, ["E", "F", "D"], { D });
    expectShape("experts.up", experts.up, ["E", "F", "D"], { E, F, D });
    expectShape("experts.down", experts.down, ["E", "D", "F"], { E, F, D });
    const { k } = routing;
    for (const [name, a] of [["experts", routing.experts], ["weights", routing.weights], ["kept", routing.kept]] as const) {
      if (a.length !== N * k) throw argError(`routing.${name}`, `${N * k} entries (N=${N} · k=${k})`, a.length);
    }
    const slots: number[][] = Array.from({ length: E }, () => []); // kept assignments per expert, token order
    for (let a = 0; a < N * k; a++) {
      const chosen = routing.experts[a]!;
      if (!Number.isInteger(chosen) || chosen < 0 || chosen >= E) {
        throw argError(`routing.experts[${a}]`, `an expert in [0, ${E - 1}]`, chosen);
      }
      if (routing.kept[a]) slots[chosen]!.push(a);
    }
    const sum = new Float64Array(N * D); // float64 over a token's k experts, as the reference
    const busiest = Math.max(0, ...slots.map((s) => s.length));
    if (busiest > 0) {
      scoped("moe", () => {
        const px = put(x.data);
        const tokens = alloc(busiest * D * 4);
        const g = alloc(busiest * F * 4), u = alloc(busiest * F * 4);
        const y = alloc(busiest * D * 4);
        const view = (t: Tensor, e: number, size: number) => t.data.subarray(e * size, (e + 1) * size);
        for (let e = 0; e < E; e++) {
          const list = slots[e]!, n = list.length;
          if (n === 0) continue;
          const rows = heap.f32(tokens, n * D), all = heap.f32(px, N * D);
          list.forEach((a, i) => rows.set(all.subarray(Math.floor(a / k) * D, Math.floor(a / k) * D + D), i * D));
          gemm(n, F, D, tokens, packedWeight(view(experts.gate, e, F * D), F, D), g);
          gemm(n, F, D, tokens, packedWeight(view(experts.up, e, F * D), F, D), u);
          ex.swiglu(g, u, n * F, g);
          gemm(n, D, F, g, packedWeight(view(experts.down, e, D * F), D, F), y);
          const ys = heap.f32(y, n * D);
          list.forEach((a, i) => {
            const t = Math.floor(a / k), w = routing.weights[a]!;
            for (let d = 0; d < D; d++) sum[t * D + d]! += w * ys[i * D + d]!;
          });
        }
      });
    }
    return { shape: [N, D], data: Float32Array.from(sum) };
  }

  return { name: "wasm", matmul, bmm, linear, softmax, rmsnorm, rope, silu, swiglu, attention, moe, quantLinear };
}

/**
 * The keys query i of batch row b sees under `spec`, as one interval [lo, hi) per (b, i): causal, window and
 * segment bound it from above and below, padding lengths from above (and empty it for queries at padded positions).
 * Validation and defaults follow masks.ts (specVisible, maskFromSpec).
 */
function visibleIntervals(spec: MaskSpec | undefined, B: number, Tq: number, Tk: number) {
  const offset = spec?.offset ?? Tk - Tq;
  const lo = new Int32Array(B * Tq), hi = new Int32Array(B * Tq).fill(Tk);
  if (!spec) return { lo, hi, offset };
  checkInteger("mask.offset", offset, 0);
  if (spec.window !== undefined) checkInteger("mask.window", spec.window, 1);
  if (spec.segment) {
    checkInteger("mask.segment.size", spec.segment.size, 1);
    checkInteger("mask.segment.overlap", spec.segment.overlap, 0);
  }
  if (spec.lengths && spec.lengths.length !== B) throw argError("mask.lengths", `${B} lengths`, spec.lengths.length);
  spec.lengths?.forEach((l, b) => checkInteger(`mask.lengths[${b}]`, l, 0, Tk));
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
      lo[b * Tq + i] = from;
      hi[b * Tq + i] = to;
    }
  }
  return { lo, hi, offset };
}
