// One MoE call's experts split over two threads against one thread (wasm/kernels/moe.ts, issue 17 item 3).
// `npx tsx bench/experts.ts [--seconds 10] [--bf16]`: for each shape (tiny's and small's decode, one token, and
// larger ones), kernels.moe on three backends: 1 thread; 2 threads with expertFlops Infinity (today's path: the
// experts one after another on the calling thread, each product below parallelFlops stays there); 2 threads with
// expertFlops 0 (the experts split over the pool, whole experts per thread). Rounds interleave the three in a
// rotating order, each timing a batch of calls (about 2 ms); printed: the median µs per call, and the median
// [quartiles] over rounds of 1 thread's time ÷ the split's (> 1: the split wins). A round is "quiet" when our
// threads waited less than 3 % of it on a run queue (/proc/self/task/*/schedstat), as in bench/threads.ts.
// Every token's k experts are distinct and kept, as a router gives them; weights are random float32 (with --bf16
// cut to BF16, so the backends keep BF16 panels).

import { readFileSync } from "node:fs";
import type { ExpertWeights, Routing } from "../src/moe/experts.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";
import { createBackend } from "../wasm/backend.ts";
import { queued } from "./run-queue.ts";

const argv = process.argv.slice(2);
const seconds = Number(argv.includes("--seconds") ? argv[argv.indexOf("--seconds") + 1] : "10");
const asBf16 = argv.includes("--bf16");

const SHAPES = [
  { name: "tiny decode", N: 1, D: 128, F: 64, E: 16, k: 4 },
  { name: "small decode", N: 1, D: 256, F: 128, E: 32, k: 4 },
  { name: "small, 4 tokens", N: 4, D: 256, F: 128, E: 32, k: 4 },
  { name: "D 512, F 256, top-8 of 64", N: 1, D: 512, F: 256, E: 64, k: 8 },
  { name: "D 1024, F 512, top-8 of 64", N: 1, D: 1024, F: 512, E: 64, k: 8 },
];

const loadAverage = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const quantile = (x: number[], p: number) => x.slice().sort((a, b) => a - b)[Math.min(x.length - 1, Math.floor(x.length * p))]!;
const summary = (x: number[]) => (x.length ? `${quantile(x, 0.5).toFixed(2)} [${quantile(x, 0.25).toFixed(2)}, ${quantile(x, 0.75).toFixed(2)}]` : "-");

function cut(t: Tensor): Tensor {
  if (!asBf16) return t;
  const words = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
  for (let i = 0; i < words.length; i++) words[i]! &= 0xffff0000;
  return t;
}

/** k distinct experts per token, every assignment kept, weights summing to 1. */
function routingFor(rng: Random, N: number, E: number, k: number): Routing {
  const experts = new Int32Array(N * k);
  for (let t = 0; t < N; t++) {
    const chosen = new Set<number>();
    while (chosen.size < k) chosen.add(rng.int(E));
    experts.set([...chosen], t * k);
  }
  return { k, experts, weights: new Float32Array(N * k).fill(1 / k), kept: new Uint8Array(N * k).fill(1) };
}

const backends = {
  "1 thread": await createBackend({ threads: 1, relaxed: false }),
  "2 threads, not split": await createBackend({ threads: 2, relaxed: false, expertFlops: Infinity }),
  "2 threads, split": await createBackend({ threads: 2, relaxed: false, expertFlops: 0 }),
};
const names = Object.keys(backends) as (keyof typeof backends)[];

console.log(`${new Date().toISOString()}, load average ${loadAverage()}, ${asBf16 ? "BF16" : "float32"} weights, ${seconds} s a shape`);
for (const { name, N, D, F, E, k } of SHAPES) {
  const rng = new Random(7);
  const x = randBounded(rng, [N, D]);
  const experts: ExpertWeights = { gate: cut(randBounded(rng, [E, F, D])), up: cut(randBounded(rng, [E, F, D])), down: cut(randBounded(rng, [E, D, F])) };
  const routing = routingFor(rng, N, E, k);
  const calls = names.map((n) => () => backends[n].kernels!.moe(x, routing, experts));
  // Warm: every expert's weights packed and resident, the code compiled; then a batch of about 2 ms.
  for (let i = 0; i < 20; i++) for (const call of calls) call();
  let t0 = performance.now();
  for (let i = 0; i < 20; i++) calls[0]!();
  const batch = Math.max(1, Math.round(2 / ((performance.now() - t0) / 20)));
  const us: number[][] = names.map(() => []), ratio: number[] = [], quiet: number[] = [];
  for (let round = 0, end = Date.now() + seconds * 1000; Date.now() < end; round++) {
    const q0 = queued();
    t0 = performance.now();
    const times: number[] = [];
    for (let j = 0; j < names.length; j++) {
      const i = (j + round) % names.length, call = calls[i]!;
      const s = performance.now();
      for (let r = 0; r < batch; r++) call();
      times[i] = ((performance.now() - s) * 1000) / batch;
    }
    times.forEach((t, i) => us[i]!.push(t));
    ratio.push(times[0]! / times[2]!);
    if (queued() - q0 < 0.03 * (performance.now() - t0)) quiet.push(times[0]! / times[2]!);
  }
  const flops = 6 * N * k * D * F;
  const cells = names.map((n, i) => `${n} ${quantile(us[i]!, 0.5).toFixed(1)} µs`).join(", ");
  console.log(`${name} (${(flops / 1e6).toFixed(2)} M flops, ${ratio.length} rounds of ${batch} calls): ${cells}; 1 thread / split: ${summary(ratio)}, quiet ${quiet.length}: ${summary(quiet)}`);
}
console.log(`load average ${loadAverage()}`);
for (const b of Object.values(backends)) await b.dispose();
process.exit(0);
