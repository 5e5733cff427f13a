// Golden cases for the adapters (spec/adapters.md). LoRA runs the way the model applies an unmerged LoRA: a hooked
// weight through the backend's checked `linear` (src/device/ops.ts: x·Wᵀ + (x·Aᵀ)·B'ᵀ with B' = (alpha/r)·B
// scattered into the rows it writes), so every backend computes it on its own kernels; the merged weight W + ΔW
// is the reference's, exact. The bottleneck adapter runs on the host on every backend, as the forward applies it
// (src/model/forward.ts), so its output pins the reference's numbers for kernels written elsewhere.

import { bottleneck, mergeLora, type AdapterActivation, type Lora } from "../adapters.ts";
import type { Tolerance } from "../io/compare.ts";
import type { HookedWeight } from "../model-adapters.ts";
import { randBounded, Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import type { GoldenCase } from "./case.ts";

/** Two float32 matmuls of K <= 24 and an add: the core's matmul bar (spec/ops.md). */
const LINEAR: Tolerance = { rtol: 1e-5, atol: 1e-5, nmse: 1e-10 };
const EXACT: Tolerance = { rtol: 0, atol: 0, nmse: 0, exact: true };

interface LoraSpec {
  name: string;
  tokens: number;
  in: number;
  out: number;
  rank: number;
  alpha: number;
  /** The output rows the LoRA writes (MLA's value rows of kv_b_proj), or all of them. */
  rows?: number[];
}

/** kv_b_proj's value rows for H heads of [k_nope (dn); v (dv)]: h·(dn + dv) + dn + i (src/lora.ts). */
const valueRows = (H: number, dn: number, dv: number) => Array.from({ length: H * dv }, (_, i) => Math.floor(i / dv) * (dn + dv) + dn + (i % dv));

const LORAS: LoraSpec[] = [
  { name: "r4.4x24x20", tokens: 4, in: 24, out: 20, rank: 4, alpha: 16 },
  { name: "rows.r2.3x12x10", tokens: 3, in: 12, out: 10, rank: 2, alpha: 8, rows: valueRows(2, 3, 2) },
];

function loraCase(spec: LoraSpec, seed: number): GoldenCase {
  const width = spec.rows?.length ?? spec.out;
  return {
    name: `adapters.lora.${spec.name}`,
    component: "adapters.lora",
    config: { tokens: spec.tokens, in: spec.in, out: spec.out, rank: spec.rank, alpha: spec.alpha, rows: spec.rows ?? null },
    seed,
    build() {
      const rng = new Random(seed);
      // B is drawn, not zero: a fresh LoRA (B = 0) changes nothing and would check nothing.
      return {
        inputs: { x: randBounded(rng, [spec.tokens, spec.in]) },
        params: {
          weight: randBounded(rng, [spec.out, spec.in], 1 / Math.sqrt(spec.in)),
          "lora_A.weight": randBounded(rng, [spec.rank, spec.in], 1 / Math.sqrt(spec.in)),
          "lora_B.weight": randBounded(rng, [width, spec.rank], 0.5),
        },
      };
    },
    async run(backend, inputs, params) {
      const base = params.weight!;
      const lora: Lora = {
        rank: spec.rank, alpha: spec.alpha, A: params["lora_A.weight"]!, B: params["lora_B.weight"]!,
        ...(spec.rows ? { rows: Int32Array.from(spec.rows) } : {}),
      };
      const merged = mergeLora(base, lora);
      const hooked: HookedWeight = { shape: base.shape, data: merged.data, lora: { base, lora } };
      const ops = backend.ops;
      const x = ops.upload(inputs.x as Tensor);
      const y = ops.linear(x, hooked);
      try {
        return { y: { shape: [...y.shape], data: Float32Array.from(await ops.read(y)) }, merged };
      } finally {
        ops.release(x, y);
      }
    },
    tolerance: { y: LINEAR, merged: EXACT },
  };
}

interface BottleneckSpec {
  tokens: number;
  D: number;
  size: number;
  activation: AdapterActivation;
}

const BOTTLENECKS: BottleneckSpec[] = [
  { tokens: 5, D: 16, size: 4, activation: "gelu" },
  { tokens: 3, D: 12, size: 5, activation: "silu" },
  { tokens: 3, D: 12, size: 5, activation: "relu" },
];

function bottleneckCase(spec: BottleneckSpec, seed: number): GoldenCase {
  return {
    name: `adapters.bottleneck.${spec.activation}.${spec.tokens}x${spec.D}.b${spec.size}`,
    component: "adapters.bottleneck",
    config: { ...spec },
    seed,
    build() {
      const rng = new Random(seed);
      // up is drawn, not zero: a fresh adapter is the identity and would check nothing.
      return {
        inputs: { x: randBounded(rng, [spec.tokens, spec.D]) },
        params: { "down.weight": randBounded(rng, [spec.size, spec.D], 1 / Math.sqrt(spec.D)), "up.weight": randBounded(rng, [spec.D, spec.size], 0.5) },
      };
    },
    run(_backend, inputs, params) {
      return { y: bottleneck(inputs.x as Tensor, { down: params["down.weight"]!, up: params["up.weight"]!, activation: spec.activation }) };
    },
    tolerance: { y: LINEAR },
  };
}

export function adapterGoldenCases(): GoldenCase[] {
  return [
    ...LORAS.map((spec, i) => loraCase(spec, 6100 + i)),
    ...BOTTLENECKS.map((spec, i) => bottleneckCase(spec, 6200 + i)),
  ];
}
