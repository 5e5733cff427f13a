// Training runs the model's one forward (src/model/forward.ts) on tfjs kernels (train/tfjs-kernels.ts): after a
// few seeded training steps, the tfjs forward over the trained variables computes what the reference forward
// computes on the same weights (read back with Params.toModel): one sequence, several packed in one call, MLA's
// naive form, decoding through a growing cache, early exit. The gradient reaches every weight (the router's gate
// through the chosen experts' weights alone, α = 0), and the balance loss is V3's formula on the reference's routing.
//
// Tolerance: NMSE ≤ 1e-7 on the logits and the same greedy token at every position. Both sides run the same
// function on the same float32 weights and the same expert choices; they differ in accumulation only (tfjs float32,
// the reference float64 rounded once per op), which leaves the logits' NMSE near 5e-14. Wrong kernels measured:
// a routing weight left unnormalised 7e-4, a causal mask off by one 4e-7, a running row's update added to an exited
// one 7e-3; a rotary sign error moves it by 4e-9 only (q and k turn alike), so the rotary kernel has its own check.

import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../src/backend.ts";
import { runSync } from "../src/device/drive.ts";
import { referenceOps } from "../src/device/ops.ts";
import { createCache, type ModelCache } from "../src/model/cache.ts";
import { forward, forwardRows, type ForwardResult } from "../src/model/forward.ts";
import { preset } from "../src/model/presets.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { Random } from "../src/random.ts";
import { createTrace } from "../src/trace.ts";
import { sampleBatch, splitText } from "../train/data.ts";
import { sequenceBalance } from "../train/loss.ts";
import { Params } from "../train/params.ts";
import { tfjsForward, type TfValue } from "../train/tfjs-kernels.ts";
import { setUpTfjs } from "../train/tfjs.ts";
import { nmse } from "./helpers.ts";
import { trainStep } from "../train/trainer.ts";

const V = 260;
const text = splitText();
const tokensOf = (bytes: Uint8Array, at: number, n: number) => [256, ...bytes.subarray(at, at + n - 1)];
const first = tokensOf(text.eval, 0, 24);
const second = tokensOf(text.eval, 100, 13);


function argmaxRows(data: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / V; r++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (data[r * V + v]! > data[r * V + best]!) best = v;
    out.push(best);
  }
  return out;
}

/** The tfjs forward's logits (host copy) for these sequences, packed in one call. */
function tfjsLogits(params: Params, sequences: number[][]): Float32Array {
  const logits = tf.tidy(() => params.forward(sequences).logits.dataSync() as Float32Array);
  params.kernels.takeMoeCalls();
  return logits;
}

let trained: Params;
let reference: Model;
let initialGates: Float32Array[];
let losses: number[];

beforeAll(async () => {
  await setUpTfjs();
  const params = new Params(initModel(preset("tiny", { init_seed: 3 })));
  const gates = () => [1, 2, 3].map((l) => Float32Array.from(params.get(`model.layers.${l}.mlp.gate.weight`).dataSync()));
  initialGates = gates();
  const optimizer = tf.train.adam(0.01, 0.9, 0.95, 1e-8);
  const rng = new Random(3);
  // α = 0: nothing but the routing weights can carry a gradient to the gate.
  losses = [0, 1, 2].map(() => trainStep(params, optimizer, sampleBatch(rng, text.train, 2, 16), { alpha: 0, gamma: 0.01 }).loss);
  trained = params;
  reference = params.toModel();
});

describe("training's forward is the model's forward (tfjs kernels)", () => {
  it("trained: every weight moved, the router's gate through the routing weights, the biases by the balancing rule", () => {
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[2]!).toBeLessThan(losses[0]!);
    [1, 2, 3].forEach((l, i) => {
      const now = trained.get(`model.layers.${l}.mlp.gate.weight`).dataSync();
      expect(nmse({ data: now }, { data: initialGates[i]! })).toBeGreaterThan(1e-6);
      expect(trained.bias(l).some((b) => b !== 0)).toBe(true);
    });
  });

  it("one sequence: NMSE ≤ 1e-7 against the reference on the same weights, the same greedy tokens", () => {
    const want = forward(reference, first).logits.data;
    const got = tfjsLogits(trained, [first]);
    const error = nmse({ data: got }, { data: want });
    console.log(`tfjs vs reference, one sequence of ${first.length}: NMSE ${error.toExponential(2)}`);
    expect(error).toBeLessThanOrEqual(1e-7);
    expect(argmaxRows(got)).toEqual(argmaxRows(want));
  });

  it("two sequences packed in one call, each through its own cache, equal the reference's separate forwards", () => {
    const want = Float32Array.from([...forward(reference, first).logits.data, ...forward(reference, second).logits.data]);
    const got = tfjsLogits(trained, [first, second]);
    const error = nmse({ data: got }, { data: want });
    console.log(`tfjs vs reference, two sequences packed: NMSE ${error.toExponential(2)}`);
    expect(error).toBeLessThanOrEqual(1e-7);
    expect(argmaxRows(got)).toEqual(argmaxRows(want));
  });

  it("MLA naive (per-head cache) on tfjs equals the reference's absorbed form", () => {
    const naive = new Params({ config: { ...reference.config, mla_mode: "naive" }, weights: reference.weights });
    try {
      const want = forward(reference, first).logits.data;
      const got = tfjsLogits(naive, [first]);
      const error = nmse({ data: got }, { data: want });
      console.log(`tfjs naive MLA vs reference absorb: NMSE ${error.toExponential(2)}`);
      expect(error).toBeLessThanOrEqual(1e-7);
      expect(argmaxRows(got)).toEqual(argmaxRows(want));
    } finally {
      naive.dispose();
    }
  });

  it("decoding through a growing cache (rows written after the first, queries at an offset) equals the reference", () => {
    const prompt = first.slice(0, 12);
    const want = forward(reference, prompt).logits.data;
    const got = tf.tidy(() => {
      const { ops } = trained;
      const cache = createCache(reference.config, { backend: { ops } as unknown as Backend }) as unknown as ModelCache<TfValue>;
      const parts = [prompt.slice(0, 5), prompt.slice(5, 9), ...prompt.slice(9).map((t) => [t])];
      return parts.flatMap((tokens) => [...runSync(forwardRows(ops, trained.model, [{ tokens, cache, own: false }], { exitThreshold: null }), ops.name).logits.data]);
    });
    trained.kernels.takeMoeCalls();
    const error = nmse({ data: got }, { data: want });
    console.log(`tfjs decode (5 + 4 + 1 + 1 …) vs reference prefill: NMSE ${error.toExponential(2)}`);
    expect(error).toBeLessThanOrEqual(1e-7);
    expect(argmaxRows(got)).toEqual(argmaxRows(want));
  });

  it("early exit (rows gathered for the feed-forward, updates added to the running rows only) equals the reference", () => {
    // A threshold in the widest gap between the first exit check's confidences near their median: some tokens
    // exit, and no confidence sits near it (float32 against float64 cannot change a decision).
    const trace = createTrace("layers.0.exit.confidence");
    forward(reference, first, { exitThreshold: 2, trace }); // nobody exits: the confidences are recorded
    const sorted = [...trace.tensors.get("layers.0.exit.confidence")!.data].sort((a, b) => a - b);
    let best = 0;
    for (let i = Math.floor(sorted.length / 4); i < (3 * sorted.length) / 4; i++) if (sorted[i + 1]! - sorted[i]! > sorted[best + 1]! - sorted[best]!) best = i;
    const exitThreshold = (sorted[best]! + sorted[best + 1]!) / 2;
    const want = forward(reference, first, { exitThreshold });
    let got!: ForwardResult;
    tf.tidy(() => {
      got = tfjsForward(trained.ops, trained.model, [first], { exitThreshold }).result; // host arrays: outlive the scope
    });
    trained.kernels.takeMoeCalls();
    expect([...got.exitLayers]).toEqual([...want.exitLayers]);
    expect(new Set(want.exitLayers).size).toBeGreaterThan(1); // some exited, some ran on
    const error = nmse({ data: got.logits.data }, { data: want.logits.data });
    console.log(`tfjs early exit (layers run: ${[...want.exitLayers].join(" ")}) vs reference: NMSE ${error.toExponential(2)}`);
    expect(error).toBeLessThanOrEqual(1e-7);
  });

  it("rotary positions: the kernel equals the reference's at positions past 0 (a sign error barely moves the logits)", () => {
    const rng = new Random(5);
    const x = { shape: [2, 6, 16], data: Float32Array.from({ length: 192 }, () => rng.normal()) };
    const positions = Int32Array.from([7, 8, 9, 30, 31, 500]);
    const freqs = Float64Array.from({ length: 8 }, (_, i) => 10000 ** (-i / 8));
    const want = referenceOps.rope(x, positions, freqs).data;
    const got = tf.tidy(() => trained.ops.read(trained.ops.rope(trained.ops.upload(x), positions, freqs)) as Float32Array);
    expect(nmse({ data: got }, { data: want })).toBeLessThan(1e-12);
  });

  it("the sequence-wise balance loss is V3's Σ f_i·P_i on the reference's scores and choices, averaged over sequences", () => {
    const sequences = [first, second];
    const got = tf.tidy(() => {
      trained.forward(sequences);
      const calls = trained.kernels.takeMoeCalls();
      expect(calls).toHaveLength(3); // layers 1-3 are MoE
      return sequenceBalance(calls, sequences.map((s) => s.length)).dataSync()[0]!;
    });
    const { n_routed_experts: E, num_experts_per_tok: k } = reference.config;
    let want = 0;
    for (const tokens of sequences) {
      const trace = createTrace(["layers.*.mlp.router.scores", "layers.*.mlp.router.indices"]);
      forward(reference, tokens, { trace });
      const T = tokens.length;
      for (const l of [1, 2, 3]) {
        const scores = trace.tensors.get(`layers.${l}.mlp.router.scores`)!.data;
        const chosen = trace.tensors.get(`layers.${l}.mlp.router.indices`)!.data;
        const count = new Float64Array(E);
        chosen.forEach((e) => count[e]++);
        for (let e = 0; e < E; e++) {
          let P = 0;
          for (let t = 0; t < T; t++) {
            let sum = 0;
            for (let j = 0; j < E; j++) sum += scores[t * E + j]!;
            P += scores[t * E + e]! / sum / T;
          }
          want += ((E / (k * T)) * count[e]! * P) / sequences.length;
        }
      }
    }
    expect(Math.abs(got - want) / want).toBeLessThan(1e-5);
  });
});
