// Kernel benchmarks: every case (op at one size) timed on every implementation side by side, interleaved in
// rounds so that a neighbour's load hits all of them alike, median per implementation. Implementations are
// values of `Impl`: tinyseek's own backends through their Kernels, and peers (tfjs, onnxruntime-web) doing the
// same arithmetic with their own ops. bench/model.ts and the WebGPU rows plug in through `Impl` and `runBench`.

import { createRequire } from "node:module";
import { dirname } from "node:path";
import { Bench } from "tinybench";
import type { AsyncKernels, Backend } from "../src/backend.ts";
import { reference } from "../src/kernels.ts";
import type { ExpertWeights, Routing } from "../src/moe/experts.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";
import { createBackend as createWasm } from "../wasm/backend.ts";

export type ImplName = "reference" | "wasm" | "wasm-relaxed" | "wasm-resident" | "webgpu" | "tfjs-wasm" | "tfjs-cpu" | "ort-wasm";

export interface BenchRow {
  op: string;
  shape: string;
  impl: ImplName;
  threads: number;
  medianMs: number;
  /** Useful floating-point operations per second (causal attention counts visible pairs only); null if not a flop-bound op. */
  gflops: number | null;
}

/** One op at one size, with its inputs. */
export interface BenchCase {
  op: string;
  shape: string;
  flops: number | null;
  inputs: Record<string, Tensor>;
  /** Extra non-tensor arguments (routing for moe). */
  extra?: { routing?: Routing; experts?: ExpertWeights };
}

export interface Impl {
  impl: ImplName;
  threads: number;
  /** What it runs on, printed above the table (a backend's description). */
  description?: string;
  /** Asynchronous set-up for the cases about to run (sessions, uploads), when the implementation needs any. */
  ready?(cases: BenchCase[]): Promise<void>;
  /** A function that runs `c` once (returning when the result is on the host), or undefined if not supported. */
  prepare(c: BenchCase): (() => unknown) | undefined;
  dispose(): Promise<void>;
}

/** Runs any tinyseek kernels (sync or async): the same code times reference, wasm and webgpu. */
export function kernelsImpl(impl: ImplName, threads: number, kernels: AsyncKernels, dispose = async () => {}, maxFlops = Infinity): Impl {
  return {
    impl,
    threads,
    dispose,
    prepare(c) {
      if ((c.flops ?? 0) > maxFlops) return undefined;
      const t = c.inputs;
      switch (c.op) {
        case "matmul":
          return () => kernels.matmul(t.a!, t.b!);
        case "linear":
          return () => kernels.linear(t.x!, t.w!);
        case "attention":
          return () => kernels.attention(t.q!, t.k!, t.v!, { mask: { causal: true } });
        case "softmax":
          return () => kernels.softmax(t.x!);
        case "rmsnorm":
          return () => kernels.rmsnorm(t.x!, t.w!, 1e-6);
        case "moe":
          return () => kernels.moe(t.x!, c.extra!.routing!, c.extra!.experts!);
      }
      return undefined;
    },
  };
}

export const referenceImpl = (): Impl => kernelsImpl("reference", 1, reference, undefined, 3e8);

/**
 * The wasm backend: "wasm" its SIMD128 build, "wasm-relaxed" its relaxed-SIMD (FMA) build (throws where the engine
 * cannot validate it), named apart so that a run never reports one build under the other's name.
 */
export async function wasmImpl(threads: number, impl: "wasm" | "wasm-relaxed" = "wasm"): Promise<Impl> {
  const relaxed = impl === "wasm-relaxed";
  const backend: Backend = await createWasm({ threads, relaxed });
  // The SIMD128 build's description names relaxed SIMD too ("… does not validate relaxed SIMD"): match its start.
  if (relaxed && !backend.description.startsWith("WebAssembly relaxed SIMD,")) {
    await backend.dispose();
    throw new Error("the engine does not validate the relaxed-SIMD build (Node 22+, or Node 20 with --experimental-wasm-relaxed-simd)");
  }
  return { ...kernelsImpl(impl, threads, backend.kernels!, () => backend.dispose()), description: backend.description };
}

/** tfjs-core on its wasm (XNNPACK) or cpu backend; copies in and out per call, as the Kernels interface does. */
export async function tfjsImpl(which: "wasm" | "cpu"): Promise<Impl> {
  const tf = await import("@tensorflow/tfjs-core");
  if (which === "wasm") {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    const require = createRequire(import.meta.url);
    wasm.setWasmPaths(`${dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"))}/dist/`);
  } else {
    await import("@tensorflow/tfjs-backend-cpu");
  }
  // tfjs has one global backend: each call selects its own first (a no-op when it already is the one).
  const name = which;
  await tf.setBackend(name);
  const host = (t: Tensor) => tf.tensor(t.data, [...t.shape]);
  const run = (f: () => import("@tensorflow/tfjs-core").Tensor) => async () => {
    if (tf.getBackend() !== name) await tf.setBackend(name);
    const out = tf.tidy(f);
    out.dataSync();
    out.dispose();
  };
  /** A tensor kept across calls (a weight, a mask), made on this backend the first time it is needed. */
  const resident = (make: () => import("@tensorflow/tfjs-core").Tensor) => {
    let kept: import("@tensorflow/tfjs-core").Tensor | undefined;
    return () => (kept ??= tf.keep(make()));
  };
  return {
    impl: which === "wasm" ? "tfjs-wasm" : "tfjs-cpu",
    threads: 1,
    dispose: async () => {},
    prepare(c) {
      if (which === "cpu" && (c.flops ?? 0) > 2e9) return undefined; // minutes per call
      const t = c.inputs;
      switch (c.op) {
        case "matmul":
          return run(() => tf.matMul(host(t.a!), host(t.b!)));
        case "linear": {
          const w = resident(() => host(t.w!)); // a weight stays resident, as ours does
          return run(() => tf.matMul(host(t.x!), w(), false, true));
        }
        case "attention": {
          // No fused kernel: scores, a causal bias, softmax, weighted sum (it computes the hidden half too).
          const [, H, T, D] = t.q!.shape as [number, number, number, number];
          const bias = resident(() => tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)), -1e30)));
          return run(() => {
            const q = tf.reshape(host(t.q!), [H, T, D]), k = tf.reshape(host(t.k!), [H, T, D]), v = tf.reshape(host(t.v!), [H, T, D]);
            const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)), bias());
            return tf.matMul(tf.softmax(scores), v);
          });
        }
        case "softmax":
          return run(() => tf.softmax(host(t.x!)));
        case "rmsnorm":
          return run(() => {
            const x = host(t.x!);
            return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6))), host(t.w!));
          });
      }
      return undefined;
    },
  };
}

/**
 * onnxruntime-web's wasm execution provider (single thread) on one-node ONNX models written by bench/onnx.ts:
 * MatMul and Softmax. It has no fused attention or RMSNorm at opset 13, so those cases have no ort row.
 */
export async function ortImpl(): Promise<Impl> {
  const ort = await import("onnxruntime-web");
  const { singleOpModel } = await import("./onnx.ts");
  ort.env.wasm.numThreads = 1;
  const feed = (t: Tensor) => new ort.Tensor("float32", t.data, [...t.shape]);
  const sessions: { release(): Promise<void> }[] = [];
  const session = async (op: string, inputs: Record<string, Tensor>, out: readonly number[]) => {
    const shapes = Object.fromEntries(Object.entries(inputs).map(([n, t]) => [n, t.shape]));
    const s = await ort.InferenceSession.create(singleOpModel(op, shapes, { Y: out }), { executionProviders: ["wasm"] });
    sessions.push(s);
    const feeds = Object.fromEntries(Object.entries(inputs).map(([n, t]) => [n, feed(t)]));
    return async () => (await s.run(feeds)).Y!.data;
  };
  const prepared = new Map<BenchCase, () => unknown>();
  return {
    impl: "ort-wasm",
    threads: 1,
    dispose: async () => void (await Promise.all(sessions.map((s) => s.release()))),
    // Sessions are created ahead (prepare is synchronous): call `ortPrepare` first for the cases you run.
    prepare: (c) => prepared.get(c),
    async ready(cases: BenchCase[]) {
      for (const c of cases) {
        const t = c.inputs;
        if (c.op === "matmul") prepared.set(c, await session("MatMul", { A: t.a!, B: t.b! }, [t.a!.shape[0]!, t.b!.shape[1]!]));
        if (c.op === "softmax") prepared.set(c, await session("Softmax", { X: t.x! }, t.x!.shape));
      }
    },
  };
}

/** The cases: square matmuls 64 to 2048, a decode-step linear, causal attention at T = 512, rows, an MoE layer. */
export function kernelCases(quick: boolean): BenchCase[] {
  const rng = new Random(7);
  const r = (shape: number[]) => randBounded(rng, shape);
  const cases: BenchCase[] = [];
  for (const n of quick ? [64, 256, 512] : [64, 128, 256, 512, 1024, 2048]) {
    cases.push({ op: "matmul", shape: `${n}x${n}x${n}`, flops: 2 * n ** 3, inputs: { a: r([n, n]), b: r([n, n]) } });
  }
  for (const [M, K, N] of [[1, 2048, 2048], [16, 1024, 1024]]) {
    cases.push({ op: "linear", shape: `${M}x${K}x${N}`, flops: 2 * M * K * N, inputs: { x: r([M, K]), w: r([N, K]) } });
  }
  for (const [H, T, D] of quick ? [[4, 512, 64]] : [[4, 128, 64], [4, 512, 64], [4, 1024, 64]]) {
    const pairs = (T * (T + 1)) / 2; // visible (query, key) pairs under the causal mask
    cases.push({
      op: "attention",
      shape: `H${H} T${T} D${D} causal`,
      flops: 4 * H * pairs * D,
      inputs: { q: r([1, H, T, D]), k: r([1, H, T, D]), v: r([1, H, T, D]) },
    });
  }
  cases.push({ op: "softmax", shape: "512x512", flops: null, inputs: { x: r([512, 512]) } });
  cases.push({ op: "rmsnorm", shape: "512x2048", flops: null, inputs: { x: r([512, 2048]), w: r([2048]) } });
  const [N, D, F, E, k] = [64, 512, 256, 8, 2];
  const routing: Routing = {
    k,
    experts: Int32Array.from({ length: N * k }, (_, a) => (Math.floor(a / k) * 3 + (a % k) * 5) % E),
    weights: Float32Array.from({ length: N * k }, () => 0.5),
    kept: new Uint8Array(N * k).fill(1),
  };
  const experts = { gate: r([E, F, D]), up: r([E, F, D]), down: r([E, D, F]) };
  cases.push({ op: "moe", shape: `N${N} D${D} F${F} E${E} k${k}`, flops: 6 * N * k * D * F, inputs: { x: r([N, D]) }, extra: { routing, experts } });
  return cases;
}

/**
 * Times every case on every implementation: `rounds` rounds, each a tinybench run of all implementations in
 * turn for timeMs / rounds each (at least one call); the row's figure is the median over rounds of each round's
 * median latency. Many short rounds, not one long run per implementation, so that load from other processes
 * falls on every implementation alike.
 */
export async function runBench(
  cases: BenchCase[],
  impls: Impl[],
  { timeMs = 300, rounds = 3, onRow }: { timeMs?: number; rounds?: number; onRow?: (row: BenchRow) => void } = {},
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const impl of impls) await impl.ready?.(cases);
  for (const c of cases) {
    const runs = impls.map((impl) => ({ impl, fn: impl.prepare(c), medians: [] as number[] })).filter((r) => r.fn);
    for (let round = 0; round < rounds; round++) {
      const first = round === 0; // warm up (JIT tiers, caches, packed weights) once
      const bench = new Bench({ time: timeMs / rounds, iterations: 1, warmup: first, warmupTime: Math.min(50, timeMs / 4), warmupIterations: 1 });
      runs.forEach((r, i) => bench.add(String(i), async () => void (await r.fn!())));
      await bench.run();
      bench.tasks.forEach((task, i) => {
        const result = task.result;
        if (result.state === "errored") throw result.error;
        if ("latency" in result) runs[i]!.medians.push(result.latency.p50);
      });
    }
    for (const r of runs) {
      const medianMs = median(r.medians);
      const row: BenchRow = {
        op: c.op,
        shape: c.shape,
        impl: r.impl.impl,
        threads: r.impl.threads,
        medianMs,
        gflops: c.flops === null ? null : c.flops / medianMs / 1e6,
      };
      rows.push(row);
      onRow?.(row);
    }
  }
  return rows;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** A markdown table: one line per case and implementation, with the speed-up over tfjs-wasm on that case. */
export function markdownTable(rows: BenchRow[]): string {
  const lines = ["| op | shape | impl | threads | median ms | GFLOP/s | vs tfjs-wasm |", "|---|---|---|---|---|---|---|"];
  for (const row of rows) {
    const base = rows.find((r) => r.op === row.op && r.shape === row.shape && r.impl === "tfjs-wasm");
    const ratio = base ? `${(base.medianMs / row.medianMs).toFixed(2)}×` : "";
    const gflops = row.gflops === null ? "" : row.gflops.toFixed(1);
    lines.push(`| ${row.op} | ${row.shape} | ${row.impl} | ${row.threads} | ${row.medianMs.toFixed(3)} | ${gflops} | ${ratio} |`);
  }
  return lines.join("\n");
}
