// Two threads against one, on a shared machine. `npx tsx bench/threads.ts [--sizes 512,1024,2048] [--seconds 30]
// [--baseline DIR]`:
// - ceiling: the machine's own 2-thread speed-up, with no pool and no sharing: raw workers running the gemm kernel
//   on private L2-resident operands (64×256·256×256), one worker and then two at once; and memory bandwidth, the
//   same with a 64 MiB copy;
// - matmul: square float32 C = A·B through the Kernels interface (copies in and out, as bench/kernels.ts times it),
//   1 and 2 threads (and with --baseline, the wasm/backend.ts of another checkout, e.g. an older tree copied aside),
//   calls alternating in pairs, each pair's speed ratio kept (median [quartiles] printed).
// A window or pair is "quiet" when our threads waited less than 3% of its time on a run queue
// (/proc/self/task/*/schedstat): the figures that say what the code does. On Linux with autogroup scheduling (the
// default) one busy process in another session takes a whole core from a two-thread process, whatever its nice
// value, and the speed-up is then 1.0×: the "all" figures say what the machine gave.

import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import type { Tensor } from "../src/tensor.ts";
import { createBackend, wasmModule } from "../wasm/backend.ts";
import { WebAssemblyApi } from "../wasm/webassembly.ts";
import { queued } from "./run-queue.ts";

const argv = process.argv.slice(2);
const option = (name: string, fallback: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1]! : fallback);
const sizes = option("--sizes", "512,1024,2048").split(",").map(Number);
const seconds = Number(option("--seconds", "30"));
const baseline = argv.includes("--baseline") ? option("--baseline", "") : undefined;

const quantile = (x: number[], p: number) => x.slice().sort((a, b) => a - b)[Math.min(x.length - 1, Math.floor(x.length * p))]!;
const summary = (x: number[]) => (x.length ? `${quantile(x, 0.5).toFixed(2)} [${quantile(x, 0.25).toFixed(2)}, ${quantile(x, 0.75).toFixed(2)}]` : "-");

async function ceiling(): Promise<void> {
  const { module } = await wasmModule(false);
  const memory = new WebAssemblyApi.Memory({ initial: 256, maximum: 65536, shared: true });
  memory.grow(2200);
  const source = `
    const { parentPort, workerData: { module, memory, id } } = require("node:worker_threads");
    const fs = require("node:fs");
    const ex = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error("abort"); } } }).exports;
    const queued = () => Number(fs.readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[1]) / 1e6;
    const base = (1 << 20) + id * (70 << 20), M = 64, N = 256, K = 256;
    const a = base, bp = a + M * K * 4, c = bp + N * K * 4, scratch = c + M * N * 4, big = base + (1 << 20), bytes = 32 << 20;
    new Float32Array(memory.buffer).fill(0.5, a >> 2, (scratch >> 2) + 4096);
    const u8 = new Uint8Array(memory.buffer);
    parentPort.on("message", ([start, kind]) => {
      while (Date.now() < start);
      const q0 = queued(), t0 = performance.now();
      let units = 0;
      while (performance.now() - t0 < 250) {
        if (kind === "gemm") { ex.gemm(M, N, K, a, K, bp, c, N, scratch, 0, 1); units += 2 * M * N * K; }
        else { u8.copyWithin(big + bytes, big, big + bytes); units += 2 * bytes; }
      }
      const ms = performance.now() - t0;
      parentPort.postMessage([units / ms / 1e6, (queued() - q0) / ms]);
    });`;
  const workers = [0, 1].map((id) => new Worker(source, { eval: true, workerData: { module, memory, id } }));
  const run = async (list: Worker[], kind: string) => {
    const start = Date.now() + 5;
    const r = await Promise.all(list.map((w) => new Promise<number[]>((done) => (w.once("message", done), w.postMessage([start, kind])))));
    return { rate: r.reduce((s, x) => s + x[0]!, 0), waited: Math.max(...r.map((x) => x[1]!)) };
  };
  for (const kind of ["gemm", "copy"]) {
    const all: number[] = [], quiet: number[] = [], rates: number[][] = [];
    for (const end = Date.now() + seconds * 300; Date.now() < end; ) {
      const one = await run([workers[0]!], kind), two = await run(workers, kind);
      all.push(two.rate / one.rate);
      if (Math.max(one.waited, two.waited) < 0.03) (quiet.push(two.rate / one.rate), rates.push([one.rate, two.rate]));
    }
    const unit = kind === "gemm" ? "GFLOP/s" : "GB/s read + written";
    const med = (i: number) => (rates.length ? quantile(rates.map((r) => r[i]!), 0.5).toFixed(1) : "-");
    console.log(`ceiling ${kind}: 2 workers / 1, quiet ${quiet.length}/${all.length}: ${summary(quiet)} (${med(0)} → ${med(1)} ${unit}); all: ${summary(all)}`);
  }
  await Promise.all(workers.map((w) => w.terminate()));
}

async function matmul(): Promise<void> {
  const impls: Record<string, (a: Tensor, b: Tensor) => Tensor> = {};
  const disposers: (() => Promise<void>)[] = [];
  const trees: [string, typeof createBackend][] = [["", createBackend]];
  if (baseline) trees.push(["baseline ", (await import(`${baseline}/wasm/backend.ts`)).createBackend]);
  for (const [name, create] of trees) {
    for (const threads of [1, 2]) {
      const backend = await create({ threads, relaxed: false });
      impls[`${name}×${threads}`] = backend.kernels!.matmul;
      disposers.push(backend.dispose);
    }
  }
  const pairs: [string, string][] = [["×1", "×2"]];
  if (baseline) pairs.push(["baseline ×1", "baseline ×2"], ["baseline ×2", "×2"], ["baseline ×1", "×1"]);
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  for (const n of sizes) {
    const a = { shape: [n, n], data: Float32Array.from({ length: n * n }, random) };
    const b = { shape: [n, n], data: Float32Array.from({ length: n * n }, random) };
    const results = pairs.map(() => ({ all: [] as number[], quiet: [] as number[] }));
    for (const f of Object.values(impls)) f(a, b);
    for (let i = 0, end = Date.now() + seconds * 1000; Date.now() < end; i++) {
      const p = i % pairs.length, order = (i / pairs.length) % 2 < 1 ? pairs[p]! : [...pairs[p]!].reverse();
      const ms: Record<string, number> = {};
      const q0 = queued(), t0 = performance.now();
      for (const name of order) {
        const s = performance.now();
        impls[name]!(a, b);
        ms[name] = performance.now() - s;
      }
      const ratio = ms[pairs[p]![0]]! / ms[pairs[p]![1]]!;
      results[p]!.all.push(ratio);
      if (queued() - q0 < 0.03 * (performance.now() - t0)) results[p]!.quiet.push(ratio);
    }
    pairs.forEach(([x, y], p) => {
      const r = results[p]!;
      console.log(`matmul ${n}: speed of ${y} / ${x}, quiet ${r.quiet.length}/${r.all.length}: ${summary(r.quiet)}; all: ${summary(r.all)}`);
    });
  }
  for (const dispose of disposers) await dispose();
}

console.log(`${new Date().toISOString()}, load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
await ceiling();
await matmul();
console.log(`load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
process.exit(0);
