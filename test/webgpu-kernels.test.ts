// WebGPU kernel cases the shared property suite does not reach: the workgroup-memory tiers of fused attention
// (head sizes up to 256 shrink the query tile to 8 and 4 rows), long reductions (spec/golden.md's 1e-10 bar at
// K = 1024 and 600 keys), a decode step over many key tiles, and dispatches past 65535 workgroups, which fold
// into a second grid dimension (elementwise, row kernels and the GEMV path).

import { afterAll, describe, expect, it } from "vitest";
import { reference } from "../src/kernels.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";
import { compare, webgpuOrReason } from "./webgpu-support.ts";

const { backend, reason } = await webgpuOrReason();
afterAll(async () => backend?.dispose());

const rng = new Random(11);
const r = (shape: number[]) => randBounded(rng, shape);

/** spec/golden.md's bars: NMSE for the whole tensor, and no element outside atol + rtol·|ref|. */
function expectClose(out: Tensor, ref: Tensor, nmse: number, rtol = 1e-5, atol = 5e-6) {
  const e = compare(out, ref, rtol, atol);
  expect(e.bad, e.first).toBe(0);
  expect(e.nmse).toBeLessThan(nmse);
}

describe.skipIf(!backend)(`webgpu kernels beyond the property suite${reason ? ` (skipped: ${reason})` : ""}`, () => {
  for (const [Dh, Dv] of [[100, 64], [192, 128], [7, 256]] as const) {
    it(`attention with Dh=${Dh}, Dv=${Dv} (a smaller query tile), GQA and a window`, async () => {
      const q = r([1, 4, 19, Dh]), k = r([1, 2, 37, Dh]), v = r([1, 2, 37, Dv]);
      const options = { mask: { window: 11, offset: 18 } };
      expectClose(await backend!.asyncKernels.attention(q, k, v, options), reference.attention(q, k, v, options), 1e-10);
    });
  }

  it("a decode step over 600 cached keys with decay", async () => {
    const q = r([2, 4, 1, 32]), k = r([2, 1, 600, 32]), v = r([2, 1, 600, 32]);
    const options = { mask: { causal: true, offset: 599, lengths: [600, 451] }, logGammas: [-0.01, -0.02, -0.05, -0.1] };
    expectClose(await backend!.asyncKernels.attention(q, k, v, options), reference.attention(q, k, v, options), 1e-10);
  });

  it("a long reduction: matmul with K = 1024", async () => {
    const a = r([33, 1024]), b = r([1024, 40]);
    expectClose(await backend!.asyncKernels.matmul(a, b), reference.matmul(a, b), 1e-10, 1e-5, 4e-4);
  });

  it("the GEMV path folds more than 65535 output columns into two grid rows", async () => {
    const x = r([3, 5]), w = r([70_001, 5]);
    expectClose(await backend!.asyncKernels.linear(x, w), reference.linear(x, w), 1e-11, 1e-5, 2e-5);
  });

  it("element-wise and row kernels past 65535 workgroups", async () => {
    const x = r([70_000, 65]); // 4.55M elements: 71094 workgroups of 64
    expectClose(await backend!.asyncKernels.silu(x), reference.silu(x), 1e-12, 2e-6, 2e-7);
    const rows = r([70_001, 3]);
    expectClose(await backend!.asyncKernels.softmax(rows), reference.softmax(rows), 1e-11, 4e-6, 1e-7);
  });
});
