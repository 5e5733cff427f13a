// What a fresh result array costs: `npx tsx bench/fresh-pages.ts [--n 1024] [--calls 16]`. Each of `calls` rounds
// times one n × n float32 `kernels.matmul` on WASM (1 thread; its result is a new array) and then, alone, a new
// Float32Array of n² filled by `set`. When the allocator hands back pages this process already touched, the fill is
// a copy; when it hands out new ones, every 4 KiB page faults, and both times jump together (bench/README.md,
// "Matmul at large n"). Prints "call ms / fill ms" per round.

import { parseArgs } from "node:util";
import { createBackend } from "../wasm/backend.ts";

const { values } = parseArgs({ options: { n: { type: "string", default: "1024" }, calls: { type: "string", default: "16" } } });
const n = Number(values.n), calls = Number(values.calls);
for (const [name, v] of [["--n", n], ["--calls", calls]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: expected an integer ≥ 1, got ${JSON.stringify(String(v))}`);
}
const a = { shape: [n, n], data: Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5) };
const wasm = await createBackend({ threads: 1, relaxed: false });
const source = new Float32Array(n * n).fill(1);
const rounds: string[] = [];
for (let i = 0; i < calls; i++) {
  let started = performance.now();
  wasm.kernels!.matmul(a, a);
  const call = performance.now() - started;
  started = performance.now();
  new Float32Array(n * n).set(source);
  rounds.push(`${call.toFixed(1)}/${(performance.now() - started).toFixed(1)}`);
}
console.log(`n = ${n}, WASM 1 thread, per round: matmul call ms / fresh ${((n * n * 4) / 2 ** 20).toFixed(1)} MiB array filled ms`);
console.log(rounds.join(" "));
await wasm.dispose();
