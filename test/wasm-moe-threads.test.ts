// The MoE call's experts split over the WASM pool, whole experts per thread (wasm/kernels/moe.ts runExperts): the
// split gives the one-thread bits (each expert's chain is the same kernel calls, and the float64 combine adds a
// token's experts in expert order either way; a busy expert's rows cut into blocks are independent rows of the same
// products), and the reference's values within moe's tolerance row; it happens exactly when the call reaches
// expertFlops with work to share and weights that fit the budget together, and a bad expertFlops is refused in one line.

import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { forward } from "../src/model/forward.ts";
import { initModel } from "../src/model/weights.ts";
import { preset } from "../src/model/presets.ts";
import type { ExpertWeights, Routing } from "../src/moe/experts.ts";
import { reference } from "../src/kernels.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";
import { createBackend, type WasmBackend } from "../wasm/backend.ts";
import { Pool } from "../wasm/pool.ts";
import { seed } from "./helpers.ts";
import { randomRouting } from "./moe-fixtures.ts";
import { checkTolerance, readTolerances } from "./tolerances.ts";

const RUNS = Number(process.env.TINYSEEK_PROPERTY_RUNS ?? 40);
const tolerance = readTolerances(["moe"]).get("moe/wasm")!;
const bits = (t: Tensor) => new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);

/** `t` with every value cut to its top 16 bits: exactly a BF16, so the backends keep it as BF16 panels. */
function bf16(t: Tensor): Tensor {
  const data = t.data.slice();
  const words = new Uint32Array(data.buffer);
  for (let i = 0; i < words.length; i++) words[i]! &= 0xffff0000;
  return { shape: [...t.shape], data };
}

interface Case {
  x: Tensor;
  routing: Routing;
  experts: ExpertWeights;
}

function moeCase(s: number, N: number, D: number, F: number, E: number, k: number, asBf16: boolean): Case {
  const rng = new Random(s);
  const weight = (shape: number[]) => (asBf16 ? bf16(randBounded(rng, shape)) : randBounded(rng, shape));
  const x = randBounded(rng, [N, D]);
  const experts = { gate: weight([E, F, D]), up: weight([E, F, D]), down: weight([E, D, F]) };
  return { x, routing: randomRouting(rng, N, E, k), experts };
}

/** Experts with at least one kept assignment. */
const usedExperts = ({ routing }: Case) => new Set(Array.from(routing.experts).filter((_, a) => routing.kept[a])).size;
const keptAssignments = ({ routing }: Case) => routing.kept.reduce((n, kept) => n + kept, 0);

let one: WasmBackend, two: WasmBackend;
beforeAll(async () => {
  one = await createBackend({ threads: 1, check: true, relaxed: false });
  // expertFlops 0: every call with two experts or more runs them over the pool.
  two = await createBackend({ threads: 2, check: true, relaxed: false, expertFlops: 0 });
});
afterAll(async () => {
  await one?.dispose();
  await two?.dispose();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The names of the pool jobs that `run` starts. */
function poolJobs(run: () => void): { name: string; chunks: number }[] {
  const spy = vi.spyOn(Pool.prototype, "run");
  try {
    run();
    return spy.mock.calls.map(([name, , , chunks]) => ({ name, chunks: chunks ?? -1 }));
  } finally {
    spy.mockRestore();
  }
}

describe("wasm: an MoE call's experts over two threads", () => {
  it("gives the one-thread bits and the reference's values, float32 and BF16 weights", () => {
    fc.assert(
      fc.property(
        fc.record({
          N: fc.constantFrom(1, 2, 3, 5, 7, 13),
          D: fc.constantFrom(1, 4, 9, 33),
          F: fc.constantFrom(1, 5, 8, 17),
          E: fc.constantFrom(1, 2, 3, 5, 8, 16),
          top: fc.constantFrom(1, 2, 3, 4),
          asBf16: fc.boolean(),
          seed,
        }),
        ({ N, D, F, E, top, asBf16, seed: s }) => {
          const c = moeCase(s, N, D, F, E, Math.min(top, E), asBf16);
          const serial = one.kernels!.moe(c.x, c.routing, c.experts);
          let split!: Tensor;
          const jobs = poolJobs(() => (split = two.kernels!.moe(c.x, c.routing, c.experts)));
          const used = usedExperts(c), expertJobs = jobs.filter((j) => j.name === "moeExperts");
          // The split ran whenever there were two experts: one job, a chunk per expert or more (row blocks).
          if (used > 1) expect(expertJobs.length === 1 && expertJobs[0]!.chunks >= used, JSON.stringify(expertJobs)).toBe(true);
          if (used <= 1 && keptAssignments(c) <= 4) expect(expertJobs).toEqual([]); // nothing to share
          expect(bits(split)).toEqual(bits(serial));
          checkTolerance(`moe N=${N} D=${D} F=${F} E=${E} seed ${s}`, "moe/wasm", split, reference.moe(c.x, c.routing, c.experts), tolerance);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("splits exactly from expertFlops (6 · kept assignments · D · F), else runs every expert on the calling thread", async () => {
    const c = moeCase(7, 5, 32, 16, 8, 2, false);
    const flops = 6 * keptAssignments(c) * 32 * 16;
    const serial = one.kernels!.moe(c.x, c.routing, c.experts);
    for (const [expertFlops, splits] of [[flops, true], [flops + 1, false], [Infinity, false]] as const) {
      const b = await createBackend({ threads: 2, check: true, relaxed: false, expertFlops });
      try {
        let out!: Tensor;
        const jobs = poolJobs(() => (out = b.kernels!.moe(c.x, c.routing, c.experts)));
        expect(jobs.some((j) => j.name === "moeExperts"), `expertFlops ${expertFlops}`).toBe(splits);
        expect(bits(out)).toEqual(bits(serial));
      } finally {
        await b.dispose();
      }
    }
  });

  it("cuts one busy expert's tokens into row blocks that the threads share, with the same bits", () => {
    const c = moeCase(5, 61, 32, 16, 1, 1, true); // every token to the one expert
    const serial = one.kernels!.moe(c.x, c.routing, c.experts);
    let split!: Tensor;
    const jobs = poolJobs(() => (split = two.kernels!.moe(c.x, c.routing, c.experts)));
    const chunks = jobs.filter((j) => j.name === "moeExperts").map((j) => j.chunks);
    expect(chunks.length).toBe(1);
    expect(chunks[0]).toBeGreaterThan(1);
    expect(bits(split)).toEqual(bits(serial));
  });

  it("stays on the calling thread when the used experts' weights do not fit the budget together, with the same bits", async () => {
    // An expert's gate is [64, 128]: 32 KiB packed; 40 KiB holds one weight, not an expert's three.
    const c = moeCase(11, 6, 128, 64, 4, 2, false);
    const small = await createBackend({ threads: 2, check: true, relaxed: false, expertFlops: 0, weightBudget: 40 * 1024 });
    try {
      let out!: Tensor;
      const jobs = poolJobs(() => (out = small.kernels!.moe(c.x, c.routing, c.experts)));
      expect(jobs.some((j) => j.name === "moeExperts")).toBe(false);
      expect(bits(out)).toEqual(bits(one.kernels!.moe(c.x, c.routing, c.experts)));
      expect(small.stats().weightBytes).toBeLessThanOrEqual(40 * 1024);
    } finally {
      await small.dispose();
    }
  });

  it("decodes the tiny preset with its experts split to the one-thread logits, bit for bit", () => {
    const model = initModel(preset("tiny"));
    const decode = (b: WasmBackend) => {
      const cache = createCache(model.config, { backend: b });
      const logits = [forward(model, [256, 65, 108, 105, 99, 101], { backend: b, cache }).logits];
      for (let i = 0; i < 4; i++) logits.push(forward(model, [50 + 7 * i], { backend: b, cache }).logits);
      releaseCache(cache);
      return logits.map(bits);
    };
    const serial = decode(one);
    let split!: Uint32Array[];
    const jobs = poolJobs(() => (split = decode(two)));
    expect(jobs.filter((j) => j.name === "moeExperts").length).toBeGreaterThan(0);
    split.forEach((step, i) => expect(step, `step ${i}`).toEqual(serial[i]));
  });

  it("refuses an expertFlops that is not a number ≥ 0, in one line", async () => {
    for (const bad of [-1, Number.NaN, "1e6"]) {
      const message = await createBackend({ threads: 1, expertFlops: bad as number }).then(
        () => "created",
        (error: Error) => error.message,
      );
      expect(message).toMatch(/^expertFlops: expected a number ≥ 0 \(Infinity: never split experts\), got /);
      expect(message).not.toContain("\n");
    }
  });
});
