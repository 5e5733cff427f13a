import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bmm, embedding, gelu, layernorm, linear, logsumexp, matmul, rmsnorm, roundHalfEven, silu, softmax, swiglu,
} from "../src/ops.ts";
import { randBounded, Random } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";
import { thrown, seed } from "./helpers.ts";

const closeTo = (actual: ArrayLike<number>, expected: ArrayLike<number>, digits = 6) => {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(actual[i]).toBeCloseTo(expected[i]!, digits);
};
/** Sizes that matter to kernels: 1, primes, and either side of the SIMD width, 8 and 16. */
const size = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17);

describe("matmul, bmm, linear by hand", () => {
  it("multiplies [2, 3]·[3, 2]", () => {
    // [1 2 3; 4 5 6]·[7 8; 9 10; 11 12] = [1·7+2·9+3·11, 1·8+2·10+3·12; …] = [58 64; 139 154]
    const c = matmul(tensor([2, 3], [1, 2, 3, 4, 5, 6]), tensor([3, 2], [7, 8, 9, 10, 11, 12]));
    expect(c.shape).toEqual([2, 2]);
    expect([...c.data]).toEqual([58, 64, 139, 154]);
  });

  it("K = 1 is an outer product, and leading dimensions of a are batch", () => {
    expect([...matmul(tensor([2, 1], [2, 3]), tensor([1, 3], [1, 10, 100])).data]).toEqual([2, 20, 200, 3, 30, 300]);
    const c = matmul(tensor([2, 1, 2], [1, 0, 0, 1]), tensor([2, 2], [5, 6, 7, 8]));
    expect(c.shape).toEqual([2, 1, 2]);
    expect([...c.data]).toEqual([5, 6, 7, 8]);
    expect(matmul(tensor([2, 0]), tensor([0, 3])).data).toEqual(new Float32Array(6)); // K = 0: sums of nothing
  });

  it("bmm multiplies batch by batch", () => {
    const a = tensor([2, 1, 2], [1, 2, 3, 4]);
    const b = tensor([2, 2, 1], [5, 6, 7, 8]);
    expect([...bmm(a, b).data]).toEqual([1 * 5 + 2 * 6, 3 * 7 + 4 * 8]);
  });

  it("linear is x·Wᵀ + bias with W [out, in], rounded once", () => {
    const y = linear(tensor([1, 2], [1, 2]), tensor([3, 2], [1, 0, 0, 1, 1, 1]), tensor([3], [0.5, 0, -1]));
    expect([...y.data]).toEqual([1.5, 2, 2]);
    // x·w = 1 + 2^-30 is not a float32; adding the bias -1 before the one rounding keeps 2^-30 (rounding the product
    // first would give 1 - 1 = 0).
    const tiny = linear(tensor([1, 2], [1, 2 ** -30]), tensor([1, 2], [1, 1]), tensor([1], [-1]));
    expect(tiny.data[0]).toBe(2 ** -30);
  });

  it("accumulates in float64: 1e8 + 1 - 1e8 is 1", () => {
    const c = matmul(tensor([1, 3], [1e8, 1, -1e8]), tensor([3, 1], [1, 1, 1]));
    expect(c.data[0]).toBe(1);
  });
});

describe("softmax", () => {
  it("of a 2×3 matrix, by hand", () => {
    // Row [1, 2, 3]: e^(x-3) = [e^-2, e^-1, 1] over their sum 1.5032147; row of equal values: 1/3 each.
    const p = softmax(tensor([2, 3], [1, 2, 3, 5, 5, 5]));
    closeTo(p.data, [0.09003057, 0.24472847, 0.66524096, 1 / 3, 1 / 3, 1 / 3], 7);
  });

  it("hides masked and -Infinity entries; a fully hidden row is zeros, never NaN", () => {
    const x = tensor([3, 3], [1, 2, 3, 1, -Infinity, 1, 7, 8, 9]);
    const p = softmax(x, Uint8Array.from([1, 0, 1, 1, 1, 1, 0, 0, 0]));
    // Row 0 sees 1 and 3: [1/(1+e^2), 0, e^2/(1+e^2)]; row 1 sees the two 1s; row 2 sees nothing.
    closeTo(p.data, [0.11920292, 0, 0.88079708, 0.5, 0, 0.5, 0, 0, 0], 7);
    expect(p.data[1]).toBe(0);
    expect(p.data[4]).toBe(0);
  });

  it("is shift-invariant and does not overflow on large inputs", () => {
    const p = softmax(tensor([1, 2], [1000, 1001]));
    closeTo(p.data, [0.26894142, 0.73105858], 7);
  });

  it("property: rows sum to 1, hidden entries are exactly 0, fully hidden rows all 0, never NaN", () => {
    fc.assert(
      fc.property(seed, size, size, (s, rows, cols) => {
        const rng = new Random(s);
        const x = randBounded(rng, [rows, cols], 3);
        const visible = Uint8Array.from({ length: rows * cols }, () => rng.int(3) === 0 ? 0 : 1);
        if (rows > 1) visible.fill(0, 0, cols); // row 0 fully hidden
        const p = softmax(x, visible);
        for (let r = 0; r < rows; r++) {
          let sum = 0, anyVisible = false;
          for (let c = 0; c < cols; c++) {
            const v = p.data[r * cols + c]!;
            expect(Number.isNaN(v)).toBe(false);
            if (visible[r * cols + c]) {
              anyVisible = true;
              expect(v).toBeGreaterThan(0);
            } else {
              expect(v).toBe(0);
            }
            sum += v;
          }
          if (anyVisible) expect(Math.abs(sum - 1)).toBeLessThan(1e-6);
          else expect(sum).toBe(0);
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe("logsumexp", () => {
  it("is max + ln Σ exp(v - max): exact on equal values, no overflow at 1000, -Infinity entries add nothing", () => {
    expect(logsumexp([0, 0])).toBe(Math.log(2));
    expect(logsumexp([1000, 1000])).toBe(1000 + Math.log(2));
    expect(logsumexp([3, -Infinity])).toBe(3);
    expect(logsumexp([1, 2, 3])).toBeCloseTo(Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)), 14);
  });
});

describe("norms and activations by hand", () => {
  it("rmsnorm of [3, 4]: rms = sqrt((9 + 16)/2) = 3.5355339", () => {
    const y = rmsnorm(tensor([1, 2], [3, 4]), tensor([2], [1, 2]), 0);
    closeTo(y.data, [3 / Math.sqrt(12.5), (2 * 4) / Math.sqrt(12.5)], 6); // [0.8485281, 2.2627417]
    const withEps = rmsnorm(tensor([1, 2], [3, 4]), tensor([2], [1, 1]), 0.5);
    closeTo(withEps.data, [3 / Math.sqrt(13), 4 / Math.sqrt(13)], 7);
  });

  it("layernorm of [1, 3]: mean 2, variance 1", () => {
    closeTo(layernorm(tensor([1, 2], [1, 3]), tensor([2], [1, 1]), tensor([2], [0, 10]), 0).data, [-1, 11], 7);
  });

  it("silu, gelu and swiglu", () => {
    // silu(1) = 1/(1 + e^-1) = 0.7310586, silu(-1) = -0.2689414; gelu(1) = Φ(1) = 0.8413447 (exact form; more in test/erf.test.ts)
    closeTo(silu(tensor([3], [0, 1, -1])).data, [0, 0.7310586, -0.2689414], 7);
    closeTo(gelu(tensor([2], [0, 1])).data, [0, 0.8413447], 6);
    closeTo(swiglu(tensor([2], [1, -1]), tensor([2], [2, 3])).data, [2 * 0.7310586, 3 * -0.2689414], 6);
  });

  it("embedding picks rows", () => {
    const table = tensor([3, 2], [0, 1, 10, 11, 20, 21]);
    expect([...embedding(table, [2, 0, 2]).data]).toEqual([20, 21, 0, 1, 20, 21]);
  });

  it("roundHalfEven rounds ties to even, unlike Math.round", () => {
    const cases: [number, number][] = [
      [0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, -0], [-1.5, -2], [-2.5, -2], [-3.5, -4],
      [2.4, 2], [2.6, 3], [-2.6, -3], [7, 7], [2 ** 52 + 1, 2 ** 52 + 1],
    ];
    for (const [v, r] of cases) expect(roundHalfEven(v)).toBe(r);
    expect(Math.round(2.5)).toBe(3); // why the helper exists
  });
});

describe("properties of the products", () => {
  const transpose = (t: Tensor): Tensor => {
    const [r, c] = t.shape as [number, number];
    return tensor([c, r], Array.from({ length: r * c }, (_, i) => t.data[(i % r) * c + Math.floor(i / r)]!));
  };
  it("linear(x, W) equals matmul(x, Wᵀ) and bmm equals matmul batch by batch", () => {
    fc.assert(
      fc.property(seed, size, size, size, (s, M, K, N) => {
        const rng = new Random(s);
        const x = randBounded(rng, [M, K]);
        const w = randBounded(rng, [N, K]);
        expect(linear(x, w).data).toEqual(matmul(x, transpose(w)).data);
        const a = randBounded(rng, [2, M, K]);
        const b = randBounded(rng, [2, K, N]);
        const batched = bmm(a, b).data;
        for (let i = 0; i < 2; i++) {
          const one = matmul(tensor([M, K], a.data.subarray(i * M * K, (i + 1) * M * K)), tensor([K, N], b.data.subarray(i * K * N, (i + 1) * K * N)));
          expect(batched.subarray(i * M * N, (i + 1) * M * N)).toEqual(one.data);
        }
      }),
      { numRuns: 40 },
    );
  });
});

describe("op errors name the argument", () => {
  it("rejects mismatched shapes and bad hyper-parameters", () => {
    expect(thrown(() => matmul(tensor([3]), tensor([3, 1])))).toMatch(/^a: expected shape \[\.\.\., M, K\]/);
    expect(thrown(() => matmul(tensor([2, 3]), tensor([4, 2])))).toMatch(/^b: expected shape \[K=3, N\]/);
    expect(thrown(() => bmm(tensor([2, 2]), tensor([2, 2])))).toMatch(/^a:/);
    expect(thrown(() => bmm(tensor([2, 1, 3]), tensor([3, 3, 1])))).toMatch(/^b: expected shape \[b0=2, K=3, N\]/);
    expect(thrown(() => linear(tensor([1, 3]), tensor([2, 4])))).toMatch(/^weight: expected shape \[out=2, in=3\]/);
    expect(thrown(() => linear(tensor([1, 3]), tensor([2, 3]), tensor([3])))).toMatch(/^bias: expected shape \[out=2\]/);
    expect(thrown(() => softmax(tensor([2, 2]), new Uint8Array(3)))).toMatch(/^visible: expected 4 flags, got 3/);
    expect(thrown(() => rmsnorm(tensor([1, 3]), tensor([2])))).toMatch(/^weight: expected shape \[D=3\]/);
    expect(thrown(() => rmsnorm(tensor([1, 2]), tensor([2]), -1))).toMatch(/^eps:/);
    expect(thrown(() => layernorm(tensor([1, 2]), tensor([2]), tensor([3])))).toMatch(/^bias:/);
    expect(thrown(() => swiglu(tensor([2, 2]), tensor([2, 3])))).toMatch(/^up:/);
    expect(thrown(() => embedding(tensor([3, 2]), [1, 3]))).toMatch(/^ids\[1\]: expected an integer in \[0, 2\], got 3/);
  });
});
