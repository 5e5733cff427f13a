// Whole-model benchmarks: prefill and decode speed of tiny with each attention kind and of small with MLA, on the
// reference, on WASM with 1 and 2 threads (the one forward, src/model/forward.ts, over its device kernels: values
// kept in WASM memory; segmented, sparse and dsa layers on the host through its kernels) and on tfjs-backend-wasm and
// tfjs-backend-cpu through the tfjs implementation of the same operation interface (train/tfjs-kernels.ts), for the
// "decode ≥ 30× the reference, ≥ 3× tfjs-wasm" bars; plus the cache each kind holds per token, and small's decode as a
// share of its compute bound (2 × active parameters per token ÷ the same run's WASM matmul rate).
// `npm run bench` includes these rows (bench/run.ts calls runModelBench); on its own:
//   npx tsx bench/model.ts [--quick] [--filter REGEX] [--json FILE]
// Rows: { op: "model.prefill" | "model.decode", shape: "tiny mla T=32", impl, threads, medianMs, gflops: null,
//         tokensPerSecond, cacheBytesPerToken }. A decode row times one token at a time through a live cache, as
// generation runs it: positions T … T + 15 after the prompt, in rounds interleaving the implementations.

import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { Bench } from "tinybench";
import type { Backend } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { cacheBytesPerToken, createCache, releaseCache, type ModelCache } from "../src/model/cache.ts";
import { ATTENTION_KINDS } from "../src/model/config.ts";
import { forward } from "../src/model/forward.ts";
import { countParameters } from "../src/model/params.ts";
import { preset, RUNNABLE_PRESETS } from "../src/model/presets.ts";
import { encode } from "../src/model/tokenizer.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { createBackend as createWasm, type WasmBackend } from "../wasm/backend.ts";
import { type TfValue, tfjsKernels } from "../train/tfjs-kernels.ts";
import { setUpTfjs } from "../train/tfjs.ts";
import type { BenchRow, ImplName } from "./kernels.ts";

export interface ModelBenchRow extends BenchRow {
  tokensPerSecond: number;
  cacheBytesPerToken: number;
  /** Decode rows of `small`: tokens/s ÷ the compute bound's tokens/s (the same run's WASM 1-thread matmul rate). */
  computeBoundShare?: number;
}

/** Decode rows time positions T … T + DECODE_STEPS - 1 of one cache. */
const DECODE_STEPS = 16;

const TEXT = "DeepSeek-V3 routes each token to 8 of 256 experts; tinyseek routes it to 4 of 16, and shows you which. ";

async function timeMedian(fn: () => unknown, timeMs: number): Promise<number> {
  const bench = new Bench({ time: timeMs, iterations: 3, warmupTime: Math.min(50, timeMs / 4), warmupIterations: 1 });
  bench.add("run", fn);
  await bench.run();
  const result = bench.tasks[0]!.result;
  if (result.state === "errored") throw result.error;
  if (!("latency" in result)) throw new Error("tinybench gave no latency");
  return result.latency.p50;
}

/** One way to run the whole model: a prefill, and sessions that decode through a cache of their own. */
interface ModelImpl {
  impl: ImplName;
  threads: number;
  prefill(model: Model, prompt: number[]): unknown;
  /** A fresh sequence: feed() runs tokens through its cache (awaited when it answers with a promise). */
  session(model: Model): { feed(tokens: number[]): unknown; release(): void };
}

/** The one forward on a backend (undefined: the reference), decoding through a cache of `capacity` positions. */
function backendImpl(impl: ImplName, backend: Backend | undefined, capacity: number, threads = 1): ModelImpl {
  return {
    impl, threads,
    prefill: (model, prompt) => forward(model, prompt, { backend }),
    session(model) {
      const cache = createCache(model.config, { backend, capacity });
      return { feed: (tokens) => forward(model, tokens, { backend, cache }), release: () => releaseCache(cache) };
    },
  };
}

type Tf = Awaited<ReturnType<typeof setUpTfjs>>;

/**
 * The one forward on tfjs (train/tfjs-kernels.ts) with tfjs's backend `which` selected before each prefill and
 * session (tfjs has one global backend; selecting an initialised one is synchronous). tfjs values are tensors that
 * only a scope frees: each call runs in its own scope, and a session keeps its cache's tensors across steps,
 * disposing the ones a step replaced.
 */
function tfjsImpl(tf: Tf, which: "wasm" | "cpu", capacity: number): ModelImpl {
  const backend = { ops: opsOver(tfjsKernels()) } as unknown as Backend;
  const use = () => void tf.setBackend(which);
  const cacheTensors = (cache: ModelCache) => cache.layers.flatMap((layer) => layer.kind === "device" ? [layer.keys, layer.values].filter((v) => v).map((v) => (v as TfValue).t) : []);
  return {
    impl: which === "wasm" ? "tfjs-wasm" : "tfjs-cpu", threads: 1,
    prefill(model, prompt) {
      use();
      tf.tidy(() => void forward(model, prompt, { backend }));
    },
    session(model) {
      use();
      const cache = createCache(model.config, { backend, capacity });
      let held = new Set<import("@tensorflow/tfjs-core").Tensor>();
      return {
        feed(tokens) {
          tf.engine().startScope();
          let now = held;
          try {
            forward(model, tokens, { backend, cache });
          } finally {
            now = new Set(cacheTensors(cache));
            for (const t of now) tf.keep(t);
            tf.engine().endScope();
            for (const t of held) if (!now.has(t)) t.dispose();
            held = now;
          }
        },
        release() {
          for (const t of held) t.dispose();
          held.clear();
        },
      };
    },
  };
}

/** The WASM backend's matmul rate (GFLOP/s): n × n × n products on its host kernels, 1 thread, median of rounds. */
function matmulRate(wasm: WasmBackend, n: number, rounds: number): number {
  const a = { shape: [n, n], data: Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5) };
  const times: number[] = [];
  for (let r = -1; r < rounds; r++) {
    const started = performance.now();
    wasm.kernels!.matmul(a, a);
    if (r >= 0) times.push(performance.now() - started);
  }
  return (2 * n ** 3) / (median(times) * 1e6);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/**
 * Decode ms per token for each impl, interleaved: a round runs every impl in turn, each a fresh session fed the
 * prompt (untimed) and then DECODE_STEPS single tokens timed one by one; an impl's figure is the median over rounds
 * of each round's median, so that a neighbour's load falls on all of them alike.
 */
async function decodeRounds(model: Model, prompt: number[], impls: ModelImpl[], rounds: number): Promise<number[]> {
  const perImpl = impls.map(() => [] as number[]);
  for (let round = -1; round < rounds; round++) { // round -1 warms the code up and is not counted
    for (const [i, impl] of impls.entries()) {
      const session = impl.session(model);
      try {
        await session.feed(prompt);
        const times: number[] = [];
        for (let step = 0; step < DECODE_STEPS; step++) {
          const started = performance.now();
          await session.feed([prompt[step % prompt.length]!]);
          times.push(performance.now() - started);
        }
        if (round >= 0) perImpl[i]!.push(median(times));
      } finally {
        session.release();
      }
    }
  }
  return perImpl.map(median);
}

export async function runModelBench(options: { quick: boolean; filter?: RegExp; timeMs?: number } = { quick: true }): Promise<ModelBenchRow[]> {
  const T = options.quick ? 16 : 32;
  const timeMs = options.timeMs ?? (options.quick ? 150 : 500);
  // tiny with every kind; small (25M parameters, seconds per prefill on the reference) with the default kind only.
  const runs = RUNNABLE_PRESETS.flatMap((name) =>
    (name === "tiny" ? [...ATTENTION_KINDS] : options.quick ? [] : ["mla" as const]).map((kind) => ({ name, kind })));
  const capacity = T + DECODE_STEPS;
  const impls: ModelImpl[] = [backendImpl("reference", undefined, capacity)];
  let wasm: WasmBackend | undefined, wasm2: WasmBackend | undefined;
  try {
    wasm = await createWasm({ threads: 1 });
    impls.push(backendImpl("wasm", wasm, capacity));
    wasm2 = await createWasm({ threads: 2 });
    impls.push(backendImpl("wasm", wasm2, capacity, 2));
  } catch (error) {
    console.error(`model bench: wasm not available (${(error as Error).message.split("\n")[0]})`);
  }
  try {
    const tf = await setUpTfjs(); // tfjs-backend-wasm, as training runs it
    await import("@tensorflow/tfjs-backend-cpu");
    await tf.setBackend("cpu"); // initialised once here, so that selecting it later is synchronous
    impls.push(tfjsImpl(tf, "wasm", capacity), tfjsImpl(tf, "cpu", capacity));
  } catch (error) {
    console.error(`model bench: tfjs not available (${(error as Error).message.split("\n")[0]})`);
  }
  console.error(`model bench: load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  const prompt = encode(TEXT.repeat(4)).slice(0, T);
  const rows: ModelBenchRow[] = [];
  for (const { name, kind } of runs) {
    const shape = `${name} ${kind} T=${T}`;
    if (options.filter && !options.filter.test(`model.prefill ${shape}`) && !options.filter.test(`model.decode ${shape}`)) continue;
    const model = initModel(preset(name, { attention_kind: kind }));
    const cacheBytes = cacheBytesPerToken(model.config, T);
    const running = impls;
    const rounds = name === "tiny" ? (options.quick ? 5 : 15) : 3;
    const decodeMs = await decodeRounds(model, prompt, running, rounds);
    // small's compute bound: 2 × active parameters per token at the WASM matmul rate measured right after its decode.
    const rate = name !== "tiny" && wasm ? matmulRate(wasm, 512, 5) : 0;
    const boundMs = rate > 0 ? (2 * countParameters(model.config).active) / (rate * 1e6) : 0;
    if (boundMs > 0) console.error(`  ${shape}: ${countParameters(model.config).active} active parameters, matmul ${rate.toFixed(1)} GFLOP/s: compute bound ${(1000 / boundMs).toFixed(0)} tok/s`);
    for (const [i, { impl, threads }] of running.entries()) {
      const prefillMs = await timeMedian(() => running[i]!.prefill(model, prompt), timeMs);
      const common = { impl, threads, gflops: null, cacheBytesPerToken: cacheBytes };
      rows.push({ op: "model.prefill", shape, medianMs: prefillMs, tokensPerSecond: (T / prefillMs) * 1000, ...common });
      const share = boundMs > 0 ? { computeBoundShare: boundMs / decodeMs[i]! } : {};
      rows.push({ op: "model.decode", shape, medianMs: decodeMs[i]!, tokensPerSecond: 1000 / decodeMs[i]!, ...common, ...share });
      const tfw = running.findIndex((r) => r.impl === "tfjs-wasm");
      const ratio = impl === "reference" ? "" : ` (decode ${(decodeMs[0]! / decodeMs[i]!).toFixed(1)}× the reference${tfw >= 0 ? `, ${(decodeMs[tfw]! / decodeMs[i]!).toFixed(2)}× tfjs-wasm` : ""}${boundMs > 0 ? `, ${((100 * boundMs) / decodeMs[i]!).toFixed(1)} % of the compute bound` : ""})`;
      console.error(`  ${shape} ${impl}×${threads}: prefill ${((T / prefillMs) * 1000).toFixed(0)} tok/s, decode ${(1000 / decodeMs[i]!).toFixed(0)} tok/s${ratio}`);
    }
  }
  console.error(`model bench: load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  await wasm?.dispose();
  await wasm2?.dispose();
  return rows;
}

export function modelMarkdownTable(rows: ModelBenchRow[]): string {
  const lines = ["| op | preset, kind, length | impl | threads | median ms | tokens/s | × reference | × tfjs-wasm | % of compute bound | cache bytes/token |", "|---|---|---|---|---|---|---|---|---|---|"];
  for (const r of rows) {
    const of = (impl: ImplName) => rows.find((o) => o.op === r.op && o.shape === r.shape && o.impl === impl);
    const times = (base: ModelBenchRow | undefined) => (base ? `${(base.medianMs / r.medianMs).toFixed(2)}` : "");
    const share = r.computeBoundShare === undefined ? "" : (100 * r.computeBoundShare).toFixed(1);
    lines.push(`| ${r.op} | ${r.shape} | ${r.impl} | ${r.threads} | ${r.medianMs.toFixed(3)} | ${r.tokensPerSecond.toFixed(1)} | ${times(of("reference"))} | ${times(of("tfjs-wasm"))} | ${share} | ${r.cacheBytesPerToken.toFixed(0)} |`);
  }
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, filter: { type: "string" }, json: { type: "string" } } });
  const rows = await runModelBench({ quick: values.quick, filter: values.filter ? new RegExp(values.filter) : undefined });
  console.log(modelMarkdownTable(rows));
  if (values.json) {
    mkdirSync(dirname(values.json), { recursive: true });
    writeFileSync(values.json, JSON.stringify(rows, null, 2) + "\n");
  }
}
