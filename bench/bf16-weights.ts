// BF16 weight storage on WASM (spec/backends.md, "BF16 weights"): the shipped BF16 checkpoint's decode speed and
// resident weight bytes with weights kept as BF16 and forced to float32, 1 thread, side by side in one run.
//
//   npx tsx bench/bf16-weights.ts [--rounds 9] [--steps 48] [--weights data/tiny-alice.safetensors | --preset small]
//
// --preset: a random model of that preset written as BF16 and read back, as a BF16 checkpoint of that size would be.
// Each setting first decodes whole sessions for a second, untimed: V8 compiles WASM with its baseline compiler first
// and the forward's TypeScript tiers up over hundreds of calls. A round runs each setting in turn: a fresh cache fed a 32-byte prompt (untimed), then `steps` single tokens timed
// one by one; a setting's figure is the median over rounds of each round's median, so that other processes' load
// falls on both alike, and the ratio is also taken round by round. Prints the load average: the machine is shared.

import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { forward } from "../src/model/forward.ts";
import { preset } from "../src/model/presets.ts";
import { initModel, loadModel, modelFromSafetensors, modelToSafetensors } from "../src/model/weights.ts";
import { createBackend, type WasmBackend } from "../wasm/backend.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "9" },
    steps: { type: "string", default: "48" },
    weights: { type: "string", default: fileURLToPath(new URL("../data/tiny-alice.safetensors", import.meta.url)) },
    preset: { type: "string" },
  },
});
const rounds = Number(values.rounds), steps = Number(values.steps);
for (const [name, v] of [["--rounds", rounds], ["--steps", steps]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: expected an integer ≥ 1, got ${JSON.stringify(String(v))}`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const quartiles = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return `${sorted[Math.floor((sorted.length - 1) / 4)]!.toFixed(3)}–${sorted[Math.ceil((3 * (sorted.length - 1)) / 4)]!.toFixed(3)}`;
};
const model = values.preset
  ? modelFromSafetensors(modelToSafetensors(initModel(preset(values.preset)), { dtype: "BF16" }))
  : await loadModel(values.weights!);
const prompt = Array.from(new TextEncoder().encode("Alice was beginning to get very tired of sitting by"), (b) => b).slice(0, 32);
const settings: { name: string; backend: WasmBackend; perRound: number[] }[] = [
  { name: "BF16 weights", backend: await createBackend({ threads: 1, bf16Weights: true }), perRound: [] },
  { name: "float32 weights", backend: await createBackend({ threads: 1, bf16Weights: false }), perRound: [] },
];
const before = loadavg();
/** One fresh cache fed the prompt (untimed), then `steps` single tokens: the median step in ms. */
function session(s: (typeof settings)[number]): number {
  const cache = createCache(model.config, { backend: s.backend, capacity: prompt.length + steps });
  try {
    forward(model, prompt, { backend: s.backend, cache });
    const times: number[] = [];
    for (let step = 0; step < steps; step++) {
      const started = performance.now();
      forward(model, [prompt[step % prompt.length]!], { backend: s.backend, cache });
      times.push(performance.now() - started);
    }
    return median(times);
  } finally {
    releaseCache(cache);
  }
}
for (const s of settings) { // warm-up, untimed (it also packs the weights)
  const started = performance.now();
  do session(s); while (performance.now() - started < 1000);
}
for (let round = 0; round < rounds; round++) for (const s of settings) s.perRound.push(session(s));
const after = loadavg();
console.log(`load average before ${before.map((x) => x.toFixed(2)).join(" ")}, after ${after.map((x) => x.toFixed(2)).join(" ")}; ${rounds} rounds × ${steps} tokens`);
for (const s of settings) {
  const ms = median(s.perRound);
  const sorted = [...s.perRound].sort((a, b) => a - b);
  console.log(`${s.name.padEnd(16)} ${s.backend.description}: weights resident ${s.backend.stats().weightBytes} bytes, ` +
    `decode ${(1000 / ms).toFixed(0)} tokens/s (${(ms * 1000).toFixed(0)} µs/token; rounds ${(sorted[0]! * 1000).toFixed(0)}–${(sorted[sorted.length - 1]! * 1000).toFixed(0)} µs)`);
}
// Paired by round (both settings ran back to back, under the same neighbours' load): the median of the rounds'
// speed ratios, and the ratio of the two best rounds (the least disturbed).
const [b, f] = settings.map((s) => s.perRound);
const ratios = b!.map((ms, i) => f![i]! / ms);
console.log(`BF16 / float32 decode speed: ${(median(f!) / median(b!)).toFixed(3)}× (medians), ` +
  `${median(ratios).toFixed(3)}× (median of per-round ratios, quartiles ${quartiles(ratios)}), ${(Math.min(...f!) / Math.min(...b!)).toFixed(3)}× (best rounds)`);
for (const s of settings) await s.backend.dispose();
