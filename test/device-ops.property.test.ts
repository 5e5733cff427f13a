// THE device-kernel suite (llama.cpp's test-backend-ops): one list of cases over every kernel of the operation
// interface the one forward runs on (src/device/kernels.ts), run on every backend against the reference's kernels;
// and the reference's kernels themselves against independent naive loops written here, so that no row compares an
// implementation with itself. Shapes come from fast-check (1, primes, one off the SIMD width 4 and the panel 8, 16,
// the key block 64); values from randBounded (bounded normal, never zero). The wasm and webgpu rows run in their
// check modes, which poison every new allocation with NaN: an element a kernel forgets to write fails.
// Tolerances: spec/backends.md, whose table this reads (device kernels map onto the kernel rows named there).

import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { Backend } from "../src/backend.ts";
import { attention as sdpa } from "../src/attention/attention.ts";
import { concatLast, mergeHeads, splitHeads } from "../src/attention/heads.ts";
import type { DeviceKernels, GemmArgs, Value } from "../src/device/kernels.ts";
import { referenceOps } from "../src/device/ops.ts";
import { referenceDevice } from "../src/device/reference.ts";
import { causal } from "../src/masks.ts";
import { dequantizeFp8Codes } from "../src/io/fp8-weights.ts";
import { quantizeActivationTiles, quantizeFp8 } from "../src/quant/fp8.ts";
import { quantizeInt } from "../src/quant/int.ts";
import { quantizeTokenInt8, type QuantWeight } from "../src/quant/linear.ts";
import { decode, FORMATS } from "../src/quant/minifloat.ts";
import type { ExpertWeights } from "../src/moe/experts.ts";
import * as ops from "../src/ops.ts";
import { Random, randBounded } from "../src/random.ts";
import { ropeFrequencies } from "../src/rope.ts";
import type { Tensor } from "../src/tensor.ts";
import { randomRouting } from "./moe-fixtures.ts";
import { startBackend } from "./backend-rows.ts";
import { checkTolerance, EXACT, readTolerances, reportWorst, type Tolerance } from "./tolerances.ts";
import { runUploaded, thrown } from "./helpers.ts";

interface Row {
  name: string;
  spec: "reference" | "wasm" | "wasm relaxed" | "webgpu";
  create: () => Promise<{ kernels: DeviceKernels<Value>; dispose: () => Promise<void> }>;
  optional?: boolean;
}

const fromBackend = (b: Backend) => ({ kernels: b.ops.kernels, dispose: () => b.dispose() });

const ROWS: Row[] = [
  { name: "reference", spec: "reference", create: async () => ({ kernels: referenceDevice as DeviceKernels<Value>, dispose: async () => {} }) },
  { name: "wasm", spec: "wasm", create: async () => fromBackend(await (await import("../wasm/backend.ts")).createBackend({ threads: 1, check: true, relaxed: false })) },
  { name: "wasm 2 threads", spec: "wasm", create: async () => fromBackend(await (await import("../wasm/backend.ts")).createBackend({ threads: 2, check: true, relaxed: false, parallelFlops: 0 })) },
  // The build Node 22+ and browsers load: every op on it; under CI it must load (test/wasm-relaxed.ts).
  { name: "wasm relaxed", spec: "wasm relaxed", create: async () => fromBackend(await (await import("./wasm-relaxed.ts")).relaxedWasm()), optional: true },
  { name: "webgpu", spec: "webgpu", create: async () => fromBackend(await (await import("../gpu/backend.ts")).createBackend({ check: true })), optional: true },
];

const RUNS = Number(process.env.TINYSEEK_PROPERTY_RUNS ?? 10);
const small = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17);
const width = fc.constantFrom(1, 3, 4, 5, 8, 9, 16, 17, 33);
const depth = fc.constantFrom(1, 3, 4, 5, 8, 9, 17, 64, 65, 257);
const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const rand = (rng: Random, shape: number[]) => randBounded(rng, shape);

/** A case: host inputs, how to run it on kernels (uploading activations, weights by `weight`), and the naive answer. */
interface Case {
  describe: string;
  run<X extends Value>(k: DeviceKernels<X>, up: (t: Tensor) => X): X;
  naive(): Tensor;
}

const tensor = (shape: number[], data: Float32Array): Tensor => ({ shape, data });

const cases: Record<string, fc.Arbitrary<Case>> = {
  "upload-read": fc.record({ n: depth, seed }).map(({ n, seed }) => {
    const x = rand(new Random(seed), [n]);
    return { describe: `[${n}] seed ${seed}`, run: (_k, up) => up(x), naive: () => x };
  }),
  embed: fc.record({ V: small, D: width, T: small, seed }).map(({ V, D, T, seed }) => {
    const rng = new Random(seed);
    const table = rand(rng, [V, D]);
    const ids = Int32Array.from({ length: T }, () => rng.int(V));
    return { describe: `table [${V}, ${D}] ${T} ids seed ${seed}`, run: (k) => k.embed(table, ids), naive: () => ops.embedding(table, ids) };
  }),
  // A = 0: x [N, D]; otherwise planes x [A, N, D], each taking the same rows or (perPlane) its own n.
  gatherRows: fc.record({ A: fc.constantFrom(0, 1, 2, 3, 5), N: small, D: width, n: small, perPlane: fc.boolean(), seed }).map(({ A, N, D, n, perPlane, seed }) => {
    const rng = new Random(seed);
    const planes = Math.max(A, 1);
    const x = rand(rng, A === 0 ? [N, D] : [A, N, D]);
    // Half the rows continue a run (the next row of x), as a selected block or a window does; the rest anywhere.
    const rows = new Int32Array(perPlane ? planes * n : n);
    for (let i = 0; i < rows.length; i++) rows[i] = i > 0 && rows[i - 1]! + 1 < N && rng.uniform() < 0.5 ? rows[i - 1]! + 1 : rng.int(N);
    const naive = () => tensor(A === 0 ? [n, D] : [A, n, D], Float32Array.from({ length: planes * n * D }, (_, i) => {
      const [a, r, d] = [Math.floor(i / (n * D)), Math.floor(i / D) % n, i % D];
      return x.data[(a * N + rows[perPlane ? a * n + r : r]!) * D + d]!;
    }));
    return { describe: `x [${x.shape}] rows [${rows}]${perPlane ? " per plane" : ""} seed ${seed}`, run: (k, up) => k.gatherRows(up(x), rows, perPlane), naive };
  }),
  addRows: fc.record({ N: small, D: width, seed }).map(({ N, D, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [N, D]);
    const slots = Int32Array.from({ length: N }, () => (rng.uniform() < 0.3 ? -1 : rng.int(N)));
    const update = rand(rng, [N, D]);
    const naive = () => tensor([N, D], Float32Array.from({ length: N * D }, (_, i) => {
      const s = slots[Math.floor(i / D)]!;
      return s < 0 ? x.data[i]! : x.data[i]! + update.data[s * D + (i % D)]!;
    }));
    return { describe: `x [${N}, ${D}] slots [${slots}] seed ${seed}`, run: (k, up) => k.addRows(up(x), up(update), slots), naive };
  }),
  add: fc.record({ n: depth, seed }).map(({ n, seed }) => {
    const rng = new Random(seed);
    const a = rand(rng, [n]), b = rand(rng, [n]);
    return { describe: `[${n}] seed ${seed}`, run: (k, up) => k.add(up(a), up(b)), naive: () => tensor([n], a.data.map((v, i) => v + b.data[i]!)) };
  }),
  splitHeads: fc.record({ T: small, H: fc.constantFrom(1, 2, 3, 4), w1: width, w2: width, part: fc.constantFrom(0, 1), seed }).map(({ T, H, w1, w2, part, seed }) => {
    const x = rand(new Random(seed), [T, H * (w1 + w2)]);
    const naive = () => {
      const p = splitHeads({ shape: [1, T, H * (w1 + w2)], data: x.data }, H, [w1, w2])[part]!;
      return tensor(p.shape.slice(1) as number[], p.data);
    };
    return { describe: `x [${x.shape}] H ${H} widths ${w1},${w2} part ${part} seed ${seed}`, run: (k, up) => k.splitHeads(up(x), H, [w1, w2])[part]!, naive };
  }),
  mergeHeads: fc.record({ H: fc.constantFrom(1, 2, 3, 5), T: small, d: width, seed }).map(({ H, T, d, seed }) => {
    const x = rand(new Random(seed), [H, T, d]);
    const naive = () => tensor([T, H * d], mergeHeads({ shape: [1, H, T, d], data: x.data }).data);
    return { describe: `x [${x.shape}] seed ${seed}`, run: (k, up) => k.mergeHeads(up(x)), naive };
  }),
  concatLast: fc.record({ A: fc.constantFrom(1, 2, 4), T: small, w1: width, w2: width, shared: fc.boolean(), seed }).map(({ A, T, w1, w2, shared, seed }) => {
    const rng = new Random(seed);
    const a = rand(rng, [A, T, w1]), b = rand(rng, [shared ? 1 : A, T, w2]);
    const naive = () => {
      const c = concatLast([{ shape: [1, A, T, w1], data: a.data }, { shape: [1, shared ? 1 : A, T, w2], data: b.data }]);
      return tensor([A, T, w1 + w2], c.data);
    };
    return { describe: `[${a.shape}] with [${b.shape}] seed ${seed}`, run: (k, up) => k.concatLast([up(a), up(b)]), naive };
  }),
  sliceRows: fc.record({ N: small, D: width, seed }).map(({ N, D, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [N, D]);
    const start = rng.int(N), count = rng.int(N - start + 1);
    return { describe: `x [${N}, ${D}] rows ${start}+${count} seed ${seed}`, run: (k, up) => k.sliceRows(up(x), start, count), naive: () => tensor([count, D], x.data.slice(start * D, (start + count) * D)) };
  }),
  reshape: fc.record({ A: fc.constantFrom(1, 2, 3), n: small, D: width, seed }).map(({ A, n, D, seed }) => {
    // [A, n, D] read as [A·n, D] and as [n, A·D]: the same elements in the same order.
    const rng = new Random(seed);
    const x = rand(rng, [A, n, D]);
    const shape = rng.int(2) === 0 ? [A * n, D] : [n, A * D];
    return { describe: `[${A}, ${n}, ${D}] as [${shape}] seed ${seed}`, run: (k, up) => k.reshape(up(x), shape), naive: () => tensor(shape, x.data.slice()) };
  }),
  concatRows: fc.record({ n1: small, n2: small, D: width, seed }).map(({ n1, n2, D, seed }) => {
    const rng = new Random(seed);
    const a = rand(rng, [n1, D]), b = rand(rng, [n2, D]);
    const data = new Float32Array((n1 + n2) * D);
    data.set(a.data);
    data.set(b.data, n1 * D);
    return { describe: `[${n1}, ${D}] over [${n2}, ${D}] seed ${seed}`, run: (k, up) => k.concatRows([up(a), up(b)]), naive: () => tensor([n1 + n2, D], data) };
  }),
  writeRows: fc.record({ A: fc.constantFrom(1, 2, 3), rows: depth, w: width, seed }).map(({ A, rows, w, seed }) => {
    const rng = new Random(seed);
    const dst = rand(rng, [A, rows, w]);
    const T = 1 + rng.int(rows), at = rng.int(rows - T + 1);
    const src = rand(rng, [A, T, w]);
    const naive = () => {
      const out = dst.data.slice();
      for (let a = 0; a < A; a++) out.set(src.data.subarray(a * T * w, (a + 1) * T * w), (a * rows + at) * w);
      return tensor([A, rows, w], out);
    };
    return {
      describe: `${T} rows at ${at} into [${A}, ${rows}, ${w}] seed ${seed}`,
      run: (k, up) => {
        const d = up(dst);
        k.writeRows(d, up(src), at);
        return d;
      },
      naive,
    };
  }),
  linear: fc.record({ rows: small, inDim: depth, outDim: fc.constantFrom(1, 7, 8, 9, 17, 64), seed }).map(({ rows, inDim, outDim, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [rows, inDim]), w = rand(rng, [outDim, inDim]);
    const naive = () => tensor([rows, outDim], Float32Array.from({ length: rows * outDim }, (_, i) => {
      const [r, o] = [Math.floor(i / outDim), i % outDim];
      let s = 0;
      for (let j = 0; j < inDim; j++) s += x.data[r * inDim + j]! * w.data[o * inDim + j]!;
      return s;
    }));
    return { describe: `x [${x.shape}] W [${w.shape}] seed ${seed}`, run: (k, up) => k.linear(up(x), k.weight(w)), naive };
  }),
  quantLinear: fc.record({
    rows: small, inDim: fc.constantFrom(1, 7, 32, 65, 129, 257), outDim: fc.constantFrom(1, 7, 8, 9, 17, 64),
    scheme: fc.constantFrom("int8", "int4", "int8.a8", "fp8"), group: fc.constantFrom(32, 64, 128), block: fc.constantFrom(32, 128), seed,
  }).map(({ rows, inDim, outDim, scheme, group, block, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [rows, inDim]), w = rand(rng, [outDim, inDim]);
    const q: QuantWeight = scheme === "fp8" ? quantizeFp8(w, block) : quantizeInt(w, scheme === "int4" ? 4 : 8, group);
    const activations = scheme === "int8.a8";
    // Independent of src/quant/linear.ts's quantLinear (codes dotted per group, scaled once): the weight's values
    // code × scale and the activations' as the reference quantises them (quantizeTokenInt8 per row, e4m3 per tile of
    // `block`), all in float64, then one float64 dot product per output.
    const naive = () => {
      const weightAt = (o: number, i: number) => q.scheme === "fp8"
        ? decode(FORMATS.e4m3, q.bits[o * inDim + i]!) * q.scales[Math.floor(o / q.block) * Math.ceil(inDim / q.block) + Math.floor(i / q.block)]!
        : q.codes[o * inDim + i]! * q.scales[o * Math.ceil(inDim / q.groupSize) + Math.floor(i / q.groupSize)]!;
      const out = new Float32Array(rows * outDim);
      for (let r = 0; r < rows; r++) {
        const row = x.data.subarray(r * inDim, (r + 1) * inDim);
        let xs: ArrayLike<number> = row;
        if (q.scheme === "fp8") {
          const { values, scales } = quantizeActivationTiles(row, q.block);
          xs = values.map((v, i) => v * scales[Math.floor(i / q.block)]!);
        } else if (activations) {
          const { codes, scale } = quantizeTokenInt8(row);
          xs = codes.map((c) => c * scale);
        }
        for (let o = 0; o < outDim; o++) {
          let s = 0;
          for (let i = 0; i < inDim; i++) s += xs[i]! * weightAt(o, i);
          out[r * outDim + o] = s;
        }
      }
      return tensor([rows, outDim], out);
    };
    return {
      describe: `x [${x.shape}] W [${w.shape}] ${scheme}${scheme === "fp8" ? ` block ${block}` : ` group ${group}`} seed ${seed}`,
      run: (k, up) => {
        if (!k.quantLinear) throw new Error(`${k.name} has no quantLinear kernel`); // the suite skips such rows first
        return k.quantLinear(up(x), q, activations);
      },
      naive,
    };
  }),
  // An FP8 checkpoint's weight as the loader dequantises it (src/io/fp8-weights.ts: code × its block's scale, any
  // code but NaN, partial edge blocks), then the backend's plain linear; the naive side decodes e4m3 from its bit
  // fields here (sign, 4 exponent bits with bias 7, 3 mantissa bits; exponent 0 subnormal).
  fp8Dequant: fc.record({ rows: small, inDim: fc.constantFrom(1, 7, 129, 257), outDim: fc.constantFrom(1, 9, 130), block: fc.constantFrom(32, 128), seed }).map(({ rows, inDim, outDim, block, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [rows, inDim]);
    const bits = Uint8Array.from({ length: outDim * inDim }, () => rng.int(0x7f) | (rng.int(2) << 7));
    const scales = Float32Array.from({ length: Math.ceil(outDim / block) * Math.ceil(inDim / block) }, () => Math.fround(2 ** (rng.int(8) - 12) * (1 + rng.uniform())));
    const w = tensor([outDim, inDim], dequantizeFp8Codes("w", bits, [outDim, inDim], scales, block));
    const e4m3 = (b: number) => {
      const [sign, exp, man] = [b >> 7 ? -1 : 1, (b >> 3) & 15, b & 7];
      return sign * (exp === 0 ? (man / 8) * 2 ** -6 : (1 + man / 8) * 2 ** (exp - 7));
    };
    const naive = () => tensor([rows, outDim], Float32Array.from({ length: rows * outDim }, (_, i) => {
      const [r, o] = [Math.floor(i / outDim), i % outDim];
      let s = 0;
      for (let j = 0; j < inDim; j++) {
        const scale = scales[Math.floor(o / block) * Math.ceil(inDim / block) + Math.floor(j / block)]!;
        s += x.data[r * inDim + j]! * Math.fround(e4m3(bits[o * inDim + j]!) * scale);
      }
      return s;
    }));
    return { describe: `x [${x.shape}] W fp8 [${outDim}, ${inDim}] block ${block} seed ${seed}`, run: (k, up) => k.linear(up(x), k.weight(w)), naive };
  }),
  gemm: fc.record({ batches: fc.constantFrom(1, 2, 3), M: small, K: width, N: width, transB: fc.boolean(), gap: fc.constantFrom(0, 3), seed }).map(({ batches, M, K, N, transB, gap, seed }) => {
    const rng = new Random(seed);
    const a = rand(rng, [batches, M, K]);
    // B's matrices sit inside a larger weight, `gap` elements apart after an offset: strided slices read in place.
    const strideB = K * N + gap, offB = gap;
    const b = rand(rng, [offB + batches * strideB]);
    const args: GemmArgs = { M, N, K, transB, batches, strideA: M * K, strideB, strideC: M * N, offB };
    const naive = () => tensor([batches, M, N], Float32Array.from({ length: batches * M * N }, (_, i) => {
      const [p, m, n] = [Math.floor(i / (M * N)), Math.floor(i / N) % M, i % N];
      let s = 0;
      for (let j = 0; j < K; j++) s += a.data[(p * M + m) * K + j]! * b.data[offB + p * strideB + (transB ? n * K + j : j * N + n)]!;
      return s;
    }));
    return {
      describe: `${batches}×[${M}, ${K}]·[${K}, ${N}]${transB ? "ᵀ" : ""} stride ${strideB} seed ${seed}`,
      run: (k, up) => {
        const c = k.empty([batches, M, N]);
        k.gemm(up(a), k.weight(b), c, args);
        return c;
      },
      naive,
    };
  }),
  // eps over its whole range [0, 1]: at 1e-6 alone, eps moved outside the square root hides inside the tolerance.
  rmsnorm: fc.record({ rows: small, D: depth, eps: fc.constantFrom(0, 1e-6, 1e-3, 0.05, 0.3, 1), seed }).map(({ rows, D, eps, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [rows, D]), w = rand(rng, [D]);
    const naive = () => tensor([rows, D], Float32Array.from({ length: rows * D }, (_, i) => {
      const r = Math.floor(i / D);
      let ss = 0;
      for (let j = 0; j < D; j++) ss += x.data[r * D + j]! ** 2;
      return (x.data[i]! / Math.sqrt(ss / D + eps)) * w.data[i % D]!;
    }));
    return { describe: `x [${x.shape}] eps ${eps} seed ${seed}`, run: (k, up) => k.rmsnorm(up(x), k.weight(w), eps), naive };
  }),
  // Interleaved: pair i is features (2i, 2i + 1); not: (i, i + half).
  rope: fc.record({ planes: fc.constantFrom(1, 3), T: small, half: small, start: fc.integer({ min: 0, max: 5000 }), interleaved: fc.boolean(), seed }).map(({ planes, T, half, start, interleaved, seed }) => {
    const x = rand(new Random(seed), [planes, T, 2 * half]);
    const freqs = ropeFrequencies({ dim: 2 * half });
    const positions = Int32Array.from({ length: T }, (_, t) => start + t);
    const naive = () => tensor(x.shape as number[], Float32Array.from(x.data, (_, i) => {
      const [t, j] = [Math.floor(i / (2 * half)) % T, i % (2 * half)];
      const [pair, second] = interleaved ? [j >> 1, j & 1] : [j % half, Number(j >= half)];
      const first = interleaved ? i - second : i - second * half; // the pair's first feature
      const angle = positions[t]! * freqs[pair]!;
      const [re, im] = [x.data[first]!, x.data[first + (interleaved ? 1 : half)]!];
      return second ? re * Math.sin(angle) + im * Math.cos(angle) : re * Math.cos(angle) - im * Math.sin(angle);
    }));
    return { describe: `x [${x.shape}] from ${start}${interleaved ? "" : " halves"} seed ${seed}`, run: (k, up) => k.rope(up(x), positions, freqs, interleaved), naive };
  }),
  layernorm: fc.record({ rows: small, D: depth, eps: fc.constantFrom(1e-6, 1e-3, 0.3), seed }).map(({ rows, D, eps, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [rows, D]), w = rand(rng, [D]), b = rand(rng, [D]);
    const naive = () => tensor([rows, D], Float32Array.from({ length: rows * D }, (_, i) => {
      const r = Math.floor(i / D);
      const row = Array.from(x.data.subarray(r * D, (r + 1) * D));
      const mean = row.reduce((s, v) => s + v, 0) / D;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / D;
      return ((x.data[i]! - mean) / Math.sqrt(variance + eps)) * w.data[i % D]! + b.data[i % D]!;
    }));
    return { describe: `x [${x.shape}] eps ${eps} seed ${seed}`, run: (k, up) => k.layernorm(up(x), k.weight(w), k.weight(b), eps), naive };
  }),
  swiglu: fc.record({ n: depth, seed }).map(({ n, seed }) => {
    const rng = new Random(seed);
    const g = rand(rng, [n]), u = rand(rng, [n]);
    return { describe: `[${n}] seed ${seed}`, run: (k, up) => k.swiglu(up(g), up(u)), naive: () => tensor([n], g.data.map((v, i) => (v / (1 + Math.exp(-v))) * u.data[i]!)) };
  }),
  softmax: fc.record({ rows: small, N: depth, seed }).map(({ rows, N, seed }) => {
    const x = rand(new Random(seed), [rows, N]);
    const naive = () => tensor([rows, N], Float32Array.from(x.data, (v, i) => {
      const r = Math.floor(i / N);
      const row = x.data.subarray(r * N, (r + 1) * N);
      const m = Math.max(...row);
      return Math.exp(v - m) / row.reduce((s, y) => s + Math.exp(y - m), 0);
    }));
    return { describe: `x [${x.shape}] seed ${seed}`, run: (k, up) => k.softmax(up(x)), naive };
  }),
  // ring: the keys are a ring's rows, key j at row (firstRow + j) mod kvRows (NSA's window), firstRow anywhere.
  attention: fc.record({
    Hkv: fc.constantFrom(1, 2), group: fc.constantFrom(1, 2, 3), Tq: fc.constantFrom(1, 3, 5, 9), past: fc.constantFrom(0, 1, 7, 64),
    spare: fc.constantFrom(0, 1, 5), Dh: fc.constantFrom(1, 4, 7, 8, 16, 33), Dv: fc.constantFrom(1, 8, 9), decay: fc.boolean(),
    ring: fc.boolean(), turn: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), seed,
  }).map(({ Hkv, group, Tq, past, spare, Dh, Dv, decay, ring, turn, seed }) => {
    const rng = new Random(seed);
    const H = Hkv * group, Tk = past + Tq, kvRows = Tk + spare;
    // A ring starts past row 0 (where it is any other cache), so that every ring case wraps.
    const firstRow = ring && kvRows > 1 ? 1 + Math.floor(turn * (kvRows - 1)) : 0;
    const q = rand(rng, [H, Tq, Dh]), k = rand(rng, [Hkv, kvRows, Dh]), v = rand(rng, [Hkv, kvRows, Dv]);
    const logGammas = decay ? Array.from({ length: H }, (_, h) => Math.log(1 - 2 ** (-2 - h))) : undefined;
    const scale = 1 / Math.sqrt(Dh);
    const naive = () => {
      // The cache's keys in key order, compact, through the reference's attention (checked against worked examples in
      // test/attention.test.ts): the kernel must read kv head g at g·kvRows, key j at row (firstRow + j) mod kvRows,
      // and ignore the rows no key lies at.
      const filled = (t: Tensor, d: number) => {
        const out = new Float32Array(Hkv * Tk * d);
        for (let g = 0; g < Hkv; g++) {
          for (let j = 0; j < Tk; j++) {
            const row = g * kvRows + ((firstRow + j) % kvRows);
            out.set(t.data.subarray(row * d, (row + 1) * d), (g * Tk + j) * d);
          }
        }
        return tensor([1, Hkv, Tk, d], out);
      };
      const out = sdpa(tensor([1, H, Tq, Dh], q.data), filled(k, Dh), filled(v, Dv), { mask: causal(Tq, Tk, past), logGammas, offset: past, scale }).out;
      return tensor([H, Tq, Dv], out.data);
    };
    return {
      describe: `H ${H} Hkv ${Hkv} Tq ${Tq} past ${past} kvRows ${kvRows} Dh ${Dh} Dv ${Dv}${decay ? " decay" : ""}${ring ? ` ring from ${firstRow}` : ""} seed ${seed}`,
      run: (kk, up) => kk.attention(up(q), up(k), up(v), { H, Hkv, Tq, Tk, Dh, Dv, scale, offset: past, kvRows, logGammas, firstRow }),
      naive,
    };
  }),
  // Attention's probabilities (NSA's compressed branch reads them): query i sees keys j <= offset + i of the first Tk
  // of a cache; offset -1 leaves query 0 none (a row of zeros), and `after` keys lie past the last query's reach.
  attentionProbs: fc.record({
    Hkv: fc.constantFrom(1, 2), group: fc.constantFrom(1, 2, 3), Tq: fc.constantFrom(1, 3, 5, 9), offset: fc.constantFrom(-1, 0, 1, 7, 64),
    after: fc.constantFrom(0, 2), spare: fc.constantFrom(0, 1, 5), Dh: fc.constantFrom(1, 4, 7, 8, 16, 33), seed,
  }).map(({ Hkv, group, Tq, offset, after, spare, Dh, seed }) => {
    const rng = new Random(seed);
    const H = Hkv * group, Tk = Math.max(1, offset + Tq) + after, kvRows = Tk + spare;
    const q = rand(rng, [H, Tq, Dh]), k = rand(rng, [Hkv, kvRows, Dh]);
    const scale = 1 / Math.sqrt(Dh);
    const naive = () => {
      const out = new Float32Array(H * Tq * Tk);
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < Tq; i++) {
          const seen = Math.min(Tk, offset + i + 1);
          const scores = Array.from({ length: Math.max(0, seen) }, (_, j) => {
            let dot = 0;
            for (let d = 0; d < Dh; d++) dot += q.data[(h * Tq + i) * Dh + d]! * k.data[(Math.floor(h / group) * kvRows + j) * Dh + d]!;
            return dot * scale;
          });
          const max = Math.max(...scores);
          const sum = scores.reduce((a, s) => a + Math.exp(s - max), 0);
          scores.forEach((s, j) => (out[(h * Tq + i) * Tk + j] = Math.exp(s - max) / sum));
        }
      }
      return tensor([H, Tq, Tk], out);
    };
    return {
      describe: `H ${H} Hkv ${Hkv} Tq ${Tq} offset ${offset} Tk ${Tk} kvRows ${kvRows} Dh ${Dh} seed ${seed}`,
      run: (kk, up) => kk.attentionProbs(up(q), up(k), { H, Hkv, Tq, Tk, Dh, Dv: 1, scale, offset, kvRows }),
      naive,
    };
  }),
  // Probabilities (any values) times the first Tk rows of a cache's values, kv head h / (H / Hkv).
  attendWith: fc.record({
    Hkv: fc.constantFrom(1, 2), group: fc.constantFrom(1, 2, 3), Tq: fc.constantFrom(1, 3, 5), Tk: fc.constantFrom(1, 2, 3, 4, 5, 8, 9, 64, 65),
    spare: fc.constantFrom(0, 1, 5), Dv: fc.constantFrom(1, 3, 4, 5, 8, 9, 17), seed,
  }).map(({ Hkv, group, Tq, Tk, spare, Dv, seed }) => {
    const rng = new Random(seed);
    const H = Hkv * group, kvRows = Tk + spare;
    const probs = rand(rng, [H, Tq, Tk]), v = rand(rng, [Hkv, kvRows, Dv]);
    const naive = () => tensor([H, Tq, Dv], Float32Array.from({ length: H * Tq * Dv }, (_, e) => {
      const [row, d] = [Math.floor(e / Dv), e % Dv];
      let sum = 0;
      for (let j = 0; j < Tk; j++) sum += probs.data[row * Tk + j]! * v.data[(Math.floor(row / Tq / group) * kvRows + j) * Dv + d]!;
      return sum;
    }));
    return {
      describe: `H ${H} Hkv ${Hkv} Tq ${Tq} Tk ${Tk} kvRows ${kvRows} Dv ${Dv} seed ${seed}`,
      run: (kk, up) => kk.attendWith(up(probs), up(v), { H, Hkv, Tq, Tk, Dv, kvRows }),
      naive,
    };
  }),
  // DSA's indexer scores over a cache of kvRows rows, the first Tk filled; -∞ after each query's own position.
  indexScores: fc.record({
    H: fc.constantFrom(1, 2, 3, 4, 5), Tq: fc.constantFrom(1, 3, 5), past: fc.constantFrom(0, 1, 7, 64), spare: fc.constantFrom(0, 1, 5),
    D: fc.constantFrom(1, 3, 4, 5, 8, 9, 17, 32, 33), seed,
  }).map(({ H, Tq, past, spare, D, seed }) => {
    const rng = new Random(seed);
    const Tk = past + Tq, kvRows = Tk + spare;
    const q = rand(rng, [H, Tq, D]), keys = rand(rng, [1, kvRows, D]), w = rand(rng, [Tq, H]);
    const scale = 1 / Math.sqrt(H * D);
    const naive = () => tensor([Tq, Tk], Float32Array.from({ length: Tq * Tk }, (_, i) => {
      const [t, s] = [Math.floor(i / Tk), i % Tk];
      if (s > past + t) return -Infinity;
      let sum = 0;
      for (let h = 0; h < H; h++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q.data[(h * Tq + t) * D + d]! * keys.data[s * D + d]!;
        sum += w.data[t * H + h]! * scale * Math.max(dot, 0);
      }
      return sum;
    }));
    return {
      describe: `H ${H} Tq ${Tq} past ${past} kvRows ${kvRows} D ${D} seed ${seed}`,
      run: (kk, up) => kk.indexScores(up(q), up(keys), up(w), { H, Tq, Tk, D, offset: past, scale, kvRows }),
      naive,
    };
  }),
  moe: fc.record({ N: small, D: fc.constantFrom(1, 4, 9, 16), F: fc.constantFrom(1, 5, 8), E: fc.constantFrom(1, 3, 4), top: fc.constantFrom(1, 2), seed }).map(({ N, D, F, E, top, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [N, D]);
    const experts: ExpertWeights = { gate: rand(rng, [E, F, D]), up: rand(rng, [E, F, D]), down: rand(rng, [E, D, F]) };
    const k = Math.min(top, E);
    const routing = randomRouting(rng, N, E, k);
    const naive = () => {
      const out = new Float64Array(N * D);
      for (let a = 0; a < N * k; a++) {
        if (!routing.kept[a]) continue;
        const [t, e] = [Math.floor(a / k), routing.experts[a]!];
        const h = Array.from({ length: F }, (_, f) => {
          let [g, u] = [0, 0];
          for (let d = 0; d < D; d++) {
            g += experts.gate.data[(e * F + f) * D + d]! * x.data[t * D + d]!;
            u += experts.up.data[(e * F + f) * D + d]! * x.data[t * D + d]!;
          }
          [g, u] = [Math.fround(g), Math.fround(u)];
          return Math.fround((g / (1 + Math.exp(-g))) * u);
        });
        for (let d = 0; d < D; d++) {
          let y = 0;
          for (let f = 0; f < F; f++) y += experts.down.data[(e * D + d) * F + f]! * h[f]!;
          out[t * D + d]! += routing.weights[a]! * Math.fround(y);
        }
      }
      return tensor([N, D], Float32Array.from(out));
    };
    return {
      describe: `x [${N}, ${D}] E ${E} F ${F} k ${k} seed ${seed}`,
      run: (kk, up) => kk.moe(up(x), routing, { gate: kk.weight(experts.gate), up: kk.weight(experts.up), down: kk.weight(experts.down), E, F, D }),
      naive,
    };
  }),
};

/** Which row of spec/backends.md's kernel table a device kernel is held to; copies and one addition are exact. */
const SPEC_ROW: Record<string, string | null> = {
  "upload-read": null, embed: null, gatherRows: null, addRows: null, add: null, splitHeads: null, mergeHeads: null,
  concatLast: null, sliceRows: null, reshape: null, concatRows: null, writeRows: null,
  linear: "linear", fp8Dequant: "linear", quantLinear: "quantLinear", gemm: "matmul", rmsnorm: "rmsnorm", layernorm: "layernorm", rope: "rope", swiglu: "swiglu", softmax: "softmax", attention: "attention", attentionProbs: "attentionProbs", attendWith: "attendWith", indexScores: "indexScores", moe: "moe",
};

const tolerances = readTolerances(Object.values(SPEC_ROW).filter((r): r is string => r !== null));

/** The reference's own tolerance against the naive loops: float64 sums in another order round differently. */
const NAIVE: Tolerance = { rtol: 1e-6, atol: 1e-6, nmse: 1e-12 };

afterAll(reportWorst); // TINYSEEK_TOLERANCE_REPORT=1: the worst errors seen, as spec/backends.md's "measured" cells

const runOn = (k: DeviceKernels<Value>, c: Case): Promise<Tensor> => runUploaded(k, (kk, up) => c.run(kk, up));

describe("the reference's device kernels against naive loops", () => {
  for (const [op, arbitrary] of Object.entries(cases)) {
    it(op, async () => {
      const tol = SPEC_ROW[op] === null ? EXACT : NAIVE;
      await fc.assert(fc.asyncProperty(arbitrary, async (c) => checkTolerance(`${op}: ${c.describe}`, `${op}/naive`, await runOn(referenceDevice as DeviceKernels<Value>, c), c.naive(), tol)), { numRuns: RUNS });
    });
  }
});

for (const row of ROWS.filter((r) => r.name !== "reference")) {
  describe(`device kernels on ${row.name}`, () => {
    const started = startBackend(row, (b) => b.dispose());
    for (const [op, arbitrary] of Object.entries(cases)) {
      it(op, async (context) => {
        const backend = started.ready(context);
        // An optional kernel a backend lacks skips with its reason: it never passes silently.
        if (op === "quantLinear" && !backend.kernels.quantLinear) {
          context.skip(`${row.name} has no quantLinear kernel`);
          return;
        }
        const spec = SPEC_ROW[op];
        const tol = spec === null ? EXACT : tolerances.get(`${spec}/${row.spec}`);
        if (!tol) throw new Error(`spec/backends.md has no tolerance for ${spec} on ${row.spec}`);
        await fc.assert(fc.asyncProperty(arbitrary, async (c) => {
          checkTolerance(`${op} on ${row.name}: ${c.describe}`, `${op}/${row.name}`, await runOn(backend.kernels, c), await runOn(referenceDevice as DeviceKernels<Value>, c), tol);
        }), { numRuns: RUNS });
      });
    }
  });
}

// tfjs (training's backend) runs the model's other kernels in test/model-backends.test.ts; here its row gather, and
// the kernels DSA's indexer and NSA added (layernorm, indexScores, rope's halves, attention over a ring, attention's
// probabilities and their product with values),
// held to spec/backends.md's "tfjs" rows.
describe("device kernels on tfjs", () => {
  // Set up once: setUpTfjs wraps tfjs's matMul kernel each time it runs.
  let loaded: Promise<DeviceKernels<Value>> | undefined;
  const load = () => (loaded ??= (async () => {
    await (await import("../train/tfjs.ts")).setUpTfjs();
    return (await import("../train/tfjs-kernels.ts")).tfjsKernels() as unknown as DeviceKernels<Value>;
  })());
  for (const op of ["gatherRows", "layernorm", "indexScores", "rope", "attention", "attentionProbs", "attendWith"]) {
    it(op, async () => {
      const tfjs = await load();
      const spec = SPEC_ROW[op];
      const tol = spec === null ? EXACT : tolerances.get(`${spec}/tfjs`);
      if (!tol) throw new Error(`spec/backends.md has no tolerance for ${spec} on tfjs`);
      await fc.assert(fc.asyncProperty(cases[op]!, async (c) => {
        checkTolerance(`${op} on tfjs: ${c.describe}`, `${op}/tfjs`, await runOn(tfjs, c), await runOn(referenceDevice as DeviceKernels<Value>, c), tol);
      }), { numRuns: RUNS });
    });
  }
});

describe("the checked operations refuse bad input in one line naming the argument", () => {
  const o = referenceOps;
  const t = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, d) => a * d, 1)) });
  const cases: [string, () => unknown, string][] = [
    ["linear", () => o.linear(t([2, 3]), t([4, 5])), "x: expected shape [..., 5] for a weight [4, 5], got [2, 3]"],
    ["gemm", () => o.gemm(t([2, 3]), t([12]), t([2, 4]), { M: 2, N: 4, K: 3, transB: true, batches: 2, strideB: 12 }), "a: expected at least 12 elements, got 6"],
    ["attention", () => o.attention(t([2, 1, 4]), t([1, 3, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 4, Dh: 4, Dv: 4, scale: 1, offset: 3, kvRows: 3 }), "Tk: expected within [4, 3], got 4"],
    ["attention firstRow", () => o.attention(t([2, 1, 4]), t([1, 3, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 3, Dh: 4, Dv: 4, scale: 1, offset: 2, kvRows: 3, firstRow: 3 }), "firstRow: expected an integer in [0, 2], got 3"],
    ["indexScores w", () => o.indexScores(t([2, 1, 4]), t([1, 3, 4]), t([1, 3]), { H: 2, Tq: 1, Tk: 3, D: 4, offset: 2, scale: 1, kvRows: 3 }), "w: expected shape [1, 2], got [1, 3]"],
    ["indexScores Tk", () => o.indexScores(t([2, 1, 4]), t([1, 3, 4]), t([1, 2]), { H: 2, Tq: 1, Tk: 4, D: 4, offset: 3, scale: 1, kvRows: 3 }), "Tk: expected within [4, 3], got 4"],
    ["indexScores offset", () => o.indexScores(t([2, 1, 4]), t([1, 3, 4]), t([1, 2]), { H: 2, Tq: 1, Tk: 3, D: 4, offset: -1, scale: 1, kvRows: 3 }), "offset: expected an integer >= 0, got -1"],
    ["attentionProbs offset", () => o.attentionProbs(t([2, 1, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 3, Dh: 4, Dv: 4, scale: 1, offset: -2, kvRows: 3 }), "offset: expected an integer >= -1, got -2"],
    ["attentionProbs Tk", () => o.attentionProbs(t([2, 1, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 0, Dh: 4, Dv: 4, scale: 1, offset: -1, kvRows: 3 }), "Tk: expected within [1, 3], got 0"],
    ["attentionProbs k", () => o.attentionProbs(t([2, 1, 4]), t([1, 3, 5]), { H: 2, Hkv: 1, Tq: 1, Tk: 3, Dh: 4, Dv: 4, scale: 1, offset: 2, kvRows: 3 }), "k: expected shape [1, 3, 4], got [1, 3, 5]"],
    ["attentionProbs scale", () => o.attentionProbs(t([2, 1, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 3, Dh: 4, Dv: 4, scale: NaN, offset: 2, kvRows: 3 }), "scale: expected a finite number, got NaN"],
    ["attentionProbs logGammas", () => o.attentionProbs(t([2, 1, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 3, Dh: 4, Dv: 4, scale: 1, offset: 2, kvRows: 3, logGammas: [-1, -1] }), "logGammas: expected none (attentionProbs has no decay bias), got 2"],
    ["attentionProbs firstRow", () => o.attentionProbs(t([2, 1, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 3, Dh: 4, Dv: 4, scale: 1, offset: 2, kvRows: 3, firstRow: 1 }), "firstRow: expected 0 (attentionProbs reads no ring), got 1"],
    ["attendWith probs", () => o.attendWith(t([2, 1, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 3, Dv: 4, kvRows: 3 }), "probs: expected shape [2, 1, 3], got [2, 1, 4]"],
    ["attendWith Tk", () => o.attendWith(t([2, 1, 4]), t([1, 3, 4]), { H: 2, Hkv: 1, Tq: 1, Tk: 4, Dv: 4, kvRows: 3 }), "Tk: expected within [1, 3], got 4"],
    ["attendWith Hkv", () => o.attendWith(t([3, 1, 2]), t([2, 3, 4]), { H: 3, Hkv: 2, Tq: 1, Tk: 2, Dv: 4, kvRows: 3 }), "Hkv: expected a divisor of H=3, got 2"],
    ["layernorm", () => o.layernorm(t([2, 3]), t([4]), t([4]), 1e-6), "x: expected shape [..., 4], got [2, 3]"],
    ["layernorm bias", () => o.layernorm(t([2, 4]), t([4]), t([3]), 1e-6), "bias: expected shape [4], got [3]"],
    ["layernorm eps", () => o.layernorm(t([2, 4]), t([4]), t([4]), 0), "eps: expected a number in (0, 1), got 0"],
    ["rope interleaved", () => o.rope(t([1, 2, 4]), Int32Array.of(0, 1), new Float64Array(2), "no" as unknown as boolean), 'interleaved: expected true or false, got "no"'],
    ["addRows", () => o.addRows(t([3, 2]), t([3, 2]), Int32Array.of(0, 1)), "slots: expected 3 slots, got 2"],
    ["addRows width", () => o.addRows(t([3, 2]), t([3, 4]), Int32Array.of(0, 1, 2)), "update: expected shape [n, 2], got [3, 4]"],
    ["splitHeads", () => o.splitHeads(t([3, 10]), 2, [2, 2]), "x: expected shape [T, 8] (2 heads of 4), got [3, 10]"],
    ["reshape size", () => o.reshape(t([2, 3, 4]), [6, 5]), "shape: expected 24 elements (x is [2, 3, 4]), got [6, 5], 30"],
    ["reshape dims", () => o.reshape(t([2, 3]), [-2, -3]), "shape: expected a list of integers >= 0, got [-2, -3]"],
    ["writeRows", () => o.writeRows(t([1, 4, 2]), t([1, 3, 2]), 2), "src: expected shape [1, ≤ 2, 2] (written at row 2), got [1, 3, 2]"],
    ["embed", () => o.embed(t([5, 2]), Int32Array.of(1, 7)), "tokens[1]: expected an integer in [0, 4], got 7"],
    ["gatherRows rank", () => o.gatherRows(t([2, 3, 4, 5]), Int32Array.of(0)), "x: expected shape [N, D] or [A, N, D], got [2, 3, 4, 5]"],
    ["gatherRows row", () => o.gatherRows(t([3, 2]), Int32Array.of(0, -1)), "rows[1]: expected a row in [0, 2], got -1"],
    ["gatherRows plane row", () => o.gatherRows(t([2, 5, 3]), Int32Array.of(4, 5)), "rows[1]: expected a row in [0, 4], got 5"],
    ["gatherRows per plane", () => o.gatherRows(t([3, 5, 2]), Int32Array.of(0, 1, 2, 3), true), "rows: expected a length that is a multiple of 3 (n rows for each plane of x [3, 5, 2]), got 4"],
    ["upload", () => o.upload({ shape: [2, 2], data: new Float32Array(3) }), "value: expected a tensor { shape, data: Float32Array } whose data fills its shape, got [2, 2]"],
    ["moe", () => o.moe(t([2, 4]), { k: 1, experts: Int32Array.of(0, 0), weights: Float32Array.of(1), kept: Uint8Array.of(1, 1) }, { gate: t([1, 3, 4]), up: t([1, 3, 4]), down: t([1, 4, 3]) }), "routing.weights: expected 2 entries (N · k), got 1"],
  ];
  it.each(cases)("%s", (_, call, message) => expect(thrown(call)).toBe(message));
});
