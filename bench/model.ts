// Whole-model benchmarks: prefill and decode speed of tiny with each attention kind and of small with MLA, on the reference (and on WASM where it loads, for the "decode ≥ 30× the reference" bar), plus the cache
// each kind holds per token. `npm run bench` includes these rows (bench/run.ts calls runModelBench); on its own:
//   npx tsx bench/model.ts [--quick] [--filter REGEX] [--json FILE]
// Rows: { op: "model.prefill" | "model.decode", shape: "tiny mla T=32", impl, threads, medianMs, gflops: null,
//         tokensPerSecond, cacheBytesPerToken }. A decode row times one token at a time through a live cache, as
// generation runs it: positions T … T + 15, then the cache is filled with the prompt again (untimed) and so on.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { Bench } from "tinybench";
import { loadBackend } from "../src/backend.ts";
import { type Kernels, reference } from "../src/kernels.ts";
import { cacheBytesPerToken, createCache, type ModelCache } from "../src/model/cache.ts";
import { ATTENTION_KINDS } from "../src/model/config.ts";
import { forward } from "../src/model/model.ts";
import { preset, RUNNABLE_PRESETS } from "../src/model/presets.ts";
import { encode } from "../src/model/tokenizer.ts";
import { initModel } from "../src/model/weights.ts";
import { type BenchRow, type ImplName } from "./kernels.ts";

export interface ModelBenchRow extends BenchRow {
  tokensPerSecond: number;
  cacheBytesPerToken: number;
}

/** Decode rows time positions T … T + DECODE_STEPS - 1 of one cache. */
const DECODE_STEPS = 16;

const TEXT = "DeepSeek-V3 routes each token to 8 of 256 experts; tinyseek routes it to 4 of 16, and shows you which. ";

async function timeMedian(fn: () => unknown, timeMs: number, beforeEach?: () => void): Promise<number> {
  const bench = new Bench({ time: timeMs, iterations: 3, warmupTime: Math.min(50, timeMs / 4), warmupIterations: 1 });
  bench.add("run", fn, beforeEach ? { beforeEach } : {}); // beforeEach runs outside the timed call
  await bench.run();
  const result = bench.tasks[0]!.result;
  if (result.state === "errored") throw result.error;
  if (!("latency" in result)) throw new Error("tinybench gave no latency");
  return result.latency.p50;
}

export async function runModelBench(options: { quick: boolean; filter?: RegExp; timeMs?: number } = { quick: true }): Promise<ModelBenchRow[]> {
  const T = options.quick ? 16 : 32;
  const timeMs = options.timeMs ?? (options.quick ? 150 : 500);
  // tiny with every kind; small (25M parameters, seconds per prefill on the reference) with the default kind only.
  const runs = RUNNABLE_PRESETS.flatMap((name) =>
    (name === "tiny" ? [...ATTENTION_KINDS] : options.quick ? [] : ["mla" as const]).map((kind) => ({ name, kind })));
  const impls: { impl: ImplName; threads: number; kernels: Kernels; dispose: () => Promise<void> }[] = [
    { impl: "reference", threads: 1, kernels: reference, dispose: async () => {} },
  ];
  try {
    const wasm = await loadBackend("wasm", { threads: 1 });
    if (wasm.kernels) impls.push({ impl: "wasm", threads: 1, kernels: wasm.kernels, dispose: () => wasm.dispose() });
  } catch (error) {
    console.error(`model bench: wasm not available (${(error as Error).message.split("\n")[0]})`);
  }
  const prompt = encode(TEXT.repeat(4)).slice(0, T);
  const rows: ModelBenchRow[] = [];
  for (const { name, kind } of runs) {
    const shape = `${name} ${kind} T=${T}`;
    if (options.filter && !options.filter.test(`model.prefill ${shape}`) && !options.filter.test(`model.decode ${shape}`)) continue;
    const model = initModel(preset(name, { attention_kind: kind }));
    const cacheBytes = cacheBytesPerToken(model.config, T);
    for (const { impl, threads, kernels } of impls) {
      const prefillMs = await timeMedian(() => forward(model, prompt, { kernels }), timeMs);
      // Decode continues one live cache (grown in place, as in generation) for 16 steps, then starts again.
      let cache: ModelCache = createCache(model.config);
      const ready = () => {
        if (cache.length > 0 && cache.length < T + DECODE_STEPS) return;
        cache = createCache(model.config);
        forward(model, prompt, { kernels, cache });
      };
      const decodeMs = await timeMedian(() => forward(model, [prompt[cache.length % T]!], { kernels, cache }), timeMs, ready);
      const common = { impl, threads, gflops: null, cacheBytesPerToken: cacheBytes };
      rows.push({ op: "model.prefill", shape, medianMs: prefillMs, tokensPerSecond: (T / prefillMs) * 1000, ...common });
      rows.push({ op: "model.decode", shape, medianMs: decodeMs, tokensPerSecond: 1000 / decodeMs, ...common });
      console.error(`  ${shape} ${impl}: prefill ${((T / prefillMs) * 1000).toFixed(0)} tok/s, decode ${(1000 / decodeMs).toFixed(0)} tok/s`);
    }
  }
  for (const impl of impls) await impl.dispose();
  return rows;
}

export function modelMarkdownTable(rows: ModelBenchRow[]): string {
  const lines = ["| op | preset, kind, length | impl | threads | median ms | tokens/s | cache bytes/token |", "|---|---|---|---|---|---|---|"];
  for (const r of rows) {
    lines.push(`| ${r.op} | ${r.shape} | ${r.impl} | ${r.threads} | ${r.medianMs.toFixed(3)} | ${r.tokensPerSecond.toFixed(1)} | ${r.cacheBytesPerToken.toFixed(0)} |`);
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
