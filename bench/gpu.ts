// `npx tsx bench/gpu.ts [--quick] [--sizes 1024,2048] [--attention 512,1024] [--filter REGEX] [--json FILE]`:
// the WebGPU kernels timed on the device. Inputs are uploaded once; each window submits a batch of dispatches and
// waits for the queue to drain, so a figure is kernel time, not upload or read-back (the `npm run bench --webgpu`
// rows time the asyncKernels round trip instead). Rows match bench/kernels.ts: { op, shape, impl: "webgpu",
// threads, medianMs, gflops } plus the adapter's name. On lavapipe (a CPU rasteriser) they are CPU figures: the
// table says so. bench/gpu-nvidia.sh runs this on an NVIDIA GPU through Dawn's Vulkan backend.

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createBackend, type WebGpuBackend } from "../gpu/backend.ts";
import type { GpuContext, GpuTensor } from "../gpu/context.ts";
import { attention } from "../gpu/kernels/attention.ts";
import { linear, matmul } from "../gpu/kernels/matmul.ts";
import { rmsnorm, softmax } from "../gpu/kernels/rows.ts";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { forwardAsync } from "../src/model/forward.ts";
import { preset } from "../src/model/presets.ts";
import { initModel } from "../src/model/weights.ts";
import type { BenchRow } from "./kernels.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    sizes: { type: "string" },
    attention: { type: "string" },
    filter: { type: "string" },
    json: { type: "string" },
    time: { type: "string" },
    backend: { type: "string" },
  },
});

const list = (s: string | undefined, fallback: number[]) => (s ? s.split(",").map(Number) : fallback);
const sizes = list(values.sizes, values.quick ? [64, 256, 512] : [256, 512, 1024, 2048]);
const lengths = list(values.attention, values.quick ? [256] : [512, 1024]);
const windowMs = Number(values.time ?? (values.quick ? 100 : 300));
const filter = values.filter ? new RegExp(values.filter) : undefined;

interface GpuCase {
  op: string;
  shape: string;
  flops: number | null;
  /** Dispatches the kernel once and returns the output to free. */
  run(): GpuTensor;
}

/** Cheap pseudo-random values in [-1, 1): an 8192² matrix must not take minutes to fill. */
function values01(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 2 ** 31) - 1;
  }
  return out;
}

function cases(ctx: GpuContext): GpuCase[] {
  let seed = 1;
  const put = (shape: number[]): GpuTensor => ({ shape, buffer: ctx.upload(values01(shape.reduce((a, b) => a * b, 1), seed++)) });
  const all: GpuCase[] = [];
  for (const n of sizes) {
    const [a, b] = [put([n, n]), put([n, n])];
    all.push({ op: "matmul", shape: `${n}x${n}x${n}`, flops: 2 * n ** 3, run: () => matmul(ctx, a, b) });
  }
  for (const [M, K, N] of [[1, 2048, 2048], [16, 1024, 1024]] as const) {
    const [x, w] = [put([M, K]), put([N, K])];
    all.push({ op: "linear", shape: `${M}x${K}x${N}`, flops: 2 * M * K * N, run: () => linear(ctx, x, w) });
  }
  for (const T of lengths) {
    const [H, D] = [values.quick ? 4 : 8, 64];
    const [q, k, v] = [put([1, H, T, D]), put([1, H, T, D]), put([1, H, T, D])];
    const pairs = (T * (T + 1)) / 2;
    const args = { B: 1, H, Hkv: H, Tq: T, Tk: T, Dh: D, Dv: D, scale: 1 / Math.sqrt(D), mask: { causal: true } };
    all.push({ op: "attention", shape: `H${H} T${T} D${D} causal`, flops: 4 * H * pairs * D, run: () => attention(ctx, q, k, v, args) });
  }
  const x = put([512, 512]);
  all.push({ op: "softmax", shape: "512x512", flops: null, run: () => softmax(ctx, x) });
  const [y, w] = [put([512, 2048]), put([2048])];
  all.push({ op: "rmsnorm", shape: "512x2048", flops: null, run: () => rmsnorm(ctx, y, w, 1e-6) });
  return all.filter((c) => !filter || filter.test(`${c.op} ${c.shape}`));
}

/** Median per-dispatch time over 5 windows; each window's batch is sized from a first timed dispatch. */
async function time(ctx: GpuContext, c: GpuCase): Promise<number> {
  const drain = () => ctx.device.queue.onSubmittedWorkDone();
  const once = async (count: number) => {
    const started = performance.now();
    for (let i = 0; i < count; i++) ctx.release(c.run().buffer);
    await drain();
    return (performance.now() - started) / count;
  };
  await once(1); // compiles the pipeline
  const first = await once(1);
  const batch = Math.max(1, Math.min(1000, Math.round(windowMs / Math.max(first, 1e-3))));
  const windows: number[] = [];
  for (let i = 0; i < 5; i++) windows.push(await once(batch));
  windows.sort((a, b) => a - b);
  return windows[2]!;
}

/** Whole-model rows (as bench/model.ts): the tiny preset's prefill of T tokens and one decode step through a cache
 * on the device (the one forward under the asynchronous driver), logits read back each time; tokens/s alongside
 * the median. */
async function modelRows(backend: WebGpuBackend, adapter: string) {
  const T = values.quick ? 16 : 32;
  const model = initModel(preset("tiny"));
  const prompt = Array.from({ length: T }, (_, t) => 32 + ((t * 7) % 90));
  const median = async (run: () => Promise<unknown>) => {
    await run(); // compiles the pipelines
    const times: number[] = [];
    for (let i = 0; i < (values.quick ? 5 : 11); i++) {
      const started = performance.now();
      await run();
      times.push(performance.now() - started);
    }
    return times.sort((a, b) => a - b)[times.length >> 1]!;
  };
  const prefill = await median(() => forwardAsync(model, prompt, { backend }));
  const cache = createCache(model.config, { backend, capacity: T + 1 });
  await forwardAsync(model, prompt, { backend, cache });
  const decode = await median(() => {
    cache.length = T; // the same step each time: position T's rows are overwritten
    return forwardAsync(model, [65], { backend, cache });
  });
  releaseCache(cache);
  const row = (op: string, ms: number, tokens: number) =>
    ({ op, shape: `tiny mla T=${T}`, impl: "webgpu" as const, threads: 1, medianMs: ms, gflops: null, tokensPerSecond: (tokens * 1000) / ms, adapter });
  return [row("model.prefill", prefill, T), row("model.decode", decode, 1)];
}

const backend = await createBackend({ dawnBackend: values.backend });
const ctx = backend.context;
const adapter = backend.adapter;
const label = `${adapter.name} (${adapter.backendType}${adapter.software ? ", software: these are CPU figures" : ""})`;
console.log(`adapter: ${label}`);
const rows: (BenchRow & { adapter: string; tokensPerSecond?: number })[] = [];
for (const c of cases(ctx)) {
  const medianMs = await time(ctx, c);
  const row = { op: c.op, shape: c.shape, impl: "webgpu" as const, threads: 1, medianMs, gflops: c.flops === null ? null : c.flops / medianMs / 1e6, adapter: adapter.name };
  rows.push(row);
  console.error(`  ${row.op} ${row.shape}: ${medianMs.toFixed(3)} ms${row.gflops === null ? "" : `, ${row.gflops.toFixed(1)} GFLOP/s`}`);
}
if (!filter || filter.test("model")) {
  for (const row of await modelRows(backend, adapter.name)) {
    rows.push(row);
    console.error(`  ${row.op} ${row.shape}: ${row.medianMs.toFixed(3)} ms, ${row.tokensPerSecond.toFixed(1)} tokens/s`);
  }
}
const rate = (r: (typeof rows)[number]) =>
  r.gflops !== null ? `${r.gflops.toFixed(1)} GFLOP/s` : "tokensPerSecond" in r ? `${(r.tokensPerSecond as number).toFixed(1)} tokens/s` : "";
console.log(["| op | shape | median ms | rate |", "|---|---|---|---|",
  ...rows.map((r) => `| ${r.op} | ${r.shape} | ${r.medianMs.toFixed(3)} | ${rate(r)} |`)].join("\n"));
if (values.json) writeFileSync(values.json, `${JSON.stringify(rows, null, 2)}\n`);
await backend.dispose();
