// Whole-model benchmarks: prefill and decode speed of tiny with each attention kind and of small with MLA, on the
// reference, on WASM with 1 and 2 threads and its relaxed-SIMD build on 1 (the one forward, src/model/forward.ts,
// over its device kernels: values kept in WASM memory; every attention kind on them, with its small host steps) and
// on tfjs-backend-wasm and tfjs-backend-cpu through the tfjs implementation of the same operation interface
// (train/tfjs-kernels.ts), for the "decode ≥ 30× the reference, ≥ 3× tfjs-wasm" bars; plus the cache each kind holds
// per token, and small's decode as a share of its compute bound (2 × active parameters per token ÷ the same run's
// best WASM matmul rate). Each implementation runs in a process of its own (bench/model-worker.ts says why) on the
// same BF16-exact weights.
// `npm run bench` includes these rows (bench/run.ts calls runModelBench); on its own:
//   npx tsx bench/model.ts [--quick] [--filter REGEX] [--json FILE]
// Rows: { op: "model.prefill" | "model.decode", shape: "tiny mla T=32", impl, threads, medianMs, gflops: null,
//         tokensPerSecond, cacheBytesPerToken }. A decode row times one token at a time through a live cache, as
// generation runs it: positions T … T + 15 after the prompt, in rounds interleaving the implementations.

import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { cacheBytesPerToken } from "../src/model/cache.ts";
import { ATTENTION_KINDS, type AttentionKind } from "../src/model/config.ts";
import { countParameters } from "../src/model/params.ts";
import { preset, RUNNABLE_PRESETS } from "../src/model/presets.ts";
import { encode } from "../src/model/tokenizer.ts";
import type { BenchRow, ImplName } from "./kernels.ts";
import type { ImplSpec, Request } from "./model-worker.ts";

export interface ModelBenchRow extends BenchRow {
  tokensPerSecond: number;
  cacheBytesPerToken: number;
  /** Decode rows of `small`: tokens/s ÷ the compute bound's tokens/s (the same run's best WASM 1-thread matmul rate). */
  computeBoundShare?: number;
}

/** Decode rows time positions T … T + DECODE_STEPS - 1 of one cache. */
const DECODE_STEPS = 16;

const TEXT = "DeepSeek-V3 routes each token to 8 of 256 experts; tinyseek routes it to 4 of 16, and shows you which. ";

type Ask = Request extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

/** An implementation running in its own process (bench/model-worker.ts says why): ask() one request at a time. */
export interface Remote extends ImplSpec {
  /** The process's id (bench/neighbours.ts reads its page faults). */
  pid: number;
  ask<T>(request: Ask): Promise<T>;
  close(): Promise<number>;
}

/**
 * V8's young generation of each worker, fixed at 16 MB a semi-space (V8's own largest on 64 bits). Left to itself,
 * V8 shrinks the young generation of a process whose allocation rate has fallen (a worker waiting while a slow
 * implementation runs its session) and hands its pages back to the system; the worker's next session then faults
 * them in again page by page as its decode steps allocate (JavaScript values, 110 – 220 KB a tiny step). On this
 * machine that ran WASM's steps 3 – 5× slower, with ~440 minor page faults a 16-step session
 * (`npx tsx bench/neighbours.ts tfjs-cpu mha --young default` shows it; bench/README.md).
 */
export const FIXED_YOUNG_GENERATION = ["--min-semi-space-size=16", "--max-semi-space-size=16"];

/** Starts the process for `spec`; resolves once its implementation is set up, rejects with its one-line reason.
 *  `v8Flags`: the worker's V8 flags (default: the fixed young generation above). */
export function spawn(spec: ImplSpec, v8Flags: readonly string[] = FIXED_YOUNG_GENERATION): Promise<Remote> {
  // The process loads TypeScript through tsx's loader, as `npm run bench` runs this file.
  const entry = fileURLToPath(new URL("./model-worker.ts", import.meta.url));
  const worker = fork(entry, [JSON.stringify(spec)], { execArgv: ["--import", "tsx", ...v8Flags], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  let next = 1;
  const fail = (error: Error) => {
    for (const w of waiting.values()) w.reject(error);
    waiting.clear();
  };
  worker.on("message", ({ id, result, error }: { id: number; result?: unknown; error?: string }) => {
    const w = waiting.get(id);
    waiting.delete(id);
    if (error === undefined) w?.resolve(result);
    else w?.reject(new Error(error));
  });
  worker.on("error", fail);
  const exited = new Promise<number>((resolve) => worker.on("exit", (code) => {
    fail(new Error(`the ${spec.impl} process exited (code ${code})`));
    resolve(code ?? 0);
  }));
  const call = <T>(id: number, post?: Request) => new Promise<T>((resolve, reject) => {
    waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
    if (post) worker.send(post);
  });
  const ask = <T>(request: Ask) => {
    const id = next++;
    return call<T>(id, { ...request, id } as Request);
  };
  const close = () => (worker.kill(), exited);
  const remote: Remote = { ...spec, pid: worker.pid!, ask, close };
  return call<string>(0).then(() => remote, async (error: Error) => {
    await close();
    throw error;
  });
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/**
 * Decode ms per token for each impl, interleaved: after warmMs of untimed sessions each, a round runs every impl in
 * turn (starting one later each round), each a fresh session fed the prompt (untimed) and then DECODE_STEPS single tokens timed one by one; an impl's
 * figure is the median over rounds of each round's median, so that a neighbour's load falls on all of them alike.
 * The warm-up matters: V8 compiles WASM with its baseline compiler first and the forward's TypeScript tiers up over
 * hundreds of calls; one session (17 forwards) left tiny's WASM decode 2–3× slower than its steady state.
 */
async function decodeRounds(prompt: number[], impls: Remote[], rounds: number, warmMs: number): Promise<number[]> {
  for (const impl of impls) await impl.ask({ op: "warm", prompt, ms: warmMs });
  const perImpl = impls.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    // Each round starts one implementation later: a process runs slower right after some others (bench/README.md,
    // "small in the bench"), and rotating gives every implementation every place in the round alike.
    for (let j = 0; j < impls.length; j++) {
      const i = (round + j) % impls.length;
      perImpl[i]!.push(median(await impls[i]!.ask<number[]>({ op: "session", prompt, steps: DECODE_STEPS })));
    }
  }
  return perImpl.map(median);
}

export async function runModelBench(options: { quick: boolean; filter?: RegExp; timeMs?: number } = { quick: true }): Promise<ModelBenchRow[]> {
  const T = options.quick ? 16 : 32;
  const timeMs = options.timeMs ?? (options.quick ? 150 : 500);
  // tiny with every kind; small (25M parameters, seconds per prefill on the reference) with the default kind only.
  const runs = RUNNABLE_PRESETS.flatMap((name) =>
    (name === "tiny" ? [...ATTENTION_KINDS] : options.quick ? [] : ["mla" as const]).map((kind) => ({ name, kind: kind as AttentionKind })))
    .filter(({ name, kind }) => !options.filter || [`model.prefill`, `model.decode`].some((op) => options.filter!.test(`${op} ${name} ${kind} T=${T}`)));
  if (runs.length === 0) return [];
  const capacity = T + DECODE_STEPS;
  const specs: ImplSpec[] = [
    { impl: "reference", threads: 1, capacity }, { impl: "wasm", threads: 1, capacity }, { impl: "wasm", threads: 2, capacity },
    { impl: "wasm-relaxed", threads: 1, capacity },
    { impl: "tfjs-wasm", threads: 1, capacity }, { impl: "tfjs-cpu", threads: 1, capacity },
  ];
  const impls: Remote[] = [];
  for (const spec of specs) {
    try {
      impls.push(await spawn(spec));
    } catch (error) {
      console.error(`model bench: ${spec.impl} ×${spec.threads} not available (${(error as Error).message})`);
    }
  }
  try {
    return await measure(impls, runs, T, timeMs, options.quick);
  } finally {
    await Promise.all(impls.map((impl) => impl.close()));
  }
}

async function measure(impls: Remote[], runs: { name: string; kind: AttentionKind }[], T: number, timeMs: number, quick: boolean): Promise<ModelBenchRow[]> {
  console.error(`model bench: load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}; each implementation in its own process`);
  const prompt = encode(TEXT.repeat(4)).slice(0, T);
  const wasm = impls.find((r) => r.impl === "wasm" && r.threads === 1);
  const rows: ModelBenchRow[] = [];
  for (const { name, kind } of runs) {
    const shape = `${name} ${kind} T=${T}`;
    const config = preset(name, { attention_kind: kind });
    const cacheBytes = cacheBytesPerToken(config, T);
    for (const impl of impls) await impl.ask({ op: "model", name, kind });
    const rounds = name === "tiny" ? (quick ? 5 : 15) : 3;
    const decodeMs = await decodeRounds(prompt, impls, rounds, quick ? 500 : 1500);
    // small's compute bound: 2 × active parameters per token at the best WASM matmul rate, measured right after.
    const rate = name !== "tiny" && wasm ? await wasm.ask<number>({ op: "rate", n: 512, rounds: 9 }) : 0;
    const active = countParameters(config).active;
    const boundMs = rate > 0 ? (2 * active) / (rate * 1e6) : 0;
    if (boundMs > 0) console.error(`  ${shape}: ${active} active parameters, matmul ${rate.toFixed(1)} GFLOP/s: compute bound ${(1000 / boundMs).toFixed(0)} tok/s`);
    const reference = impls.findIndex((r) => r.impl === "reference"), tfw = impls.findIndex((r) => r.impl === "tfjs-wasm");
    for (const [i, { impl, threads }] of impls.entries()) {
      const prefillMs = await impls[i]!.ask<number>({ op: "prefill", prompt, timeMs });
      const common = { impl, threads, gflops: null, cacheBytesPerToken: cacheBytes };
      rows.push({ op: "model.prefill", shape, medianMs: prefillMs, tokensPerSecond: (T / prefillMs) * 1000, ...common });
      const share = boundMs > 0 ? { computeBoundShare: boundMs / decodeMs[i]! } : {};
      rows.push({ op: "model.decode", shape, medianMs: decodeMs[i]!, tokensPerSecond: 1000 / decodeMs[i]!, ...common, ...share });
      const ratio = impl === "reference" || reference < 0 ? "" : ` (decode ${(decodeMs[reference]! / decodeMs[i]!).toFixed(1)}× the reference${tfw >= 0 ? `, ${(decodeMs[tfw]! / decodeMs[i]!).toFixed(2)}× tfjs-wasm` : ""}${boundMs > 0 ? `, ${((100 * boundMs) / decodeMs[i]!).toFixed(1)} % of the compute bound` : ""})`;
      console.error(`  ${shape} ${impl}×${threads}: prefill ${((T / prefillMs) * 1000).toFixed(0)} tok/s, decode ${(1000 / decodeMs[i]!).toFixed(0)} tok/s${ratio}`);
    }
  }
  console.error(`model bench: load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
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
