// The WebGPU backend. The model runs on it through the one forward (src/model/forward.ts) over `ops`, the checked
// operations over gpu/device-kernels.ts: values stay in GPU buffers, and the forward runs under the asynchronous
// driver (forwardAsync, generateAsync, runBatchedAsync) since its reads answer with promises.
// `asyncKernels` are every Kernels operation as an asynchronous kernel over host tensors, for kernel-level code:
// each call uploads its activations into pooled buffers, takes weights (linear's W, rmsnorm's weight, the stacked
// experts) from the device-resident cache keyed by their Float32Array, runs, reads back the one result and returns
// the buffers to the pool. Weights are therefore treated as immutable once seen. Component code needs synchronous
// kernels, so this backend has no `kernels`: the golden component cases run in a worker over these kernels
// (runSynchronously: gpu/sync-bridge.ts in Node, web/platform/sync-bridge.ts in a browser), started on first use.
// The model never uses that bridge.

import { attentionSizes } from "../src/attention/attention.ts";
import { ropeSizes } from "../src/rope.ts";
import { NotSupportedError, type AsyncKernels, type Backend, type BackendOptions, type SyncTask } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { argError, checkNumber } from "../src/errors.ts";
import type { FusedAttentionOptions } from "../src/kernels.ts";
import { specVisible } from "../src/masks.ts";
import type { ExpertWeights, Routing } from "../src/moe/experts.ts";
import { expectShape, numel, shapeString, type Tensor } from "../src/tensor.ts";
import { createContext, type GpuContext, type GpuTensor } from "./context.ts";
import type { AdapterSummary, GpuDevice } from "./adapter.ts";
import type { DeviceOptions } from "./device.ts";
import { attention } from "./kernels/attention.ts";
import { rope, rotaryTables, silu, swiglu } from "./kernels/elementwise.ts";
import { bmm, linear, matmul } from "./kernels/matmul.ts";
import { moe } from "./kernels/moe.ts";
import { quantLinear } from "./kernels/quant.ts";
import { gpuDeviceKernels } from "./device-kernels.ts";
import { packFlags, rmsnorm, softmax } from "./kernels/rows.ts";

export interface WebGpuBackend extends Backend {
  readonly adapter: AdapterSummary;
  /** The buffer pool and pipeline cache the kernels share (the forward's values live in it too). */
  readonly context: GpuContext;
  /** Synchronous component code in a worker over these kernels (gpu/sync-bridge.ts): golden component cases only. */
  runSynchronously: NonNullable<Backend["runSynchronously"]>;
}

export async function createBackend(options: BackendOptions & DeviceOptions = {}): Promise<WebGpuBackend> {
  const { openDevice } = await nodeOnly<typeof import("./device.ts")>("./device.ts");
  return backendOnDevice(await openDevice(options), options);
}

/** A bridge that runs synchronous component code over asynchronous kernels (gpu/sync-bridge.ts in Node). */
export interface Bridge {
  run<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R>;
  close(): Promise<void>;
}

/**
 * The backend over an open device. `openBridge` starts the synchronous bridge on first use: Node's worker thread
 * by default; a browser passes its own (web/platform/sync-bridge.ts).
 */
export function backendOnDevice(gpu: GpuDevice, options: { check?: boolean; bf16Weights?: boolean } = {}, openBridge: (kernels: AsyncKernels) => Promise<Bridge> = openNodeBridge): WebGpuBackend {
  const ctx = createContext(gpu.device, { poison: options.check, bf16Weights: options.bf16Weights });
  const adapter = gpu.adapter;
  const kind = adapter.software ? "software Vulkan on the CPU" : adapter.backendType;
  const asyncKernels = gpuKernels(ctx);
  let bridge: Promise<Bridge> | undefined; // started on use: it costs a thread
  return {
    name: "webgpu",
    description: (adapter.backendType === "browser" ? `WebGPU (browser): ${adapter.name}${adapter.software ? " (software, on the CPU)" : ""}` : `WebGPU (Dawn): ${adapter.name} (${kind})`) +
      (ctx.bf16Weights ? ", BF16 weights where exact" : ", float32 weights"),
    adapter,
    context: ctx,
    ops: opsOver(gpuDeviceKernels(ctx)),
    asyncKernels,
    async runSynchronously(task, args, onEvent) {
      bridge ??= openBridge(asyncKernels);
      return (await bridge).run(task, args, onEvent);
    },
    async dispose() {
      await bridge?.then((b) => b.close(), () => {});
      ctx.destroy();
      gpu.close();
    },
  };
}

async function openNodeBridge(kernels: AsyncKernels): Promise<Bridge> {
  if (!globalThis.process?.versions?.node) throw new NotSupportedError("webgpu: synchronous kernels need Node's worker threads");
  return (await nodeOnly<typeof import("./sync-bridge.ts")>("./sync-bridge.ts")).SyncBridge.open(kernels);
}

/**
 * A module of Node's alone (Dawn, node:fs, worker threads), loaded on use. The specifier is a variable so that a
 * bundler building the browser's pages (web/vite.config.ts) leaves it out: a browser opens its own device
 * (web/platform/webgpu.ts) and bridge (web/platform/sync-bridge.ts).
 */
function nodeOnly<T>(path: string): Promise<T> {
  return import(/* @vite-ignore */ path) as Promise<T>;
}

/** Uploads `inputs`, runs `body`, reads its result back, and returns every activation buffer to the pool. */
async function roundTrip(ctx: GpuContext, inputs: Tensor[], body: (t: GpuTensor[]) => GpuTensor): Promise<Tensor> {
  const onDevice = inputs.map((t) => ({ shape: t.shape, buffer: ctx.upload(t.data) }));
  let out: GpuTensor | undefined;
  try {
    out = body(onDevice);
    return { shape: [...out.shape], data: await ctx.read(out.buffer, numel(out.shape)) };
  } finally {
    ctx.release(...onDevice.map((t) => t.buffer), ...(out ? [out.buffer] : []));
  }
}

const resident = (ctx: GpuContext, t: Tensor): GpuTensor => ({ shape: t.shape, buffer: ctx.weight(t.data) });

export function gpuKernels(ctx: GpuContext): AsyncKernels {
  return {
    name: "webgpu",
    matmul(a, b) {
      if (a.shape.length < 2) throw argError("a", "shape [..., M, K]", shapeString(a.shape));
      expectShape("b", b, ["K", "N"], { K: a.shape[a.shape.length - 1]! });
      return roundTrip(ctx, [a, b], ([x, y]) => matmul(ctx, x!, y!));
    },
    bmm(a, b) {
      if (a.shape.length < 3) throw argError("a", "shape [batch..., M, K]", shapeString(a.shape));
      const lead = a.shape.slice(0, -2);
      const names = lead.map((_, i) => `b${i}`);
      const known = { ...Object.fromEntries(lead.map((d, i) => [`b${i}`, d])), K: a.shape[a.shape.length - 1]! };
      expectShape("b", b, [...names, "K", "N"], known);
      return roundTrip(ctx, [a, b], ([x, y]) => bmm(ctx, x!, y!));
    },
    linear(x, weight) {
      if (x.shape.length < 1) throw argError("x", "shape [..., in]", shapeString(x.shape));
      expectShape("weight", weight, ["out", "in"], { in: x.shape[x.shape.length - 1]! });
      return roundTrip(ctx, [x], ([t]) => linear(ctx, t!, resident(ctx, weight)));
    },
    async softmax(x, visible) {
      if (visible && visible.length !== x.data.length) throw argError("visible", `${x.data.length} flags`, visible.length);
      const mask = visible ? ctx.upload(packFlags(visible)) : undefined;
      try {
        return await roundTrip(ctx, [x], ([t]) => softmax(ctx, t!, mask));
      } finally {
        if (mask) ctx.release(mask);
      }
    },
    rmsnorm(x, weight, eps) {
      expectShape("weight", weight, ["D"], { D: x.shape[x.shape.length - 1]! });
      checkNumber("eps", eps, 0, 1);
      return roundTrip(ctx, [x], ([t]) => rmsnorm(ctx, t!, resident(ctx, weight), eps));
    },
    // interleaved: src/rope.ts applyRope's layout flag (the reference's kernel takes it too); the bridge forwards it.
    async rope(x, positions, freqs, interleaved: boolean = true) {
      const { T } = ropeSizes(x, positions, freqs);
      if (typeof interleaved !== "boolean") throw argError("interleaved", "true or false", interleaved);
      const table = ctx.upload(rotaryTables(positions, freqs));
      try {
        return await roundTrip(ctx, [x], ([t]) => rope(ctx, t!, table, T, interleaved));
      } finally {
        ctx.release(table);
      }
    },
    silu: (x) => roundTrip(ctx, [x], ([t]) => silu(ctx, t!)),
    swiglu(gate, up) {
      const known = Object.fromEntries(gate.shape.map((d, i) => [`d${i}`, d]));
      expectShape("up", up, gate.shape.map((_, i) => `d${i}`), known);
      return roundTrip(ctx, [gate, up], ([g, u]) => swiglu(ctx, g!, u!));
    },
    quantLinear(x, weight, options = {}) {
      const inDim = weight.shape[1];
      if (x.shape[x.shape.length - 1] !== inDim) throw argError("x", `shape [..., ${inDim}]`, shapeString(x.shape));
      return roundTrip(ctx, [x], ([t]) => quantLinear(ctx, t!, weight, options.activations ?? false));
    },
    attention: (q, k, v, options) => fusedAttention(ctx, q, k, v, options),
    moe: (x, routing, experts) => mixture(ctx, x, routing, experts),
  };
}

async function fusedAttention(ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, options: FusedAttentionOptions = {}) {
  const { B, H, Hkv, Tq, Tk, Dh, Dv, scale } = attentionSizes(q, k, v, options.scale);
  const { mask, logGammas } = options;
  if (mask) specVisible(mask, Tq, Tk); // validates offset, window and segment
  if (mask?.lengths) {
    if (mask.lengths.length !== B) throw argError("mask.lengths", `${B} lengths`, mask.lengths.length);
    mask.lengths.forEach((l, b) => {
      if (!Number.isInteger(l) || l < 0 || l > Tk) throw argError(`mask.lengths[${b}]`, `an integer in [0, ${Tk}]`, l);
    });
  }
  if (logGammas && logGammas.length !== H) throw argError("logGammas", `${H} values (one per query head)`, logGammas.length);
  const gammas = logGammas ? ctx.upload(Float32Array.from(logGammas)) : undefined;
  try {
    return await roundTrip(ctx, [q, k, v], ([qd, kd, vd]) =>
      attention(ctx, qd!, kd!, vd!, { B, H, Hkv, Tq, Tk, Dh, Dv, scale, mask, logGammas: gammas }),
    );
  } finally {
    if (gammas) ctx.release(gammas);
  }
}

function mixture(ctx: GpuContext, x: Tensor, routing: Routing, experts: ExpertWeights) {
  const { D } = expectShape("x", x, ["N", "D"]);
  const { E, F } = expectShape("experts.gate", experts.gate, ["E", "F", "D"], { D });
  expectShape("experts.up", experts.up, ["E", "F", "D"], { E, F, D });
  expectShape("experts.down", experts.down, ["E", "D", "F"], { E, F, D });
  const device = {
    gate: ctx.weight(experts.gate.data),
    up: ctx.weight(experts.up.data),
    down: ctx.weight(experts.down.data),
    E, F, D,
  };
  return roundTrip(ctx, [x], ([t]) => moe(ctx, t!, routing, device));
}
