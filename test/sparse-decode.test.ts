// What keeps an NSA decode step cheap without changing a number: maskedAttention in three kernel calls for every kv
// group equals the same products and softmax one kv group at a time, bit for bit, on the reference and WASM kernels;
// selectBlocks picks what
// sorting picks; a decode step of the model reads two values back per NSA layer.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { maskedAttention, transposed } from "../src/attention/masked.ts";
import { selectBlocks, type NsaBlocks } from "../src/attention/sparse-select.ts";
import { referenceBackend, type Backend } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { referenceDevice } from "../src/device/reference.ts";
import { reference, type Kernels } from "../src/kernels.ts";
import { createCache } from "../src/model/cache.ts";
import { forward } from "../src/model/forward.ts";
import { initModel } from "../src/model/weights.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";
import { createBackend } from "../wasm/backend.ts";
import { testConfig } from "./model-fixtures.ts";

let wasm: Awaited<ReturnType<typeof createBackend>>;
beforeAll(async () => {
  wasm = await createBackend({ threads: 1 });
});
afterAll(async () => wasm?.dispose());

const thrown = (f: () => unknown): string => {
  try {
    f();
  } catch (error) {
    return (error as Error).message;
  }
  return "nothing thrown";
};

/** One kv group at a time: its q rows against its keys (matmul), the softmax of its rows, then its values. */
function perGroup(q: Tensor, k: Tensor, v: Tensor, visible: Uint8Array, scale: number, kernels: Kernels) {
  const [B, H, Tq, Dh] = q.shape as [number, number, number, number];
  const [, Hkv, Tk] = k.shape as [number, number, number];
  const Dv = v.shape[3]!;
  const rows = (H / Hkv) * Tq;
  const out = new Float32Array(B * H * Tq * Dv), probs = new Float32Array(B * H * Tq * Tk);
  for (let u = 0; u < B * Hkv && Tk > 0; u++) {
    const dots = kernels.matmul({ shape: [rows, Dh], data: q.data.subarray(u * rows * Dh, (u + 1) * rows * Dh) },
      transposed({ shape: [Tk, Dh], data: k.data.subarray(u * Tk * Dh, (u + 1) * Tk * Dh) }));
    const p = kernels.softmax({ shape: dots.shape, data: dots.data.map((s) => s * scale) }, visible.subarray(u * rows * Tk, (u + 1) * rows * Tk));
    probs.set(p.data, u * rows * Tk);
    out.set(kernels.matmul(p, { shape: [Tk, Dv], data: v.data.subarray(u * Tk * Dv, (u + 1) * Tk * Dv) }).data, u * rows * Dv);
  }
  return { out: { shape: [B, H, Tq, Dv], data: out }, probs: { shape: [B, H, Tq, Tk], data: probs } };
}

describe("maskedAttention, every kv group at once", () => {
  const cases = fc.record({
    seed: fc.nat(2 ** 31), B: fc.integer({ min: 1, max: 2 }), Hkv: fc.integer({ min: 1, max: 3 }), group: fc.integer({ min: 1, max: 3 }),
    Tq: fc.integer({ min: 1, max: 4 }), Tk: fc.integer({ min: 0, max: 9 }), Dh: fc.constantFrom(2, 4, 8), Dv: fc.constantFrom(2, 6),
  });
  const draw = ({ seed, B, Hkv, group, Tq, Tk, Dh, Dv }: { seed: number; B: number; Hkv: number; group: number; Tq: number; Tk: number; Dh: number; Dv: number }) => {
    const rng = new Random(seed);
    const H = Hkv * group;
    const visible = Uint8Array.from({ length: B * H * Tq * Tk }, () => (rng.uniform() < 0.6 ? 1 : 0)); // rows with none visible too
    return { q: randBounded(rng, [B, H, Tq, Dh]), k: randBounded(rng, [B, Hkv, Tk, Dh]), v: randBounded(rng, [B, Hkv, Tk, Dv]), visible, scale: 1 / Math.sqrt(Dh) };
  };

  for (const [name, kernels] of [["reference", () => reference], ["WASM", () => wasm.kernels]] as const) {
    it(`equals one kv group at a time bit for bit on the ${name} kernels (GQA, batches, hidden keys, no keys)`, () => {
      fc.assert(fc.property(cases, (c) => {
        const { q, k, v, visible, scale } = draw(c);
        const got = maskedAttention(q, k, v, visible, scale, kernels() as Kernels);
        const want = perGroup(q, k, v, visible, scale, kernels() as Kernels);
        expect(got.out.shape).toEqual(want.out.shape);
        expect(got.probs.shape).toEqual(want.probs.shape);
        expect(Array.from(got.out.data)).toEqual(Array.from(want.out.data));
        expect(Array.from(got.probs.data)).toEqual(Array.from(want.probs.data));
      }), { numRuns: 60 });
    });
  }

  it("names a bad argument in one line", () => {
    const { q, k, v, visible } = draw({ seed: 1, B: 1, Hkv: 2, group: 2, Tq: 2, Tk: 3, Dh: 4, Dv: 2 });
    const cut = (t: Tensor, shape: number[]): Tensor => ({ shape, data: t.data.subarray(0, shape.reduce((a, n) => a * n, 1)) });
    const bad: [string, string, Tensor, Tensor, Tensor, Uint8Array, number][] = [
      ["k of another head size", "k", q, cut(k, [1, 2, 3, 2]), v, visible, 0.5],
      ["v of another length", "v", q, k, cut(v, [1, 2, 2, 2]), visible, 0.5],
      ["q of rank 3", "q", cut(q, [4, 2, 4]), k, v, visible, 0.5],
      ["kv heads that do not divide H", "k", q, cut(k, [1, 3, 1, 4]), cut(v, [1, 3, 1, 2]), visible, 0.5],
      ["too few flags", "visible", q, k, v, visible.subarray(1), 0.5],
      ["a scale that is not finite", "scale", q, k, v, visible, NaN],
      ["no k", "k", q, undefined as unknown as Tensor, v, visible, 0.5],
    ];
    for (const [what, argument, ...args] of bad) {
      expect(thrown(() => maskedAttention(...args, reference)), what).toMatch(new RegExp(`^${argument}: expected .+, got .+$`));
    }
    expect(thrown(() => maskedAttention(q, k, v, visible, 0.5, reference, new Float32Array(5))))
      .toBe("keysT: expected k's 24 values transposed, got 5");
  });
});

describe("selectBlocks", () => {
  /** The rule as spec/sparse-attention.md states it, by sorting: 0, own, own − 1, then the highest p_slc, ties to the lower index. */
  const bySorting = (pSlc: readonly number[], count: number, n: number): number[] => {
    if (count <= n) return Array.from({ length: count }, (_, j) => j);
    const rest = Array.from({ length: count - 3 }, (_, i) => i + 1).sort((x, y) => pSlc[y]! - pSlc[x]! || x - y);
    return [0, count - 2, count - 1, ...rest.slice(0, n - 3)].sort((x, y) => x - y);
  };

  it("picks what sorting picks, ties (few distinct scores, zeros) to the lower index", () => {
    fc.assert(fc.property(
      fc.integer({ min: 3, max: 8 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 80 }),
      fc.array(fc.constantFrom(0, 0.125, 0.25, 0.5, 1), { minLength: 30, maxLength: 30 }),
      (n, size, t, scores) => {
        const b: NsaBlocks = { block: size, stride: size, selectBlock: size, selectCount: n, window: 4 };
        const count = Math.floor(t / size) + 1;
        const pSlc = scores.slice(0, count).concat(Array(Math.max(0, count - 30)).fill(0));
        expect(selectBlocks(pSlc, t, b)).toEqual(bySorting(pSlc, count, n));
      },
    ), { numRuns: 300 });
  });
});

describe("an NSA decode step", () => {
  /** Values read back to the host during one decode step of a model of this attention kind, on counting reference ops. */
  const readsPerStep = (kind: "sparse" | "mha"): number => {
    const model = initModel(testConfig({ attention_kind: kind, num_key_value_heads: 2, init_std: 0.3 }));
    let reads = 0;
    const counting = { ...referenceDevice, read: (x: Tensor) => (reads++, referenceDevice.read(x)) };
    const backend: Backend = { ...referenceBackend, ops: opsOver(counting, reference) };
    const cache = createCache(model.config, { backend, capacity: 32 });
    forward(model, [256, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100], { backend, cache });
    reads = 0;
    forward(model, [33], { backend, cache });
    return reads;
  };

  it("reads back two values per NSA layer: what the host needs from x, and both device branches", () => {
    const layers = testConfig({}).num_hidden_layers;
    expect(readsPerStep("sparse") - readsPerStep("mha")).toBe(2 * layers);
  });
});
