// What every GPU kernel needs: a buffer pool (so a long run reuses memory instead of growing), weights uploaded
// once and cached by their Float32Array's identity, compiled pipelines cached by source, one-call dispatch, and
// read-back. Each dispatch is submitted at once; since queue.writeBuffer and submits are ordered on the queue, a
// buffer may go back to the pool as soon as the last dispatch that reads it has been submitted.

import { isBf16Exact, packBf16Pairs } from "../src/bf16.ts";
import { argError, TinyseekError } from "../src/errors.ts";
import { numel } from "../src/tensor.ts";

// GPUBufferUsage / GPUMapMode values (Node has no such globals without polluting globalThis).
export const USAGE = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 } as const;
const MAP_READ = 1;
const STORAGE_USAGE = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;

/** A tensor living in a GPU buffer: f32 elements, row-major; the buffer may be larger than the tensor. */
export interface GpuTensor {
  readonly shape: readonly number[];
  readonly buffer: GPUBuffer;
  /** A weight's values as BF16 pairs in u32 words (src/bf16.ts packBf16Pairs), where the context keeps it so: the
   *  matrix products read this instead of `buffer` (gpu/kernels/matmul.ts). */
  readonly bf16?: GPUBuffer;
}

export interface PoolStats {
  /** Buffers created over the context's life. */
  created: number;
  /** Buffers waiting in the free lists. */
  pooled: number;
  /** Bytes held by pooled and live buffers the pool made (weights excluded). */
  bytes: number;
  /** Weights resident on the device. */
  weights: number;
}

export interface GpuContext {
  readonly device: GPUDevice;
  /** A storage buffer of at least `elements` f32 values, from the pool. */
  acquire(elements: number): GPUBuffer;
  /** Hands a pooled buffer back; it may be reused by the next dispatch. */
  release(...buffers: GPUBuffer[]): void;
  /** A pooled buffer holding `data` (u32 data is copied bit for bit). */
  upload(data: Float32Array | Uint32Array | Int32Array): GPUBuffer;
  /** A device-resident copy of a weight, made once per Float32Array and kept while the array lives. */
  weight(data: Float32Array): GPUBuffer;
  /** The weight as BF16 pairs (made once, kept like `weight`) when bf16Weights is on and every value is exactly a
   *  BF16 (src/bf16.ts); undefined otherwise. */
  weightBf16(data: Float32Array): GPUBuffer | undefined;
  /** Whether weights exactly representable in BF16 are kept so (ContextOptions.bf16Weights). */
  readonly bf16Weights: boolean;
  /** Allocates a tensor's buffer from the pool. */
  empty(shape: readonly number[]): GpuTensor;
  /** Copies `count` f32 values back to the host. */
  read(buffer: GPUBuffer, count: number): Promise<Float32Array>;
  /** Runs `code`'s `main` over `groups` workgroups with the bindings in order and a uniform of `params`. */
  dispatch(code: string, bindings: GPUBuffer[], params: Params, groups: readonly [number, number?, number?]): void;
  stats(): PoolStats;
  /** Frees every buffer the context made; the device itself is closed by its owner. */
  destroy(): void;
}

/** Uniform values in declaration order: plain numbers are u32, `{ f: x }` are f32, `{ i: x }` are i32. */
export type Params = readonly (number | { f: number } | { i: number })[];

/** Byte sizes grow in steps of a quarter power of two, so that tensors of nearby sizes share buffers. */
function bucket(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 256) return b;
  const step = 2 ** (Math.floor(Math.log2(b)) - 2);
  return Math.ceil(b / step) * step;
}

export interface ContextOptions {
  /** Fill every output buffer with NaN before its kernel runs (tests): an element a kernel forgets to write then
   *  reads back as NaN instead of whatever the pooled buffer last held; and follow it with guard words that its
   *  read-back checks, so a write past the end fails. Env: TINYSEEK_GPU_CHECK=1. */
  poison?: boolean;
  /** Keep weights whose every value is exactly a BF16 as BF16 pairs for the matrix products (default true). */
  bf16Weights?: boolean;
}

// Check mode's guard: words after an output tensor, filled with a NaN whose payload no arithmetic produces (GPUs
// write canonical NaNs), checked when the tensor is read back. WebGPU clamps accesses to the binding, and a
// binding is the whole pooled buffer: a kernel writing past its tensor lands in the pool's slack unseen without it.
const GUARD_WORDS = 16;
const GUARD_BITS = 0x7fa5a5a5;

export function createContext(device: GPUDevice, options: ContextOptions = {}): GpuContext {
  const poison = options.poison ?? process.env.TINYSEEK_GPU_CHECK === "1";
  const free = new Map<number, GPUBuffer[]>(); // storage buffers by size
  const uniforms: GPUBuffer[] = [];
  const pipelines = new Map<string, GPUComputePipeline>();
  const weights = new WeakMap<Float32Array, GPUBuffer>();
  const bf16Weights = options.bf16Weights ?? true;
  if (typeof bf16Weights !== "boolean") throw argError("bf16Weights", "true or false", bf16Weights);
  const halves = new WeakMap<Float32Array, GPUBuffer | null>(); // BF16 copies; null: not exactly BF16
  const owned = new Set<GPUBuffer>(); // everything we made, to free on destroy
  let weightCount = 0;
  let created = 0;
  let bytes = 0;
  // A weight's buffer is destroyed when its Float32Array is collected.
  const collected = new FinalizationRegistry<GPUBuffer>((buffer) => {
    weightCount--;
    owned.delete(buffer);
    buffer.destroy();
  });
  const guarded = new WeakMap<GPUBuffer, number>(); // check mode: output buffer → its tensor's element count
  const maxBinding = device.limits.maxStorageBufferBindingSize;
  // Validation errors (a shader that does not compile, a bad binding) arrive here, not as exceptions: keep the
  // first and fail the next read-back with it, so a broken kernel never returns stale buffer contents.
  let deviceError: string | undefined;
  device.addEventListener("uncapturederror", (event) => {
    deviceError ??= (event as GPUUncapturedErrorEvent).error.message;
    event.preventDefault(); // reported by the next read-back instead of on the console
  });

  function create(size: number, usage: number): GPUBuffer {
    if (size > maxBinding && usage & USAGE.STORAGE) {
      throw new TinyseekError(`webgpu: a buffer of ${size} bytes exceeds the device's storage binding limit ${maxBinding}`);
    }
    const buffer = device.createBuffer({ size, usage });
    owned.add(buffer);
    created++;
    return buffer;
  }

  function acquire(elements: number): GPUBuffer {
    const size = bucket(elements * 4);
    const buffer = free.get(size)?.pop();
    if (buffer) return buffer;
    bytes += size;
    return create(size, STORAGE_USAGE);
  }

  function release(...buffers: GPUBuffer[]): void {
    for (const buffer of buffers) {
      if (!owned.has(buffer)) continue; // a weight or a foreign buffer: not ours to pool
      guarded.delete(buffer);
      let list = free.get(buffer.size);
      if (!list) free.set(buffer.size, (list = []));
      if (!list.includes(buffer)) list.push(buffer);
    }
  }

  function upload(data: Float32Array | Uint32Array | Int32Array): GPUBuffer {
    const buffer = acquire(Math.max(1, data.length));
    // The casts: the DOM library's BufferSource (the browser pages' typecheck, web/tsconfig.json) excludes views
    // of a SharedArrayBuffer, which writeBuffer accepts; host tensors here are never such views anyway.
    if (data.length > 0) device.queue.writeBuffer(buffer, 0, data as GPUAllowSharedBufferSource);
    return buffer;
  }

  function pipeline(code: string): GPUComputePipeline {
    let p = pipelines.get(code);
    if (!p) {
      const module = device.createShaderModule({ code });
      p = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      pipelines.set(code, p);
    }
    return p;
  }

  function uniform(params: Params): GPUBuffer {
    const words = new ArrayBuffer(Math.max(16, Math.ceil(params.length / 4) * 16));
    const u32 = new Uint32Array(words);
    const f32 = new Float32Array(words);
    const i32 = new Int32Array(words);
    params.forEach((p, i) => {
      if (typeof p === "number") u32[i] = p;
      else if ("f" in p) f32[i] = p.f;
      else i32[i] = p.i;
    });
    let buffer = uniforms.find((u) => u.size >= words.byteLength);
    if (buffer) uniforms.splice(uniforms.indexOf(buffer), 1);
    else buffer = create(Math.max(64, words.byteLength), USAGE.UNIFORM | USAGE.COPY_DST);
    device.queue.writeBuffer(buffer, 0, u32);
    return buffer;
  }

  return {
    device,
    acquire,
    release,
    upload,
    weight(data) {
      let buffer = weights.get(data);
      if (!buffer) {
        buffer = create(bucket(data.byteLength), STORAGE_USAGE);
        device.queue.writeBuffer(buffer, 0, data as GPUAllowSharedBufferSource);
        weights.set(data, buffer);
        collected.register(data, buffer);
        weightCount++;
      }
      return buffer;
    },
    bf16Weights,
    weightBf16(data) {
      if (!bf16Weights) return undefined;
      let buffer = halves.get(data);
      if (buffer === undefined) {
        buffer = null;
        if (isBf16Exact(data)) {
          const words = packBf16Pairs(data);
          buffer = create(bucket(words.byteLength), STORAGE_USAGE);
          device.queue.writeBuffer(buffer, 0, words as GPUAllowSharedBufferSource);
          collected.register(data, buffer);
          weightCount++;
        }
        halves.set(data, buffer);
      }
      return buffer ?? undefined;
    },
    empty(shape) {
      const n = Math.max(1, numel(shape));
      if (!poison) return { shape: [...shape], buffer: acquire(n) };
      const buffer = acquire(n + GUARD_WORDS);
      const fill = new Float32Array(buffer.size / 4).fill(NaN);
      new Uint32Array(fill.buffer, n * 4, GUARD_WORDS).fill(GUARD_BITS);
      device.queue.writeBuffer(buffer, 0, fill);
      guarded.set(buffer, n);
      return { shape: [...shape], buffer };
    },
    async read(buffer, count) {
      const tensorLength = guarded.get(buffer);
      const words = tensorLength === undefined ? count : Math.max(count, tensorLength + GUARD_WORDS);
      const size = Math.max(16, Math.ceil((words * 4) / 16) * 16);
      const staging = device.createBuffer({ size, usage: USAGE.MAP_READ | USAGE.COPY_DST });
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(buffer, 0, staging, 0, Math.min(size, buffer.size));
      device.queue.submit([encoder.finish()]);
      try {
        await staging.mapAsync(MAP_READ);
        if (deviceError) {
          const message = deviceError.split("\n")[0];
          deviceError = undefined; // reported once: later kernels start clean
          throw new TinyseekError(`webgpu: ${message}`);
        }
        const mapped = staging.getMappedRange();
        const data = new Float32Array(mapped.slice(0, count * 4));
        const overrun = tensorLength === undefined ? -1 : new Uint32Array(mapped, tensorLength * 4, GUARD_WORDS).findIndex((bits) => bits !== GUARD_BITS);
        staging.unmap();
        if (overrun >= 0) throw new TinyseekError(`webgpu: a kernel wrote past the end of its output of ${tensorLength} elements (element ${tensorLength! + overrun})`);
        return data;
      } finally {
        staging.destroy();
      }
    },
    dispatch(code, bindings, params, [x, y = 1, z = 1]) {
      if (x === 0 || y === 0 || z === 0) return;
      const p = pipeline(code);
      const u = uniform(params);
      const entries = [u, ...bindings].map((buffer, binding) => ({ binding, resource: { buffer } }));
      const group = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(p);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
      device.queue.submit([encoder.finish()]);
      uniforms.push(u);
    },
    stats() {
      let pooled = 0;
      for (const list of free.values()) pooled += list.length;
      return { created, pooled, bytes, weights: weightCount };
    },
    destroy() {
      for (const buffer of owned) buffer.destroy();
      owned.clear();
      free.clear();
      uniforms.length = 0;
      pipelines.clear();
    },
  };
}

/** Workgroup counts for `n` items at `perGroup` items per group, folded into 2-D past the 65535 limit. */
export function groups1d(n: number, perGroup: number): [number, number] {
  const g = Math.ceil(n / perGroup);
  if (g <= 65535) return [g, 1];
  const y = Math.ceil(g / 65535);
  return [Math.ceil(g / y), y];
}
