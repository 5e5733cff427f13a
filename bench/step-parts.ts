// What a WASM decode step spends outside its kernels (issue 17 item 1: "the step dominated by kernels").
// `npx tsx bench/step-parts.ts [--preset tiny] [--kinds mla,mha,…] [--seconds 3]`: for each attention kind, decode
// sessions (a 32-token prompt, then 16 single tokens through the cache, 1 thread, BF16-exact weights as the model
// bench uses) on three backends in one process, in alternating rounds:
//   step      the WASM backend as it is;
//   no kernels  the same backend with every arithmetic and copy kernel replaced by handing back a pooled value of the
//             right shape (no product, no copy), and reads answering zeros (the router then sees ties and still picks
//             k experts): what is left is the forward itself, the checked operations, routing, hook points and the
//             pool of values, the JavaScript a step runs around its kernels.
//   JavaScript alone  the same again with the host kernels (src/kernels.ts, what host steps such as NSA's compressed
//             branch compute with) hollowed too: zeros of the right shape.
// Printed: the median µs a token of each (median over rounds of each round's mean), and their difference, the
// kernels with their own host-side glue (weight look-ups, dispatch, the MoE's float64 combine); and the JavaScript
// heap a step of the real backend allocates (the median over sessions that no garbage collection interrupted). A
// kind whose layers have host steps (NSA's block selection and gated sum, DSA's top-k) runs them on zeros in the
// second column: their JavaScript and their host kernels' arithmetic, on zeros; the last column leaves their
// JavaScript alone.

import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import type { Backend } from "../src/backend.ts";
import type { DeviceKernels, Value } from "../src/device/kernels.ts";
import { opsOver } from "../src/device/ops.ts";
import type { Kernels } from "../src/kernels.ts";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { ATTENTION_KINDS, type AttentionKind } from "../src/model/config.ts";
import { forward } from "../src/model/forward.ts";
import { RUNNABLE_PRESETS } from "../src/model/presets.ts";
import type { Model } from "../src/model/weights.ts";
import type { Tensor } from "../src/tensor.ts";
import { createBackend } from "../wasm/backend.ts";
import { FIXED_YOUNG_GENERATION } from "./model.ts";
import { benchModel } from "./model-worker.ts";

// Sessions run with the model bench's fixed young generation (bench/model.ts says why), so that this probe and the
// bench's workers measure the same process set-up. Without the flags, the script runs itself again with them.
if (!FIXED_YOUNG_GENERATION.every((flag) => process.execArgv.includes(flag))) {
  const again = spawnSync(process.execPath, [...FIXED_YOUNG_GENERATION, ...process.execArgv, ...process.argv.slice(1)], { stdio: "inherit" });
  process.exit(again.status ?? 1);
}

const { values } = parseArgs({ options: { preset: { type: "string", default: "tiny" }, kinds: { type: "string" }, seconds: { type: "string", default: "3" } } });
const kinds = (values.kinds ? values.kinds.split(",") : [...ATTENTION_KINDS]) as AttentionKind[];
const seconds = Number(values.seconds);
const refuse = (what: string) => {
  console.error(what);
  process.exit(2);
};
if (!(RUNNABLE_PRESETS as readonly string[]).includes(values.preset!)) refuse(`--preset: expected one of ${RUNNABLE_PRESETS.join(", ")}, got "${values.preset}"`);
for (const kind of kinds) if (!ATTENTION_KINDS.includes(kind)) refuse(`--kinds: expected a list of ${ATTENTION_KINDS.join(", ")}, got "${kind}"`);
if (!(seconds > 0)) refuse(`--seconds: expected a number > 0, got "${values.seconds}"`);

type Any = Value & { shape: readonly number[] };

/** The kernels with nothing computed: every value comes back from `empty` with the shape the real kernel gives. */
function withoutKernels(k: DeviceKernels<Any>): DeviceKernels<Any> {
  const lastBecomes = (x: Any, n: number) => k.empty([...x.shape.slice(0, -1), n]);
  return {
    ...k,
    read: (x) => new Float32Array(x.shape.reduce((a, b) => a * b, 1)),
    embed: (table, ids) => k.empty([ids.length, table.shape[1]!]),
    gatherRows: (x, rows, perPlane) => k.empty(x.shape.length === 3 ? [x.shape[0]!, perPlane ? rows.length / x.shape[0]! : rows.length, x.shape[2]!] : [rows.length, x.shape[1]!]),
    addRows: (x) => k.empty(x.shape),
    splitHeads: (x, H, widths) => widths.map((w) => k.empty([H, x.shape[0]!, w])),
    mergeHeads: (x) => k.empty([x.shape[1]!, x.shape[0]! * x.shape[2]!]),
    concatLast: (parts) => k.empty([Math.max(...parts.map((p) => p.shape[0]!)), parts[0]!.shape[1]!, parts.reduce((s, p) => s + p.shape[2]!, 0)]),
    sliceRows: (x, _start, count) => k.empty([count, x.shape[1]!]),
    reshape: (_x, shape) => k.empty(shape),
    concatRows: (parts) => k.empty([parts.reduce((s, p) => s + p.shape[0]!, 0), parts[0]!.shape[1]!]),
    writeRows: () => {},
    add: (a) => k.empty(a.shape),
    linear: (x, w) => lastBecomes(x, w.shape[0]!),
    gemm: () => {},
    rmsnorm: (x) => k.empty(x.shape),
    layernorm: (x) => k.empty(x.shape),
    rope: (x) => k.empty(x.shape),
    swiglu: (gate) => k.empty(gate.shape),
    softmax: (x) => k.empty(x.shape),
    attention: (_q, _k, _v, a) => k.empty([a.H, a.Tq, a.Dv]),
    attentionProbs: (_q, _k, a) => k.empty([a.H, a.Tq, a.Tk]),
    attendWith: (_p, _v, a) => k.empty([a.H, a.Tq, a.Dv]),
    indexScores: (_q, _keys, _w, a) => k.empty([a.Tq, a.Tk]),
    moe: (x) => k.empty(x.shape),
  };
}

/**
 * The host kernels (src/kernels.ts: what host steps such as bottleneck adapters run on) with nothing computed:
 * zeros of the shape each would give. With the device kernels hollowed too, what is left is JavaScript alone.
 */
function withoutHostKernels(k: Kernels): Kernels {
  const zeros = (shape: readonly number[]): Tensor => ({ shape: [...shape], data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  const lastBecomes = (x: Tensor, n: number) => zeros([...x.shape.slice(0, -1), n]);
  return {
    name: `${k.name} without arithmetic`,
    matmul: (a, b) => lastBecomes(a, b.shape[b.shape.length - 1]!),
    bmm: (a, b) => lastBecomes(a, b.shape[b.shape.length - 1]!),
    linear: (x, w) => lastBecomes(x, w.shape[0]!),
    softmax: (x) => zeros(x.shape),
    rmsnorm: (x) => zeros(x.shape),
    rope: (x) => zeros(x.shape),
    silu: (x) => zeros(x.shape),
    swiglu: (gate) => zeros(gate.shape),
    attention: (q, _k, v) => lastBecomes(q, v.shape[v.shape.length - 1]!),
    moe: (x) => zeros(x.shape),
    quantLinear: (x, w) => lastBecomes(x, w.shape[0]!),
  };
}

const PROMPT = Array.from({ length: 32 }, (_, i) => (i * 7) % 200);
const STEPS = 16;

/** Bytes of JavaScript heap the real backend's decode steps allocated, one entry per session that no collection
 *  interrupted (the heap only grew), so that their median is what a step allocates. */
const allocated: number[] = [];

/** One session: the prompt, then STEPS single tokens; the mean ms of those steps. */
function session(model: Model, backend: Backend): number {
  const cache = createCache(model.config, { backend, capacity: PROMPT.length + STEPS });
  try {
    forward(model, PROMPT, { backend, cache });
    const heap = process.memoryUsage().heapUsed;
    const started = performance.now();
    for (let s = 0; s < STEPS; s++) forward(model, [PROMPT[s]!], { backend, cache });
    const ms = (performance.now() - started) / STEPS;
    const grown = process.memoryUsage().heapUsed - heap;
    if (backend === wasm && grown > 0) allocated.push(grown / STEPS);
    return ms;
  } finally {
    releaseCache(cache);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const wasm = await createBackend({ threads: 1, relaxed: false });
const hollowDevice = withoutKernels(wasm.ops.kernels as DeviceKernels<Any>);
const hollow = { ...wasm, ops: opsOver(hollowDevice, wasm.ops.hostKernels) } as unknown as Backend;
const bareJs = { ...wasm, ops: opsOver(hollowDevice, withoutHostKernels(wasm.ops.hostKernels)) } as unknown as Backend;
console.log(`${values.preset} decode on ${wasm.description}; µs a token, median of rounds`);
console.log("| kind | step | no kernels | kernels (the difference) | outside the kernels | of which host kernels | JavaScript alone | JS heap a step |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const kind of kinds) {
  const model = benchModel(values.preset!, kind);
  const warm = performance.now();
  while (performance.now() - warm < seconds * 500) (session(model, wasm), session(model, hollow), session(model, bareJs));
  const [full, bare, js] = [[] as number[], [] as number[], [] as number[]];
  const started = performance.now();
  while (performance.now() - started < seconds * 1000 || full.length < 9) {
    full.push(session(model, wasm));
    bare.push(session(model, hollow));
    js.push(session(model, bareJs));
  }
  const [f, b, j] = [median(full) * 1000, median(bare) * 1000, median(js) * 1000];
  const share = (x: number) => `${((100 * x) / f).toFixed(0)} %`;
  const heap = allocated.length ? `${(median(allocated) / 1024).toFixed(0)} KB` : "–";
  allocated.length = 0;
  console.log(`| ${kind} | ${f.toFixed(0)} | ${b.toFixed(0)} | ${(f - b).toFixed(0)} | ${share(b)} | ${(b - j).toFixed(0)} | ${j.toFixed(0)} (${share(j)}) | ${heap} |`);
}
await wasm.dispose();
