// THE backend property suite: one list of kernel cases, run against every backend in BACKENDS (tfjs's
// describeWithFlags, llama.cpp's test-backend-ops). fast-check draws shapes (1, primes, sizes one under and over
// the SIMD width 4, the panel width 8, 16, the attention key block 64 and the K block 256) and seeds; values come
// from randBounded (a bounded normal, never zero). Each backend's output must meet the tolerance that
// spec/backends.md gives for that kernel and backend, read from its table, so the spec is the one source.
// TINYSEEK_TOLERANCE_REPORT=1 prints the worst errors seen per kernel and backend (how the spec was calibrated).

import fc from "fast-check";
import { afterAll, describe, it } from "vitest";
import { loadBackend, referenceBackend, type AsyncKernels, type Backend } from "../src/backend.ts";
import { reference } from "../src/kernels.ts";
import type { MaskSpec } from "../src/masks.ts";
import type { ExpertWeights, Routing } from "../src/moe/experts.ts";
import { quantizeFp8 } from "../src/quant/fp8.ts";
import { quantizeInt } from "../src/quant/int.ts";
import { Random, randBounded } from "../src/random.ts";
import { ropeFrequencies } from "../src/rope.ts";
import type { Tensor } from "../src/tensor.ts";
import { startBackend, type BackendRow } from "./backend-rows.ts";
import { checkTolerance, readTolerances, reportWorst } from "./tolerances.ts";
import { randomRouting } from "./moe-fixtures.ts";
import { relaxedWasm } from "./wasm-relaxed.ts";
import { createBackend as createWasm } from "../wasm/backend.ts";

/** A row of the suite; `spec` is the backend whose tolerances it uses. */
interface Row extends BackendRow<Backend> {
  spec: "reference" | "wasm" | "wasm relaxed" | "webgpu";
}

// Adding a backend is one line.
const BACKENDS: Row[] = [
  { name: "reference", spec: "reference", create: async () => referenceBackend },
  { name: "wasm", spec: "wasm", create: () => createWasm({ threads: 1, check: true, relaxed: false }) },
  // Every matmul and attention through the pool, however small, so chunking meets every odd shape.
  { name: "wasm 2 threads", spec: "wasm", create: () => createWasm({ threads: 2, check: true, relaxed: false, parallelFlops: 0 }) },
  // What Node 22+ and browsers load by default; under CI it must load (test/wasm-relaxed.ts turns it on in Node 20).
  { name: "wasm relaxed", spec: "wasm relaxed", create: relaxedWasm, optional: true },
  { name: "webgpu", spec: "webgpu", create: async () => (await import("../gpu/backend.ts")).createBackend({ check: true }), optional: true },
];

const RUNS = Number(process.env.TINYSEEK_PROPERTY_RUNS ?? 12);

// Dimensions around every boundary the kernels have: SIMD width 4, panel 8, 16, key block 64.
const small = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17);
const medium = fc.constantFrom(1, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 63, 64, 65);
// Reduction lengths, including one under and over the K block of 256, and one wide enough (>= 512) that gemm
// copies blocks of A before use.
const depth = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 97, 255, 257, 515);
const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 });

interface Case {
  describe: string;
  run(k: AsyncKernels): Tensor | Promise<Tensor>;
}

const rand = (rng: Random, shape: number[]) => randBounded(rng, shape);

/** fast-check prints a counterexample through this: the case's description, not its closure. */
const printable = (c: Case): Case => Object.assign(c, { [fc.toStringMethod]: () => c.describe });

const cases: Record<string, fc.Arbitrary<Case>> = {
  matmul: fc.record({ batch: fc.constantFrom(0, 2), M: medium, K: depth, N: medium, seed }).map(({ batch, M, K, N, seed }) => {
    const rng = new Random(seed);
    const a = rand(rng, batch ? [batch, M, K] : [M, K]), b = rand(rng, [K, N]);
    return { describe: `a [${a.shape}] b [${b.shape}] seed ${seed}`, run: (k) => k.matmul(a, b) };
  }),
  bmm: fc.record({ batch: fc.constantFrom(1, 2, 3), M: small, K: depth, N: small, seed }).map(({ batch, M, K, N, seed }) => {
    const rng = new Random(seed);
    const a = rand(rng, [batch, M, K]), b = rand(rng, [batch, K, N]);
    return { describe: `a [${a.shape}] b [${b.shape}] seed ${seed}`, run: (k) => k.bmm(a, b) };
  }),
  linear: fc.record({ rows: medium, inDim: depth, outDim: fc.constantFrom(1, 7, 8, 9, 17, 64, 255, 257), seed }).map(
    ({ rows, inDim, outDim, seed }) => {
      const rng = new Random(seed);
      const x = rand(rng, [rows, inDim]), w = rand(rng, [outDim, inDim]);
      return { describe: `x [${x.shape}] W [${w.shape}] seed ${seed}`, run: (k) => k.linear(x, w) };
    },
  ),
  softmax: fc.record({ rows: small, N: medium, masked: fc.boolean(), seed }).map(({ rows, N, masked, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [rows, N]);
    // Hidden entries at random, and the first row fully hidden so the all-zeros rule is always exercised.
    const visible = masked ? Uint8Array.from(x.data, (_, i) => (i >= N && rng.uniform() < 0.7 ? 1 : 0)) : undefined;
    return { describe: `x [${x.shape}]${masked ? " masked" : ""} seed ${seed}`, run: (k) => k.softmax(x, visible) };
  }),
  // eps over its whole range [0, 1]: at 1e-6 alone, eps moved outside the square root changes the output by ~5e-7
  // relative, inside the tolerance; at 0.1 or 1, next to mean(x²) ~ 1, by tens of percent.
  rmsnorm: fc.record({ rows: small, D: depth, eps: fc.constantFrom(0, 1e-6, 1e-3, 0.05, 0.3, 1), seed }).map(({ rows, D, eps, seed }) => {
    const rng = new Random(seed);
    const x = rand(rng, [rows, D]), w = rand(rng, [D]);
    return { describe: `x [${x.shape}] eps ${eps} seed ${seed}`, run: (k) => k.rmsnorm(x, w, eps) };
  }),
  rope: fc.record({ planes: fc.constantFrom(1, 3), T: small, half: small, start: fc.integer({ min: 0, max: 5000 }), seed }).map(
    ({ planes, T, half, start, seed }) => {
      const rng = new Random(seed);
      const x = rand(rng, [planes, T, 2 * half]);
      const freqs = ropeFrequencies({ dim: 2 * half });
      const positions = Array.from({ length: T }, (_, t) => start + t);
      return { describe: `x [${x.shape}] from position ${start} seed ${seed}`, run: (k) => k.rope(x, positions, freqs) };
    },
  ),
  silu: fc.record({ n: depth, seed }).map(({ n, seed }) => {
    const x = rand(new Random(seed), [n]);
    return { describe: `x [${n}] seed ${seed}`, run: (k) => k.silu(x) };
  }),
  swiglu: fc.record({ rows: small, n: depth, seed }).map(({ rows, n, seed }) => {
    const rng = new Random(seed);
    const gate = rand(rng, [rows, n]), up = rand(rng, [rows, n]);
    return { describe: `gate [${gate.shape}] seed ${seed}`, run: (k) => k.swiglu(gate, up) };
  }),
  attention: fc
    .record({
      B: fc.constantFrom(1, 2),
      Hkv: fc.constantFrom(1, 2),
      group: fc.constantFrom(1, 2, 3),
      Tq: fc.constantFrom(1, 3, 4, 5, 9, 17),
      extra: fc.constantFrom(0, 1, 7, 60, 64, 65),
      Dh: fc.constantFrom(1, 4, 7, 8, 16, 33),
      Dv: fc.constantFrom(1, 8, 9, 16),
      kind: fc.constantFrom("none", "causal", "window", "segment", "lengths"),
      decay: fc.boolean(),
      seed,
    })
    .map(({ B, Hkv, group, Tq, extra, Dh, Dv, kind, decay, seed }) => {
      const rng = new Random(seed);
      const H = Hkv * group, Tk = Tq + extra;
      const q = rand(rng, [B, H, Tq, Dh]), k = rand(rng, [B, Hkv, Tk, Dh]), v = rand(rng, [B, Hkv, Tk, Dv]);
      const masks: Record<string, MaskSpec | undefined> = {
        none: undefined,
        causal: { causal: true },
        window: { window: 1 + rng.int(Tk) },
        segment: { segment: { size: 1 + rng.int(8), overlap: rng.int(5) } },
        lengths: { causal: true, lengths: Array.from({ length: B }, () => rng.int(Tk + 1)) },
      };
      const mask = masks[kind];
      const logGammas = decay ? Array.from({ length: H }, (_, h) => Math.log(1 - 2 ** (-2 - h))) : undefined;
      const describe = `q [${q.shape}] k [${k.shape}] v [${v.shape}] mask ${JSON.stringify(mask)}${decay ? " decay" : ""} seed ${seed}`;
      return { describe, run: (kernels) => kernels.attention(q, k, v, { mask, logGammas }) };
    }),
  quantLinear: fc
    .record({ rows: small, inDim: fc.constantFrom(1, 7, 32, 65, 129, 257), outDim: small, scheme: fc.constantFrom("int8", "int4", "int8-dynamic", "fp8"), seed })
    .map(({ rows, inDim, outDim, scheme, seed }) => {
      const rng = new Random(seed);
      const x = rand(rng, [rows, inDim]), w = rand(rng, [outDim, inDim]);
      const q = scheme === "fp8" ? quantizeFp8(w, 128) : quantizeInt(w, scheme === "int4" ? 4 : 8, 32);
      const activations = scheme === "int8-dynamic";
      return {
        describe: `x [${x.shape}] W [${w.shape}] ${scheme} seed ${seed}`,
        run: (k) => {
          if (!k.quantLinear) throw new NotSupported(`${k.name} has no quantLinear`);
          return k.quantLinear(x, q, { activations });
        },
      };
    }),
  moe: fc
    .record({ N: small, D: fc.constantFrom(1, 4, 9, 16, 33), F: fc.constantFrom(1, 5, 8, 17), E: fc.constantFrom(1, 3, 4), top: fc.constantFrom(1, 2), seed })
    .map(({ N, D, F, E, top, seed }) => {
      const rng = new Random(seed);
      const x = rand(rng, [N, D]);
      const experts: ExpertWeights = { gate: rand(rng, [E, F, D]), up: rand(rng, [E, F, D]), down: rand(rng, [E, D, F]) };
      const k = Math.min(top, E);
      const routing = randomRouting(rng, N, E, k);
      return { describe: `x [${x.shape}] E=${E} F=${F} k=${k} seed ${seed}`, run: (kernels) => kernels.moe(x, routing, experts) };
    }),
};

/** A backend without an optional kernel: the test says so and skips, it never passes silently. */
class NotSupported extends Error {}

const tolerances = readTolerances(Object.keys(cases));

for (const row of BACKENDS) {
  describe(`kernels on ${row.name}`, () => {
    const started = startBackend(row, (b) => b.dispose());

    for (const [op, arbitrary] of Object.entries(cases)) {
      it(op, async (context) => {
        const backend = started.ready(context);
        const tol = tolerances.get(`${op}/${row.spec}`);
        if (!tol) throw new Error(`spec/backends.md has no tolerance for ${op} on ${row.spec}`);
        const kernels = backend.asyncKernels;
        if (op === "quantLinear" && !kernels.quantLinear) {
          context.skip(`${row.name} does not support ${op}`);
          return;
        }
        await fc.assert(
          fc.asyncProperty(arbitrary.map(printable), async (c) => checkTolerance(`${op} on ${row.name}: ${c.describe}`, `${op}/${row.name}`, await c.run(kernels), await c.run(reference), tol)),
          { numRuns: RUNS },
        );
      });
    }
  });
}

afterAll(reportWorst);
