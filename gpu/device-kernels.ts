// WebGPU's kernels for the one forward (src/device/kernels.ts): values are tensors in GPU buffers ({ shape, buffer },
// float32), so the whole model runs on the device from the embedding gather to the logits, and only what the forward
// reads (router logits, early exit's probabilities, hooks, the logits) comes back, asynchronously: the forward runs
// under src/device/drive.ts's runAsync here (forwardAsync, generateAsync, runBatchedAsync).
// Weights are uploaded once (cached by their Float32Array, gpu/context.ts), those the matrix products read as BF16
// pairs where every value is exactly a BF16 (spec/backends.md, "BF16 weights"); activations live in pooled buffers. The
// small host lists a kernel takes (token ids, rows, residual slots, the rotary table, decay gammas) are uploaded
// into pooled buffers and handed back at once: a buffer may go back to the pool as soon as the last dispatch that
// reads it has been submitted (gpu/context.ts). Quantised weights run through quantLinear (gpu/kernels/quant.ts): the
// dequantised weight resident once per QuantWeight, the activations (int8 per row, e4m3 per tile) fake-quantised on
// the device exactly as the reference quantises them, then the linear kernel.

import type { DeviceKernels } from "../src/device/kernels.ts";
import { copyLayout } from "../src/device/layout.ts";
import { numel } from "../src/tensor.ts";
import type { GpuContext, GpuTensor } from "./context.ts";
import { attention } from "./kernels/attention.ts";
import { indexScores } from "./kernels/index-scores.ts";
import { attendWith, attentionProbs } from "./kernels/probs.ts";
import { add, addRows, copyBlocks, gatherPlanes, gatherRows, rope, rotaryTables, swiglu } from "./kernels/elementwise.ts";
import { gemmInto, linear } from "./kernels/matmul.ts";
import { moe } from "./kernels/moe.ts";
import { quantLinear } from "./kernels/quant.ts";
import { layernorm, rmsnorm, softmax } from "./kernels/rows.ts";

const made = new WeakMap<GpuContext, DeviceKernels<GpuTensor>>();

/**
 * A weight's handle: its float32 buffer and its BF16 pairs (ctx.weightBf16: undefined unless kept so), each
 * uploaded on first use, so that a weight only the matrix products read is resident in BF16 alone.
 */
function weightHandle(ctx: GpuContext, shape: readonly number[], data: Float32Array): GpuTensor {
  return {
    shape: [...shape],
    get buffer() {
      return ctx.weight(data);
    },
    get bf16() {
      return ctx.weightBf16(data);
    },
  };
}

/** The stacked experts' buffers for gpu/kernels/moe.ts, each BF16 pairs where the weight is kept so. */
function expertBuffers(gate: GpuTensor, up: GpuTensor, down: GpuTensor) {
  const [g, u, d] = [gate.bf16, up.bf16, down.bf16];
  return {
    gate: g ?? gate.buffer, up: u ?? up.buffer, down: d ?? down.buffer,
    bf16: { gate: g !== undefined, up: u !== undefined, down: d !== undefined },
  };
}

/** WebGPU's DeviceKernels over `ctx`'s buffer pool and weight cache (one object per context). */
export function gpuDeviceKernels(ctx: GpuContext): DeviceKernels<GpuTensor> {
  let kernels = made.get(ctx);
  if (!kernels) made.set(ctx, (kernels = create(ctx)));
  return kernels;
}

function create(ctx: GpuContext): DeviceKernels<GpuTensor> {
  /** Runs `body` with `data` uploaded into a pooled buffer, handed back once body has dispatched its kernels. */
  const withUpload = <R>(data: Uint32Array | Int32Array | Float32Array, body: (buffer: GPUBuffer) => R): R => {
    const buffer = ctx.upload(data);
    try {
      return body(buffer);
    } finally {
      ctx.release(buffer);
    }
  };
  // Handles released once already must not hand their buffer back again (it may have gone to another value since).
  const released = new WeakSet<GpuTensor>();
  const giveBack = (x: GpuTensor) => {
    if (released.has(x)) return;
    released.add(x);
    ctx.release(x.buffer); // a weight's buffer is not the pool's: ignored there
  };
  const empty = (shape: readonly number[]): GpuTensor => ctx.empty(shape);
  return {
    name: "webgpu",
    weight: (t) => weightHandle(ctx, t.shape, t.data),
    upload: (t) => ({ shape: [...t.shape], buffer: ctx.upload(t.data) }),
    empty,
    release: (...xs) => xs.forEach(giveBack),
    free: giveBack,
    read: (x) => ctx.read(x.buffer, numel(x.shape)),

    embed: (table, ids) => withUpload(ids, (i) => gatherRows(ctx, ctx.weight(table.data), table.shape[1]!, i, ids.length)),
    gatherRows: (x, rows, perPlane = false) => withUpload(rows, (i) => gatherPlanes(ctx, x, i, rows.length, perPlane)),
    addRows: (x, update, slots) => withUpload(slots, (s) => addRows(ctx, x, update, s)),

    ...copyLayout(empty, (src, dst, b) => copyBlocks(ctx, src.buffer, dst.buffer, b)),

    add: (a, b) => add(ctx, a, b),
    linear: (x, w) => linear(ctx, x, w),
    gemm: (a, b, c, args) => gemmInto(ctx, a.buffer, b.bf16 ?? b.buffer, c.buffer, args, b.bf16 !== undefined),
    rmsnorm: (x, w, eps) => rmsnorm(ctx, x, w, eps),
    layernorm: (x, w, b, eps) => layernorm(ctx, x, w, b, eps),
    rope: (x, positions, freqs, interleaved) =>
      withUpload(rotaryTables(positions, freqs), (table) => rope(ctx, x, table, positions.length, interleaved)),
    swiglu: (gate, up) => swiglu(ctx, gate, up),
    softmax: (x) => softmax(ctx, x),
    attention(q, k, v, { H, Hkv, Tq, Tk, Dh, Dv, scale, offset, logGammas, kvRows, firstRow }) {
      const run = (gammas?: GPUBuffer) =>
        attention(ctx, q, k, v, { B: 1, H, Hkv, Tq, Tk, Dh, Dv, scale, mask: { causal: true, offset }, logGammas: gammas, kvRows, firstRow });
      const out = logGammas ? withUpload(Float32Array.from(logGammas), run) : run();
      return { shape: [H, Tq, Dv], buffer: out.buffer }; // the kernel's [B = 1, H, Tq, Dv]
    },
    attentionProbs: (q, k, args) => attentionProbs(ctx, q, k, args),
    attendWith: (probs, v, args) => attendWith(ctx, probs, v, args),
    indexScores: (q, keys, w, args) => indexScores(ctx, q, keys, w, args),
    moe: (x, routing, e) => moe(ctx, x, routing, { ...expertBuffers(e.gate, e.up, e.down), E: e.E, F: e.F, D: e.D }),
    quantLinear: (x, w, activations) => quantLinear(ctx, x, w, activations),
  };
}
