// WebGPU's activation quantisation (gpu/kernels/quant.ts) against the reference's, bit for bit: every value the
// kernel writes must be code × scale with the reference's scale (src/quant/linear.ts quantizeTokenInt8,
// src/quant/fp8.ts quantizeActivationTiles) and the reference's code, including where x / scale lies exactly on a
// rounding midpoint (ties to even), over magnitudes from 1e-9 to 1e38, e4m3's subnormal range, scales next to powers
// of two, short last tiles and rows holding NaN or ±Inf. A float32 division alone is not enough: it misplaces about
// 1 code in 600,000 of bounded-normal inputs (the quotient rounds onto a midpoint), and a GPU's division may be off
// by more; the kernel settles every rounding decision by an exact integer comparison instead.

import { afterAll, describe, expect, it } from "vitest";
import { fakeQuantize } from "../gpu/kernels/quant.ts";
import { quantizeActivationTiles } from "../src/quant/fp8.ts";
import { quantizeTokenInt8 } from "../src/quant/linear.ts";
import { Random, randBounded } from "../src/random.ts";
import { webgpuOrReason } from "./webgpu-support.ts";

const { backend, reason } = await webgpuOrReason();
afterAll(async () => backend?.dispose());

/** The reference's activations as the quantised linear layers see them: code × scale, rounded to float32 once. */
function reference(x: Float32Array, n: number, fp8: boolean, block: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let at = 0; at < x.length; at += n) {
    const row = x.subarray(at, at + n);
    if (fp8) {
      const { values, scales } = quantizeActivationTiles(row, block);
      for (let i = 0; i < n; i++) out[at + i] = values[i]! * scales[Math.floor(i / block)]!;
    } else {
      const { codes, scale } = quantizeTokenInt8(row);
      for (let i = 0; i < n; i++) out[at + i] = codes[i]! * scale;
    }
  }
  return out;
}

async function onDevice(x: Float32Array, n: number, fp8: boolean, block: number): Promise<Float32Array> {
  const ctx = backend!.context;
  const input = { shape: [x.length / n, n], buffer: ctx.upload(x) };
  const out = fakeQuantize(ctx, input, fp8 ? { fp8: true, block } : { fp8: false });
  try {
    return await ctx.read(out.buffer, x.length);
  } finally {
    ctx.release(input.buffer, out.buffer);
  }
}

/** Every element equal to the reference's (NaN where it is NaN), else the count and the first difference. */
async function expectSame(x: Float32Array, n: number, fp8: boolean, block = 128) {
  const [want, got] = [reference(x, n, fp8, block), await onDevice(x, n, fp8, block)];
  let differ = 0, first = "";
  for (let i = 0; i < x.length; i++) {
    if (got[i] === want[i] || (Number.isNaN(got[i]) && Number.isNaN(want[i]))) continue;
    if (differ++ === 0) first = `element ${i}: x ${x[i]} gives ${got[i]}, the reference ${want[i]}`;
  }
  expect(differ, `${differ} of ${x.length} differ; ${first}`).toBe(0);
}

const rng = new Random(7);
const signed = () => (rng.uniform() < 0.5 ? -1 : 1);

describe.skipIf(!backend)(`webgpu activation quantisation${reason ? ` (skipped: ${reason})` : ""}`, () => {
  for (const fp8 of [false, true]) {
    const what = fp8 ? "e4m3 per tile" : "int8 per row";
    const qmax = fp8 ? 448 : 127;

    it(`${what}: bounded normals, rows of 1 to 1024 (short last tiles)`, async () => {
      for (const n of [1, 7, 128, 129, 257, 1024]) await expectSame(randBounded(rng, [32, n]).data, n, fp8);
    });

    it(`${what}: magnitudes from 2^-30 to 2^30 in one row, and near float32's largest`, async () => {
      const n = 200;
      await expectSame(Float32Array.from({ length: 64 * n }, () => signed() * rng.uniform() * 2 ** Math.floor(rng.uniform() * 60 - 30)), n, fp8);
      await expectSame(Float32Array.from({ length: 512 }, () => signed() * rng.uniform() * 3e38), 128, fp8);
    });

    it(`${what}: values on rounding midpoints round half to even`, async () => {
      // A row's largest value qmax · 2^j makes the scale 2^j exactly; the others sit on midpoints of the code grid
      // (int8: k + 1/2), or of e4m3's grid (eighths: every binade's midpoints from [2, 4) to [256, 448]).
      const n = 128, x = new Float32Array(64 * n);
      for (let r = 0; r < 64; r++) {
        const scale = 2 ** (r - 32);
        x[r * n] = qmax * scale;
        for (let i = 1; i < n; i++) {
          const v = fp8 ? (rng.int(8 * 448) - 4 * 448) / 8 : rng.int(254) - 127 + 0.5;
          x[r * n + i] = v * scale;
        }
      }
      await expectSame(x, n, fp8);
    });

    it(`${what}: values far below the row's largest (e4m3's subnormals, codes 0 and 1)`, async () => {
      const n = 128, x = new Float32Array(64 * n);
      for (let r = 0; r < 64; r++) {
        x[r * n] = qmax;
        for (let i = 1; i < n; i++) x[r * n + i] = signed() * (rng.int(64) / 2 ** 10 + rng.int(2) * 2 ** -11) * (fp8 ? 1 : 2 ** rng.int(10));
      }
      await expectSame(x, n, fp8);
    });

    it(`${what}: scales one or two ULP from a power of two`, async () => {
      const n = 16, x = new Float32Array(64 * n), bits = new Uint32Array(x.buffer);
      for (let r = 0; r < 64; r++) {
        const base = qmax * 2 ** ((r % 20) - 10);
        x[r * n] = base;
        bits[r * n]! += (r % 5) - 2;
        for (let i = 1; i < n; i++) x[r * n + i] = (randBounded(rng, [1]).data[0]! * base) / 3;
      }
      await expectSame(x, n, fp8, 16);
    });

    it(`${what}: zeros give zeros; a NaN or ±Inf makes its ${fp8 ? "tile" : "row"} NaN, as the reference's`, async () => {
      await expectSame(Float32Array.of(1, 2, NaN, 3, 0, 0, 0, 0, -0, 0, 0, 0, 1, Infinity, 2, 3, -Infinity, 1, 1, 1, 0.5, 1e-30, 2, 1), 4, fp8, 4);
    });
  }
});
