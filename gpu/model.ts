// The tiny model's forward pass kept on the GPU: src/model/resident.ts (the one resident forward, shared with
// WASM) over WebGPU's resident operations below. Weights are uploaded once (cached by their Float32Array),
// activations live in pooled GPU buffers from the embedding to the logits, and the small index lists the forward
// hands over (token ids, rows, residual slots) are uploaded into pooled buffers and returned at once: a buffer may
// go back to the pool as soon as the last dispatch that reads it has been submitted (gpu/context.ts).

import {
  createResidentCache, forwardResident, releaseResidentCache,
  type ResidentCache, type ResidentForwardOptions, type ResidentForwardResult,
} from "../src/model/resident.ts";
import { type ResidentOps } from "../src/model/resident-ops.ts";
import { type Model } from "../src/model/weights.ts";
import { numel } from "../src/tensor.ts";
import { type GpuContext, type GpuTensor } from "./context.ts";
import { attention } from "./kernels/attention.ts";
import { add, addRows, copyBlocks, gatherRows, rope, ropeTable, swiglu } from "./kernels/elementwise.ts";
import { gemmInto, linear } from "./kernels/matmul.ts";
import { moe } from "./kernels/moe.ts";
import { rmsnorm, softmax } from "./kernels/rows.ts";

export type DeviceForwardOptions = ResidentForwardOptions<GpuTensor>;
export type DeviceForwardResult = ResidentForwardResult;
/** The attention caches in GPU buffers (src/model/resident.ts ResidentCache). */
export type DeviceCache = ResidentCache<GpuTensor>;

/** WebGPU's resident operations over `ctx`'s buffer pool. */
export function gpuOps(ctx: GpuContext): ResidentOps<GpuTensor> {
  let ops = opsOf.get(ctx);
  if (ops) return ops;
  /** Runs `body` with `data` uploaded into a pooled buffer, handed back once body has dispatched its kernels. */
  const withUpload = <R>(data: Uint32Array | Int32Array | Float32Array, body: (buffer: GPUBuffer) => R): R => {
    const buffer = ctx.upload(data);
    try {
      return body(buffer);
    } finally {
      ctx.release(buffer);
    }
  };
  ops = {
    name: "webgpu",
    weight: (t) => ({ shape: t.shape, buffer: ctx.weight(t.data) }),
    empty: (shape) => ctx.empty(shape),
    view: (x, shape) => ({ shape, buffer: x.buffer }),
    release: (...xs) => ctx.release(...xs.map((x) => x.buffer)),
    free: (x) => ctx.release(x.buffer),
    read: (x) => ctx.read(x.buffer, numel(x.shape)),
    embed: (table, ids) => withUpload(ids, (i) => gatherRows(ctx, ctx.weight(table.data), table.shape[1]!, i, ids.length)),
    gatherRows: (x, rows) => withUpload(Uint32Array.from(rows), (i) => gatherRows(ctx, x.buffer, x.shape[1]!, i, rows.length)),
    addRows: (x, update, slots) => withUpload(slots, (s) => addRows(ctx, x, update, s)),
    add: (a, b) => add(ctx, a, b),
    linear: (x, w) => linear(ctx, x, w),
    gemm: (a, b, c, args) => gemmInto(ctx, a.buffer, b.buffer, c.buffer, args),
    rmsnorm: (x, w, eps) => rmsnorm(ctx, x, w, eps),
    ropeTable: (positions, freqs) => ({ shape: [positions.length, 2 * freqs.length], buffer: ctx.upload(ropeTable(positions, freqs)) }),
    rope: (x, table, T) => rope(ctx, x, table.buffer, T),
    swiglu: (gate, up) => swiglu(ctx, gate, up),
    softmax: (x) => softmax(ctx, x),
    copyBlocks: (src, dst, b) => copyBlocks(ctx, src.buffer, dst.buffer, b),
    attention(q, k, v, { H, Hkv, Tq, Tk, Dh, Dv, scale, offset, logGammas, kvRows }) {
      const run = (gammas?: GPUBuffer) =>
        attention(ctx, q, k, v, { B: 1, H, Hkv, Tq, Tk, Dh, Dv, scale, mask: { causal: true, offset }, logGammas: gammas, kvRows });
      return logGammas ? withUpload(logGammas, run) : run();
    },
    moe: (x, routing, e) => moe(ctx, x, routing, { gate: e.gate.buffer, up: e.up.buffer, down: e.down.buffer, E: e.E, F: e.F, D: e.D }),
  };
  opsOf.set(ctx, ops);
  return ops;
}

const opsOf = new WeakMap<GpuContext, ResidentOps<GpuTensor>>();

/** A cache for up to `capacity` positions (default max_position_embeddings); free it with releaseDeviceCache. */
export const createDeviceCache = (ctx: GpuContext, model: Model, capacity?: number): DeviceCache => createResidentCache(gpuOps(ctx), model, capacity);

export const releaseDeviceCache = (ctx: GpuContext, cache: DeviceCache): void => releaseResidentCache(gpuOps(ctx), cache);

/** One sequence's new tokens → their next-token logits, on the GPU (through `cache` when given). */
export const forwardOnDevice = (ctx: GpuContext, model: Model, tokens: ArrayLike<number>, options?: DeviceForwardOptions): Promise<DeviceForwardResult> =>
  forwardResident(gpuOps(ctx), model, tokens, options);
