// BF16 weight storage (spec/backends.md, "BF16 weights"): a weight whose every value is exactly a BF16 is kept as
// 16-bit values in the backend's memory and widened in registers, so every kernel that reads it must give exactly
// the bits of the same kernel fed the float32 weight. Each row pairs a backend storing BF16 with the same backend
// forced to float32 (bf16Weights: false), both in check mode (fresh outputs poisoned with NaN), and compares their
// outputs bit for bit over shapes of 1, primes, one off the SIMD width 4 and the panel 8, one off the K block 256;
// then the decision itself (exact weights only, the option, the bytes resident) and the shipped BF16 checkpoint.

import fc from "fast-check";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Backend } from "../src/backend.ts";
import type { DeviceKernels, Value } from "../src/device/kernels.ts";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { forward, forwardAsync } from "../src/model/forward.ts";
import { loadModel } from "../src/model/weights.ts";
import type { ExpertWeights } from "../src/moe/experts.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";
import { createBackend, type WasmBackend } from "../wasm/backend.ts";
import { isBf16Exact, packBf16Pairs } from "../src/bf16.ts";
import { startBackend } from "./backend-rows.ts";
import { runUploaded } from "./helpers.ts";
import { randomRouting } from "./moe-fixtures.ts";

const RUNS = Number(process.env.TINYSEEK_PROPERTY_RUNS ?? 10);
const CHECKPOINT = fileURLToPath(new URL("../data/tiny-alice.safetensors", import.meta.url));
const PROMPT = Array.from("Alice was beginning", (c) => c.charCodeAt(0));
const bitsOf = (data: Float32Array) => new Uint32Array(data.buffer, data.byteOffset, data.length);

/** `t` with every value cut to its top 16 bits: exactly a BF16 value, never zero for a normal input. */
function bf16(t: Tensor): Tensor {
  const data = t.data.slice();
  const bits = new Uint32Array(data.buffer);
  for (let i = 0; i < bits.length; i++) bits[i]! &= 0xffff0000;
  return { shape: [...t.shape], data };
}

interface Pair {
  name: string;
  create: () => Promise<{ bf16: Backend; f32: Backend }>;
  optional?: boolean;
}

const wasmPair = (options: Parameters<typeof createBackend>[0]) => async () => ({
  bf16: await createBackend({ ...options, check: true, bf16Weights: true }),
  f32: await createBackend({ ...options, check: true, bf16Weights: false }),
});

const PAIRS: Pair[] = [
  { name: "wasm", create: wasmPair({ threads: 1, relaxed: false }) },
  { name: "wasm 2 threads", create: wasmPair({ threads: 2, relaxed: false, parallelFlops: 0 }) },
  {
    name: "webgpu",
    optional: true,
    create: async () => {
      const { createBackend: createGpu } = await import("../gpu/backend.ts");
      return { bf16: await createGpu({ check: true, bf16Weights: true }), f32: await createGpu({ check: true, bf16Weights: false }) };
    },
  },
  {
    name: "wasm relaxed",
    optional: true,
    create: async () => {
      const { relaxedWasm } = await import("./wasm-relaxed.ts");
      return { bf16: await relaxedWasm({ bf16Weights: true }), f32: await relaxedWasm({ bf16Weights: false }) };
    },
  },
];

const small = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 13, 17);
const outDim = fc.constantFrom(1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 64);
const inDim = fc.constantFrom(1, 3, 4, 5, 7, 8, 9, 17, 64, 255, 256, 257, 515, 600);
const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 });

interface Case {
  describe: string;
  run: (k: DeviceKernels<Value>, up: (t: Tensor) => Value) => Value;
}

const cases: Record<string, fc.Arbitrary<Case>> = {
  linear: fc.record({ rows: small, inDim, outDim, seed }).map(({ rows, inDim, outDim, seed }) => {
    const rng = new Random(seed);
    const x = randBounded(rng, [rows, inDim]), w = bf16(randBounded(rng, [outDim, inDim]));
    return { describe: `x [${x.shape}] W [${w.shape}] seed ${seed}`, run: (k, up) => k.linear(up(x), k.weight(w)) };
  }),
  // The device gemm with B a weight read in place (MLA's absorbed heads): strided slices after an offset, odd or
  // even, so that BF16 pairs straddle the slices' edges.
  gemm: fc.record({ batches: fc.constantFrom(1, 2, 3), M: small, K: inDim, N: outDim, transB: fc.boolean(), gap: fc.constantFrom(0, 1, 3), seed })
    .map(({ batches, M, K, N, transB, gap, seed }) => {
      const rng = new Random(seed);
      const a = randBounded(rng, [batches, M, K]);
      const strideB = K * N + gap, offB = gap;
      const b = bf16(randBounded(rng, [offB + batches * strideB]));
      return {
        describe: `${batches}×[${M}, ${K}]·[${K}, ${N}]${transB ? "ᵀ" : ""} stride ${strideB} seed ${seed}`,
        run: (k, up) => {
          const c = k.empty([batches, M, N]);
          k.gemm(up(a), k.weight(b), c, { M, N, K, transB, batches, strideA: M * K, strideB, strideC: M * N, offB });
          return c;
        },
      };
    }),
  moe: fc.record({ N: small, D: fc.constantFrom(1, 4, 9, 16, 33), F: fc.constantFrom(1, 5, 8, 17), E: fc.constantFrom(1, 3, 4), top: fc.constantFrom(1, 2), seed })
    .map(({ N, D, F, E, top, seed }) => {
      const rng = new Random(seed);
      const x = randBounded(rng, [N, D]);
      const experts: ExpertWeights = { gate: bf16(randBounded(rng, [E, F, D])), up: bf16(randBounded(rng, [E, F, D])), down: bf16(randBounded(rng, [E, D, F])) };
      const k = Math.min(top, E);
      const routing = randomRouting(rng, N, E, k);
      return {
        describe: `x [${N}, ${D}] E ${E} F ${F} k ${k} seed ${seed}`,
        run: (kk, up) => kk.moe(up(x), routing, { gate: kk.weight(experts.gate), up: kk.weight(experts.up), down: kk.weight(experts.down), E, F, D }),
      };
    }),
};

async function runOn(k: DeviceKernels<Value>, c: Case): Promise<Uint32Array> {
  const { data } = await runUploaded(k, c.run);
  return new Uint32Array(data.buffer, data.byteOffset, data.length);
}

/** The first element whose bits differ, named, or "" when none does. */
function firstDifference(a: Uint32Array, b: Uint32Array): string {
  if (a.length !== b.length) return `${a.length} elements, ${b.length} with float32 weights`;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return `element ${i}: ${new Float32Array(a.buffer, a.byteOffset)[i]} with BF16 weights, ${new Float32Array(b.buffer, b.byteOffset)[i]} with float32`;
  }
  return "";
}

for (const pair of PAIRS) {
  describe(`BF16 weights on ${pair.name}: bit-identical to float32 weights`, () => {
    const started = startBackend({ name: pair.name, create: pair.create, optional: pair.optional }, async (b) => {
      await b.bf16.dispose();
      await b.f32.dispose();
    });
    for (const [op, arbitrary] of Object.entries(cases)) {
      it(op, async (context) => {
        const { bf16: b, f32 } = started.ready(context);
        await fc.assert(fc.asyncProperty(arbitrary, async (c) => {
          const difference = firstDifference(await runOn(b.ops.kernels, c), await runOn(f32.ops.kernels, c));
          if (difference) throw new Error(`${op} on ${pair.name}: ${c.describe}: ${difference}`);
        }), { numRuns: RUNS });
      });
    }
    it("the shipped BF16 checkpoint: the same logits bit for bit, prompt and one decode step", async (context) => {
      const { bf16: b, f32 } = started.ready(context);
      const model = await loadModel(CHECKPOINT);
      const logits = async (backend: Backend) => {
        const cache = createCache(model.config, { backend, capacity: 24 });
        try {
          const prompt = await forwardAsync(model, PROMPT, { backend, cache });
          const step = await forwardAsync(model, [PROMPT[0]!], { backend, cache });
          return Uint32Array.from([...bitsOf(prompt.logits.data), ...bitsOf(step.logits.data)]);
        } finally {
          releaseCache(cache);
        }
      };
      expect(firstDifference(await logits(b), await logits(f32))).toBe("");
    });
  });
}

describe("which weights the wasm backend keeps as BF16", () => {
  const rng = new Random(7);
  const x = randBounded(rng, [1, 40]);
  const exact = bf16(randBounded(rng, [24, 40]));
  const f32Bytes = 24 * 40 * 4; // packed panels of 8 columns: 24 = 3 panels, no padding

  it("a weight every value of which is a BF16, and only such a weight", () => {
    expect(isBf16Exact(exact.data)).toBe(true);
    const inexact = bf16(exact);
    inexact.data[17] = Math.fround(inexact.data[17]! * (1 + 2 ** -20)); // one value with a low bit set
    expect(isBf16Exact(inexact.data)).toBe(false);
    expect(isBf16Exact(Float32Array.of(0, -0, Infinity, -Infinity, 1.5, -(2 ** -130)))).toBe(true);
  });

  async function residentAfterLinear(options: { bf16Weights?: boolean }, w: Tensor): Promise<{ bytes: number; description: string }> {
    const backend = await createBackend({ threads: 1, relaxed: false, ...options });
    try {
      backend.kernels!.linear(x, w);
      return { bytes: backend.stats().weightBytes, description: backend.description };
    } finally {
      await backend.dispose();
    }
  }

  it("keeps an exact weight in half the bytes, an inexact one and any under bf16Weights: false in float32", async () => {
    const inexact = bf16(exact);
    inexact.data[3] = Math.fround(inexact.data[3]! * (1 + 2 ** -20));
    const stored = await residentAfterLinear({}, exact);
    expect(stored.bytes).toBe(f32Bytes / 2);
    expect(stored.description).toContain("BF16 weights where exact");
    expect((await residentAfterLinear({}, inexact)).bytes).toBe(f32Bytes);
    const forced = await residentAfterLinear({ bf16Weights: false }, exact);
    expect(forced.bytes).toBe(f32Bytes);
    expect(forced.description).toContain("float32 weights");
  });

  it("refuses a bf16Weights that is not a boolean in one line", async () => {
    await expect(createBackend({ threads: 1, bf16Weights: "yes" as unknown as boolean })).rejects.toThrow(/^bf16Weights: expected true or false, got "yes"$/);
  });
});

describe("which weights the webgpu backend keeps as BF16", () => {
  const started = startBackend({
    name: "webgpu",
    optional: true,
    create: async () => {
      const { createBackend: createGpu } = await import("../gpu/backend.ts");
      return { on: await createGpu({ bf16Weights: true }), off: await createGpu({ bf16Weights: false }) };
    },
  }, async ({ on, off }) => {
    await on.dispose();
    await off.dispose();
  });

  it("packs BF16 values in pairs, low half first, and keeps only exact weights so, unless turned off", (context) => {
    const { on, off } = started.ready(context);
    expect([...packBf16Pairs(Float32Array.of(1, -2, 0.5))]).toEqual([0xc0003f80, 0x3f00]);
    const exact = bf16(randBounded(new Random(3), [5, 7]));
    const inexact = exact.data.slice();
    inexact[34] = Math.fround(inexact[34]! * (1 + 2 ** -20));
    expect(on.context.weightBf16(exact.data)).toBeDefined();
    expect(on.context.weightBf16(inexact)).toBeUndefined();
    expect(off.context.weightBf16(exact.data)).toBeUndefined();
    expect(on.description).toContain("BF16 weights where exact");
    expect(off.description).toContain("float32 weights");
  });

  it("refuses a bf16Weights that is not a boolean in one line", async (context) => {
    const { on } = started.ready(context);
    const { createContext } = await import("../gpu/context.ts");
    expect(() => createContext(on.context.device, { bf16Weights: 1 as unknown as boolean })).toThrow(/^bf16Weights: expected true or false, got 1$/);
  });
});

describe("the shipped BF16 checkpoint on wasm", () => {
  it("stores its linear and expert weights in half the bytes, with the same logits bit for bit", async () => {
    const model = await loadModel(CHECKPOINT);
    const backends: WasmBackend[] = [
      await createBackend({ threads: 1, relaxed: false, check: true }),
      await createBackend({ threads: 1, relaxed: false, check: true, bf16Weights: false }),
    ];
    try {
      const [b, f] = backends.map((backend) => forward(model, PROMPT, { backend }).logits.data);
      expect(firstDifference(bitsOf(b!), bitsOf(f!))).toBe("");
      const [bf16Bytes, f32Bytes] = backends.map((backend) => backend.stats().weightBytes);
      expect(bf16Bytes).toBeLessThan(0.6 * f32Bytes!);
    } finally {
      for (const backend of backends) await backend.dispose();
    }
  });
});
