// Golden cases for the reference core (spec/ops.md, spec/masks.md, spec/attention.md): the kernels every backend
// implements (matmul, linear, bmm, softmax, rmsnorm, rope, silu, swiglu, attention) at awkward sizes, and the mask
// builders as exact bits. Kernel cases go through `backend.asyncKernels`, so WASM and WebGPU run them all.
// Tolerances are per op and say why in spec/; each file holds at most a few thousand numbers.

import { retnetGammas } from "../attention/decay.ts";
import type { Backend } from "../backend.ts";
import type { Tolerance } from "../io/compare.ts";
import { blockLocal, causal, combine, maskFromSpec, padding, slidingWindow, type Mask, type MaskSpec } from "../masks.ts";
import { ln, randBounded, Random } from "../random.ts";
import { ropeFrequencies, yarnSoftmaxFactor, type RopeOptions } from "../rope.ts";
import type { Tensor } from "../tensor.ts";
import type { GoldenCase, TensorMap } from "./case.ts";

/** Float32 backends against the float64 reference; the measurements behind each bar are in spec/. */
export const CORE_TOLERANCE = {
  /** silu, swiglu: a handful of float32 ulps, with room for WGSL's exp (3 + 2|x| ulp) and division (2.5 ulp). */
  elementwise: { rtol: 2e-6, atol: 1e-7, nmse: 1e-12 },
  /** rmsnorm and softmax: one short reduction, then elementwise. */
  normalisation: { rtol: 4e-6, atol: 1e-7, nmse: 1e-11 },
  /** matmul, linear, bmm with K <= 64: float32 sums of up to 64 products of O(1) terms. */
  matmul: { rtol: 1e-5, atol: 1e-5, nmse: 1e-10 },
  /** rope at positions below 128: a float32 angle p·θ_i is off by up to 2^-24·128 rad. */
  rope: { rtol: 1e-5, atol: 2e-5, nmse: 1e-10 },
  /** attention over at most 16 keys: a dot product, a softmax and a weighted sum, each in float32. */
  attention: { rtol: 1e-5, atol: 1e-5, nmse: 1e-10 },
  exact: { rtol: 0, atol: 0, nmse: 0, exact: true },
} satisfies Record<string, Tolerance>;

/** Bounded normal inputs (never zero), drawn in the order given, from one seed. */
function draw(seed: number, shapes: Record<string, readonly number[]>, std = 1): Record<string, Tensor> {
  const rng = new Random(seed);
  return Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, randBounded(rng, shape, std)]));
}

const asTensor = (t: TensorMap[string] | undefined) => t as Tensor;

function kernelCase(
  name: string, seed: number, config: Record<string, unknown>, tolerance: Tolerance,
  build: () => { inputs: TensorMap; params?: Record<string, Tensor> },
  run: (kernels: Backend["asyncKernels"], inputs: TensorMap, params: Record<string, Tensor>) => Promise<Tensor> | Tensor,
  component = `ops.${name.split(".")[1]}`,
): GoldenCase {
  return {
    name, component, config, seed,
    build: () => {
      const { inputs, params = {} } = build();
      return { inputs, params };
    },
    run: async (backend, inputs, params) => ({ y: await run(backend.asyncKernels, inputs, params) }),
    tolerance: { y: tolerance },
  };
}

function matmulCases(): GoldenCase[] {
  // Sizes: K = 1, all ones, primes, exact multiples of 4/8/16 and one past them, and a batched left operand.
  const sizes: [number[], number, number][] = [
    [[1], 1, 1], [[3], 1, 5], [[5], 7, 3], [[4], 8, 16], [[17], 33, 9], [[2, 3], 16, 17], [[1], 64, 31],
  ];
  const matmul = sizes.map(([lead, K, N], n) => {
    const a = [...lead, K];
    return kernelCase(`core.matmul.${[...lead, K, N].join("x")}`, 100 + n, { a, b: [K, N] }, CORE_TOLERANCE.matmul,
      () => ({ inputs: draw(100 + n, { a, b: [K, N] }) }),
      (kernels, inputs) => kernels.matmul(asTensor(inputs.a), asTensor(inputs.b)));
  });
  const linear = ([[5, 13, 11], [1, 1, 1], [9, 32, 17]] as const).map(([M, K, N], n) =>
    kernelCase(`core.linear.${M}x${K}x${N}`, 120 + n, { x: [M, K], weight: [N, K] }, CORE_TOLERANCE.matmul,
      () => ({ inputs: draw(120 + n, { x: [M, K] }), params: draw(1120 + n, { weight: [N, K] }) }),
      (kernels, inputs, params) => kernels.linear(asTensor(inputs.x), params.weight!)));
  const bmm = ([[[3], 5, 7, 4], [[2, 2], 1, 9, 3]] as const).map(([lead, M, K, N], n) =>
    kernelCase(`core.bmm.${[...lead, M, K, N].join("x")}`, 140 + n, { a: [...lead, M, K], b: [...lead, K, N] }, CORE_TOLERANCE.matmul,
      () => ({ inputs: draw(140 + n, { a: [...lead, M, K], b: [...lead, K, N] }) }),
      (kernels, inputs) => kernels.bmm(asTensor(inputs.a), asTensor(inputs.b))));
  return [...matmul, ...linear, ...bmm];
}

function softmaxCases(): GoldenCase[] {
  const plain = kernelCase("core.softmax.4x17", 200, { x: [4, 17], std: 3 }, CORE_TOLERANCE.normalisation,
    () => ({ inputs: draw(200, { x: [4, 17] }, 3) }),
    (kernels, inputs) => kernels.softmax(asTensor(inputs.x)));
  // A random third of the entries hidden, row 0 fully hidden (zeros, never NaN), row 5 fully visible.
  const masked = kernelCase("core.softmax.masked.6x9", 201, { x: [6, 9], std: 3, visible: "input" }, CORE_TOLERANCE.normalisation,
    () => {
      const { x } = draw(201, { x: [6, 9] }, 3);
      const rng = new Random(1201);
      const visible = Uint8Array.from({ length: 54 }, (_, n) => (n < 9 ? 0 : n >= 45 ? 1 : rng.int(3) === 0 ? 0 : 1));
      return { inputs: { x: x!, visible: { shape: [6, 9], data: visible } } };
    },
    (kernels, inputs) => kernels.softmax(asTensor(inputs.x), inputs.visible!.data as Uint8Array));
  return [plain, masked];
}

function elementwiseCases(): GoldenCase[] {
  const rmsnorm = ([[5, 33, 1e-6], [1, 1, 1e-6], [3, 16, 1e-2]] as const).map(([N, D, eps], n) =>
    kernelCase(`core.rmsnorm.${N}x${D}${eps === 1e-6 ? "" : ".eps"}`, 300 + n, { x: [N, D], eps }, CORE_TOLERANCE.normalisation,
      () => ({ inputs: draw(300 + n, { x: [N, D] }), params: { weight: draw(1300 + n, { weight: [D] }).weight! } }),
      (kernels, inputs, params) => kernels.rmsnorm(asTensor(inputs.x), params.weight!, eps)));
  const silu = kernelCase("core.silu.3x37", 310, { x: [3, 37], std: 2 }, CORE_TOLERANCE.elementwise,
    () => ({ inputs: draw(310, { x: [3, 37] }, 2) }),
    (kernels, inputs) => kernels.silu(asTensor(inputs.x)));
  const swiglu = kernelCase("core.swiglu.3x37", 311, { gate: [3, 37], up: [3, 37], std: 2 }, CORE_TOLERANCE.elementwise,
    () => ({ inputs: draw(311, { gate: [3, 37], up: [3, 37] }, 2) }),
    (kernels, inputs) => kernels.swiglu(asTensor(inputs.gate), asTensor(inputs.up)));
  return [...rmsnorm, silu, swiglu];
}

function ropeCases(): GoldenCase[] {
  const cases: [string, RopeOptions, number][] = [
    ["core.rope.dim16", { dim: 16, theta: 10000 }, 3],
    ["core.rope.dim6.theta100", { dim: 6, theta: 100 }, 0],
    // tiny's YaRN (factor 4 over 256); positions up to 110 keep the float32 angle error bounded (spec/ops.md).
    ["core.rope.yarn.dim16", { dim: 16, theta: 10000, yarn: { factor: 4, originalMaxPosition: 256, maxPosition: 1024, betaFast: 32, betaSlow: 1 } }, 100],
  ];
  return cases.map(([name, rope, start], n) => {
    const T = 7;
    return kernelCase(name, 400 + n, { x: [2, 2, T, rope.dim], rope, positions: `${start}..${start + T - 1}` }, CORE_TOLERANCE.rope,
      () => ({
        inputs: {
          ...draw(400 + n, { x: [2, 2, T, rope.dim] }),
          positions: { shape: [T], data: Int32Array.from({ length: T }, (_, t) => start + t) },
        },
      }),
      (kernels, inputs) => kernels.rope(asTensor(inputs.x), inputs.positions!.data, ropeFrequencies(rope)));
  });
}

interface AttentionShape {
  B: number; H: number; Hkv: number; Tq: number; Tk: number; Dh: number; Dv: number;
}

function attentionCase(
  name: string, seed: number, s: AttentionShape, mask: MaskSpec | undefined,
  extra: { logGammas?: number[]; scale?: number; asWrittenGamma?: number } = {},
): GoldenCase {
  const config = { ...s, mask: mask ?? null, ...extra };
  return kernelCase(name, seed, config, CORE_TOLERANCE.attention,
    () => ({ inputs: draw(seed, { q: [s.B, s.H, s.Tq, s.Dh], k: [s.B, s.Hkv, s.Tk, s.Dh], v: [s.B, s.Hkv, s.Tk, s.Dv] }) }),
    (kernels, inputs) => {
      let k = asTensor(inputs.k);
      // The material's decay as written: key j (absolute position j) scaled by γ^j before the kernel
      // (spec/attention.md).
      if (extra.asWrittenGamma !== undefined) k = scaleKeys(k, extra.asWrittenGamma);
      return kernels.attention(asTensor(inputs.q), k, asTensor(inputs.v), { mask, logGammas: extra.logGammas, scale: extra.scale });
    },
    name.startsWith("core.decay") ? "attention.decay" : "attention");
}

function scaleKeys(k: Tensor, gamma: number): Tensor {
  const [B, Hkv, Tk, Dh] = k.shape as [number, number, number, number];
  const data = new Float32Array(k.data.length);
  for (let n = 0; n < B * Hkv * Tk; n++) {
    const factor = gamma ** (n % Tk);
    for (let d = 0; d < Dh; d++) data[n * Dh + d] = k.data[n * Dh + d]! * factor;
  }
  return { shape: [...k.shape], data };
}

function attentionCases(): GoldenCase[] {
  const mha = { B: 2, H: 2, Hkv: 2, Tq: 7, Tk: 7, Dh: 8, Dv: 8 };
  const gqa = { B: 1, H: 4, Hkv: 2, Tq: 9, Tk: 9, Dh: 16, Dv: 5 };
  const causalMask = { causal: true };
  // Values stored in a case's config come from arithmetic alone (ln, fround): engines' Math.log may differ in the
  // last bit (Node 20 and Deno do), and a config that changes makes the file stale.
  const yarnScale = Math.fround(yarnSoftmaxFactor({ factor: 4, originalMaxPosition: 256, maxPosition: 1024 }) / Math.sqrt(24));
  return [
    attentionCase("core.attention.mha.causal", 500, mha, causalMask),
    attentionCase("core.attention.gqa.causal", 501, gqa, causalMask),
    attentionCase("core.attention.mqa.nomask", 502, { ...gqa, Hkv: 1, Tq: 5, Tk: 11 }, undefined),
    // Padding: batch row 0 has 3 valid tokens, so its queries 3..7 have no visible key and output zeros.
    attentionCase("core.attention.mha.padding", 503, { ...mha, Tq: 8, Tk: 8 }, { causal: true, lengths: [3, 8] }),
    attentionCase("core.attention.gqa.window3", 504, { ...gqa, Tq: 10, Tk: 10 }, { causal: true, window: 3 }),
    attentionCase("core.attention.mha.segment4-overlap2", 505, { ...mha, Tq: 11, Tk: 11 }, { causal: true, segment: { size: 4, overlap: 2 } }),
    // T = 1 decoding after 12 cached tokens, and a chunk of 3 queries after 5 (the cache offset).
    attentionCase("core.attention.gqa.decode-t1", 506, { ...gqa, Tq: 1, Tk: 13 }, { causal: true, offset: 12 }),
    attentionCase("core.attention.mha.chunk-offset5", 507, { ...mha, Tq: 3, Tk: 8 }, { causal: true, offset: 5 }),
    attentionCase("core.attention.mha.scale-yarn", 508, { ...mha, Dh: 24 }, causalMask, { scale: yarnScale }),
    attentionCase("core.decay.relative.retnet", 520, { ...gqa, Tq: 12, Tk: 12 }, causalMask,
      { logGammas: retnetGammas(4).map((g) => ln(g ** 16)) }),
    attentionCase("core.decay.relative.decode", 521, { ...mha, Tq: 1, Tk: 9 }, { causal: true, offset: 8 }, { logGammas: [ln(0.8), ln(0.9)] }),
    attentionCase("core.decay.as-written", 522, { ...mha, Tq: 9, Tk: 9 }, causalMask, { asWrittenGamma: 0.8 }),
  ];
}

/** Mask builders as exact bits: any implementation of spec/masks.md must produce these grids. */
function maskCases(): GoldenCase[] {
  const cases: [string, Record<string, unknown>, () => Mask][] = [
    ["core.mask.causal.offset3", { kind: "causal", Tq: 4, Tk: 7, offset: 3 }, () => causal(4, 7, 3)],
    ["core.mask.padding", { kind: "padding", lengths: [2, 5, 0], T: 5 }, () => padding([2, 5, 0], 5)],
    ["core.mask.window3", { kind: "slidingWindow", T: 9, w: 3 }, () => slidingWindow(9, 3)],
    ["core.mask.block-local", { kind: "blockLocal", T: 11, segment: 4, overlap: 6 }, () => blockLocal(11, 4, 6)],
    ["core.mask.combine", { kind: "combine", parts: ["causal(6)", "slidingWindow(6, 4)", "padding([4, 6], 6)"] },
      () => combine(causal(6), slidingWindow(6, 4), padding([4, 6], 6))],
    ["core.mask.spec", { kind: "maskFromSpec", spec: { causal: true, offset: 2, window: 3, lengths: [4, 6] }, B: 2, Tq: 4, Tk: 6 },
      () => maskFromSpec({ causal: true, offset: 2, window: 3, lengths: [4, 6] }, 2, 4, 6)],
  ];
  return cases.map(([name, config, make], n) => ({
    name, component: "masks", config, seed: 600 + n,
    build: () => ({ inputs: {}, params: {} }),
    // Masks are host data every backend builds the same way: the reference code runs whatever the backend.
    run: () => {
      const m = make();
      return { mask: { shape: [...m.shape], data: m.data } };
    },
    tolerance: { mask: CORE_TOLERANCE.exact },
  }));
}

/** Every golden case of the reference core, in a stable order. */
export function coreGoldenCases(): GoldenCase[] {
  return [...matmulCases(), ...softmaxCases(), ...elementwiseCases(), ...ropeCases(), ...attentionCases(), ...maskCases()];
}
