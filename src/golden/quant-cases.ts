// Golden cases for every quantisation scheme: the codes and scales (exact on every backend) and the quantised
// linear layer's output (the backend's quantLinear kernel, within the matmul tolerance).

import { NotSupportedError, type Backend } from "../backend.ts";
import { quantizeFp8, type Fp8Weight } from "../quant/fp8.ts";
import { packInt4, quantizeInt, type IntBits } from "../quant/int.ts";
import type { QuantWeight } from "../quant/linear.ts";
import { FORMATS, roundArray, type FormatName } from "../quant/minifloat.ts";
import { Random, randBounded } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import type { GoldenCase, TensorMap } from "./case.ts";

const MATMUL_TOLERANCE = { rtol: 1e-5, atol: 1e-6, nmse: 1e-10 };

interface Scheme {
  name: string;
  quantize: (w: Tensor) => QuantWeight;
  activations?: boolean;
}

const SCHEMES: Scheme[] = [
  ...([8, 4] as IntBits[]).flatMap((bits) =>
    [32, 64, 128].map((group) => ({ name: `int${bits}.g${group}`, quantize: (w: Tensor) => quantizeInt(w, bits, group) })),
  ),
  { name: "int8.g32.dynamic", quantize: (w: Tensor) => quantizeInt(w, 8, 32), activations: true },
  { name: "fp8.e4m3.block128", quantize: (w: Tensor) => quantizeFp8(w) },
];

/** Codes as stored: int8 as I32 values, int4 packed bytes, fp8 bit patterns. */
function storedCodes(q: QuantWeight): TensorMap {
  if (q.scheme === "fp8") return fp8Outputs(q);
  const codes = q.scheme === "int4" ? packedRows(q.codes, q.shape) : { shape: [...q.shape], data: Int32Array.from(q.codes) };
  return { codes, scales: { shape: [q.shape[0], q.scales.length / q.shape[0]], data: q.scales } };
}

/** int4 codes as a checkpoint stores them (spec/quant.md): each row packed on its own, [out, ceil(in / 2)] bytes,
 *  so an odd row ends in a padding nibble rather than running into the next row. */
function packedRows(codes: Int8Array, [out, inDim]: readonly [number, number]): TensorMap[string] {
  const width = Math.ceil(inDim / 2);
  const data = new Uint8Array(out * width);
  for (let o = 0; o < out; o++) data.set(packInt4(codes.subarray(o * inDim, (o + 1) * inDim)), o * width);
  return { shape: [out, width], data };
}

function fp8Outputs(q: Fp8Weight): TensorMap {
  return { codes: { shape: [...q.shape], data: q.bits }, scales: { shape: [q.scales.length], data: q.scales } };
}

function schemeCase(scheme: Scheme, out: number, inDim: number, tokens: number, seed: number): GoldenCase {
  const config = { scheme: scheme.name, out, in: inDim, tokens, activations: scheme.activations ?? scheme.name.startsWith("fp8") };
  return {
    name: `quant.${scheme.name}.${out}x${inDim}`,
    component: "quant",
    config,
    seed,
    build() {
      const rng = new Random(seed);
      return { inputs: { x: randBounded(rng, [tokens, inDim]) }, params: { weight: randBounded(rng, [out, inDim], 0.02) } };
    },
    async run(backend: Backend, inputs, params) {
      const quantLinear = backend.asyncKernels.quantLinear;
      if (!quantLinear) throw new NotSupportedError(`${backend.name} has no quantLinear kernel`);
      const q = scheme.quantize(params.weight!);
      return { ...storedCodes(q), y: await quantLinear(inputs.x as Tensor, q, { activations: scheme.activations }) };
    },
    tolerance: { y: MATMUL_TOLERANCE, codes: { ...MATMUL_TOLERANCE, exact: true }, scales: { rtol: 0, atol: 0, nmse: 0 } },
  };
}

function roundingCase(format: FormatName, seed: number): GoldenCase {
  return {
    name: `quant.round.${format}`,
    component: "quant.rounding",
    config: { format, saturate: true },
    seed,
    build() {
      // Normal values across many binades, plus the edges: ties, overflow, subnormals, zeros and NaN.
      const rng = new Random(seed);
      const f = FORMATS[format];
      const edges = [0, -0, f.max, -f.max, f.max * 2, Infinity, -Infinity, NaN, 1 + 2 ** -(f.mantissaBits + 1), 2 ** (-f.bias - f.mantissaBits)];
      const spread = Array.from({ length: 118 }, () => rng.normal() * 2 ** rng.int(24) * 2 ** -12);
      return { inputs: { x: { shape: [128], data: Float32Array.from([...edges, ...spread]) } }, params: {} };
    },
    run: (_backend, inputs) => ({ y: { shape: [128], data: roundArray(FORMATS[format], inputs.x!.data as Float32Array) } }),
    tolerance: { y: { rtol: 0, atol: 0, nmse: 0, exact: true } }, // bits: -0 is not +0, and NaN stays NaN
  };
}

export function quantGoldenCases(): GoldenCase[] {
  return [
    ...SCHEMES.map((s, i) => schemeCase(s, 5, 70, 3, 900 + i)), // in = 70: a short last group everywhere
    schemeCase(SCHEMES.at(-1)!, 130, 200, 2, 950), // FP8 with partial 128-blocks on both axes
    schemeCase(SCHEMES.find((s) => s.name === "int4.g32")!, 5, 69, 3, 951), // int4.g32 at an odd width: every row ends in a padding nibble
    ...(["fp16", "bf16", "e4m3", "e5m2"] as FormatName[]).map((f, i) => roundingCase(f, 960 + i)),
  ];
}

