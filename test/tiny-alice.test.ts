// The trained checkpoint is what the reference computes: loaded by src/model/weights.ts and run by the reference
// forward, it scores the held-out text as train/train.ts recorded (on tfjs, float32) when it wrote the file.
//
// Tolerance 1e-3 nats/byte. Both sides run the same function on the same BF16-rounded weights; they differ in
// accumulation only (tfjs float32, the reference float64 rounded once per op), which moves logits by ~1e-6
// relative and the mean loss by less: measured 3e-7 on this slice (8e-7 on the whole held-out set). The discrete
// part, top-4 expert choice, could flip on a near-tie on another engine and change one token's loss by ~0.1, i.e.
// the slice's mean by ~4e-4: 1e-3 allows that and is still far below what one training step changes (~1e-2).

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { main } from "../src/cli/main.ts";
import { forward } from "../src/model/forward.ts";
import { preset } from "../src/model/presets.ts";
import { loadModel } from "../src/model/weights.ts";
import { chunks, splitText, TEXT_NAME, type Sequence } from "../train/data.ts";
import { capture } from "./helpers.ts";

const CHECKPOINT = fileURLToPath(new URL("../data/tiny-alice.safetensors", import.meta.url));
const summary = JSON.parse(readFileSync(new URL("../data/tiny-alice.json", import.meta.url), "utf8")) as {
  seqLen: number; evalLoss: number; trainLoss: number; uniformLoss: number; evalSlice: { chunks: number; loss: number }; steps: number;
  text: string; trainBytes: number; evalBytes: number;
};

/** Mean nats per predicted byte, softmax in float64. */
function referenceLoss(model: Awaited<ReturnType<typeof loadModel>>, sequences: Sequence[]): number {
  const V = model.config.vocab_size;
  let [sum, count] = [0, 0];
  for (const { input, targets } of sequences) {
    const logits = forward(model, input).logits.data;
    targets.forEach((target, t) => {
      const row = logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let z = 0;
      for (const v of row) z += Math.exp(v - max);
      sum += Math.log(z) + max - row[target]!;
      count++;
    });
  }
  return sum / count;
}

describe("data/tiny-alice.safetensors, the trained tiny checkpoint", () => {
  it("is the tiny preset, with learned router biases", async () => {
    const model = await loadModel(CHECKPOINT);
    expect(model.config).toEqual({ ...preset("tiny"), init_seed: model.config.init_seed });
    const bias = (model.weights.layers[1]!.mlp as { gate: { e_score_correction_bias: { data: Float32Array } } }).gate.e_score_correction_bias.data;
    expect(bias.some((b) => b !== 0)).toBe(true); // moved by the auxiliary-loss-free balancing
  });

  it("scores held-out text on the reference as the training script recorded, far below uniform", async () => {
    const model = await loadModel(CHECKPOINT);
    const slice = chunks(splitText().eval, summary.seqLen).slice(0, summary.evalSlice.chunks);
    const loss = referenceLoss(model, slice);
    expect(Math.abs(loss - summary.evalSlice.loss)).toBeLessThan(1e-3);
    expect(summary.uniformLoss).toBeCloseTo(Math.log(260), 10);
    expect(loss).toBeLessThan(summary.uniformLoss - 2); // ln 260 ≈ 5.56 nats: the model knows a lot of English
    expect(summary.evalLoss).toBeLessThan(summary.uniformLoss - 2);
  });

  it("was trained on the text train/data.ts splits: the whole book, cut where the summary says", () => {
    const { train, eval: held } = splitText();
    expect([summary.text, summary.trainBytes, summary.evalBytes]).toEqual([TEXT_NAME, train.length, held.length]);
    expect(new TextDecoder().decode(held)).toMatch(/^explain to you how it was done\. They had a large canvas bag/); // late in chapter XI
  });

  it("writes what README.md shows, greedy and at temperature 0.7", async () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const generate = async (...args: string[]) => {
      const c = capture();
      expect(await main(["generate", "--prompt", "Alice ", "--max-tokens", "60", ...args], c.io)).toBe(0);
      return c.out.join("\n");
    };
    const sampled = await generate("--temperature", "0.7");
    expect(readme).toContain("`npx tinyseek generate --prompt \"Alice \" --max-tokens 60 --temperature 0.7` writes word-shaped text,");
    expect(readme).toContain("```\n" + sampled.trimEnd() + "\n```");
    const greedy = (await generate()).split(" ").slice(0, 11).join(" ");
    expect(readme.replace(/\s+/g, " ")).toContain(`falls into a loop, "${greedy}"`);
  });
});
