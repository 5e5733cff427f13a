// Trains the `tiny` preset on data/alice.txt and writes data/tiny-alice.safetensors (checkpoint names,
// BF16) and data/tiny-alice.json (what was run and what it reached). `npm run train -- --help` lists the options.
// The model is the project's one forward (src/model/forward.ts) on tfjs kernels (train/tfjs-kernels.ts: tfjs-core
// on tfjs-backend-wasm), which compute the gradients; tfjs runs Adam (train/trainer.ts). Init and batch order come from
// src/random.ts, so a run is the same on one machine. Expert balance: DeepSeek-V3's auxiliary-loss-free bias
// (V3 technical report, arXiv 2412.19437, §2.1.2: after each step, the bias of an overloaded expert falls by γ, of
// an underloaded one rises by γ; src/moe/balance.ts) and its small sequence-wise balance loss (α, same section).
// V3 used γ = 0.001 and α = 0.0001 (§4.2) over millions of steps; our few hundred steps need γ = 0.01 for the bias
// to move as far as the sigmoid scores do (γ = 0.002 left one expert chosen by every token after 20 steps).
// The budget is ten minutes on two shared cores (run with nice -n 19); the defaults fit it, and --minutes stops a
// run early on a busier machine (the summary then records fewer steps than planned, and the run depends on load).

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { preset } from "../src/model/presets.ts";
import { initModel, modelFromSafetensors, modelToSafetensors, type Model } from "../src/model/weights.ts";
import { Random } from "../src/random.ts";
import { chunks, sampleBatch, splitText, TEXT_NAME } from "./data.ts";
import { Params } from "./params.ts";
import { setUpTfjs } from "./tfjs.ts";
import { meanLoss, trainStep } from "./trainer.ts";

const HELP = `usage: npm run train -- [--steps N] [--batch B] [--seq T] [--lr LR] [--seed S] [--gamma G] [--alpha A] [--out FILE]

  --steps 300     optimiser steps            --batch 8      sequences a step
  --seq 128       bytes a sequence           --lr 0.01      Adam's peak rate (warm-up, then cosine to a tenth)
  --seed 1        init and batch order       --gamma 0.01   bias update per step (V3 §2.1.2)
  --alpha 0.0001  sequence-wise balance loss (V3's value)
  --eval-every 50 --out data/tiny-alice.safetensors (the summary goes beside it, .json)
  --minutes 9     stop early if the steps take longer (a loaded machine); the summary records the steps run`;

const { values: args } = parseArgs({
  options: {
    steps: { type: "string", default: "300" }, batch: { type: "string", default: "8" }, seq: { type: "string", default: "128" },
    lr: { type: "string", default: "0.01" }, seed: { type: "string", default: "1" }, gamma: { type: "string", default: "0.01" },
    alpha: { type: "string", default: "0.0001" }, "eval-every": { type: "string", default: "50" }, minutes: { type: "string", default: "9" },
    out: { type: "string", default: "data/tiny-alice.safetensors" }, help: { type: "boolean" },
  },
});
if (args.help) {
  console.log(HELP);
  process.exit(0);
}
const [steps, batch, seq, peakLr, seed, gamma, alpha, evalEvery, minutes] =
  (["steps", "batch", "seq", "lr", "seed", "gamma", "alpha", "eval-every", "minutes"] as const).map((k) => Number(args[k]));

await setUpTfjs();

const EVAL_SLICE_CHUNKS = 2; // test/tiny-alice.test.ts checks these on the reference, within its time budget
const split = splitText();
const evalSet = chunks(split.eval, seq);
const config = preset("tiny", { init_seed: seed });
const params = new Params(initModel(config));
const rng = new Random(seed);
const optimizer = tf.train.adam(peakLr, 0.9, 0.95, 1e-8);
const warmup = Math.max(1, Math.min(50, Math.floor(steps / 10)));
const rate = (step: number) =>
  step < warmup ? (peakLr * (step + 1)) / warmup : peakLr * (0.1 + 0.45 * (1 + Math.cos((Math.PI * (step - warmup)) / (steps - warmup))));

console.log(`training tiny on ${split.train.length} bytes, evaluating on ${split.eval.length}: ${steps} steps of ${batch}×${seq} bytes, seed ${seed}`);
const curve: { step: number; train: number; eval?: number; maxVio: number }[] = [];
const started = performance.now();
let recent: number[] = [];
let stepsRun = 0;
for (let step = 0; step < steps; step++) {
  if ((performance.now() - started) / 60000 > minutes) break; // the machine is busier than the defaults assume
  (optimizer as unknown as { learningRate: number }).learningRate = rate(step); // tfjs's Adam reads it each step
  const sequences = sampleBatch(rng, split.train, batch, seq);
  const { loss, loads } = trainStep(params, optimizer, sequences, { alpha, gamma });
  recent.push(loss);
  stepsRun = step + 1;
  const timeUp = (performance.now() - started) / 60000 > minutes;
  if ((step + 1) % evalEvery === 0 || step + 1 === steps || timeUp) {
    const point = { step: step + 1, train: mean(recent), eval: meanLoss(params, evalSet), maxVio: maxViolation(loads) };
    curve.push(point);
    recent = [];
    console.log(`step ${point.step}  train ${point.train.toFixed(3)}  eval ${point.eval.toFixed(3)} nats/byte  MaxVio ${point.maxVio.toFixed(2)}  ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
}
const seconds = (performance.now() - started) / 1000;

// Rounded to BF16 and read back: every figure recorded below is measured on the weights the file holds.
const bytes = modelToSafetensors(params.toModel(), { dtype: "BF16" });
const rounded: Model = modelFromSafetensors(bytes);
const saved = new Params(rounded);
const summary = {
  checkpoint: args.out,
  preset: "tiny",
  text: TEXT_NAME,
  trainBytes: split.train.length,
  evalBytes: split.eval.length,
  evalSplit: "bytes after the first line break past 90 % of the file",
  steps: stepsRun, stepsPlanned: steps, batch, seqLen: seq, tokensSeen: stepsRun * batch * seq, seed, peakLr, gamma, alpha,
  dtype: "BF16",
  trainLoss: meanLoss(saved, chunks(split.train, seq)),
  evalLoss: meanLoss(saved, evalSet),
  evalSlice: { chunks: EVAL_SLICE_CHUNKS, loss: meanLoss(saved, evalSet.slice(0, EVAL_SLICE_CHUNKS)) }, // what the test recomputes
  units: "nats per byte (mean cross-entropy of each byte given <bos> and the bytes before it in its chunk of seqLen)",
  uniformLoss: Math.log(config.vocab_size),
  curve,
  seconds: Math.round(seconds),
  machine: `${(await import("node:os")).cpus()[0]?.model ?? "cpu"}, ${(await import("node:os")).cpus().length} cores, tfjs-backend-wasm ${tf.version_core}`,
  command: ["nice -n 19 npm run train", ...(process.argv.length > 2 ? ["--", ...process.argv.slice(2)] : [])].join(" "),
};
writeFileSync(args.out!, modelToSafetensors(rounded, { dtype: "BF16", metadata: { training: JSON.stringify({ ...summary, curve: undefined }) } }));
writeFileSync(args.out!.replace(/\.safetensors$/, ".json"), JSON.stringify(summary, null, 2) + "\n");
console.log(`wrote ${args.out} (${(bytes.length / 1e6).toFixed(1)} MB): train ${summary.trainLoss.toFixed(4)}, eval ${summary.evalLoss.toFixed(4)} nats/byte, ${summary.seconds} s`);

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** DeepSeek's balance metric on the last batch, worst MoE layer: max load / mean load - 1. */
function maxViolation(loads: Map<number, number[]>): number {
  let worst = 0;
  for (const load of loads.values()) worst = Math.max(worst, Math.max(...load) / mean(load) - 1);
  return worst;
}
