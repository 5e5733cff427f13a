// One measurement of `generate` (src/model/generate.ts), the same in Node (bench/web.ts) and in a page
// (web/bench/main.ts): a byte prompt, then greedy decoding of a fixed number of tokens with no stop token, timed
// token by token by the decode loop itself (GenerateStep.ms). A round's figure is its decoded tokens (the first,
// which the prefill gives, left out) over their summed milliseconds; the result is the median over the rounds,
// after one untimed round that loads the weights into the backend.

import type { Backend } from "../../src/backend.ts";
import { generateAsync } from "../../src/model/generate.ts";
import { encode } from "../../src/model/tokenizer.ts";
import type { Model } from "../../src/model/weights.ts";

export interface GenerateMeasure {
  /** Median over rounds of decoded tokens per second. */
  tokensPerSecond: number;
  /** Median prefill of the prompt, ms. */
  prefillMs: number;
  rounds: number;
  decodedPerRound: number;
}

export const BENCH_PROMPT = "Alice was beginning to get very tired of sitting by her sister on the bank";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function measureGenerate(model: Model, backend: Backend, options: { rounds: number; tokens: number }): Promise<GenerateMeasure> {
  const prompt = encode(BENCH_PROMPT);
  const run = () => generateAsync(model, prompt, { maxTokens: options.tokens, backend, stopToken: null, temperature: 0 });
  await run();
  const rates: number[] = [], prefills: number[] = [];
  for (let r = 0; r < options.rounds; r++) {
    const { steps, prefillMs } = await run();
    const decode = steps.slice(1);
    rates.push((decode.length / decode.reduce((s, step) => s + step.ms, 0)) * 1000);
    prefills.push(prefillMs);
  }
  return { tokensPerSecond: median(rates), prefillMs: median(prefills), rounds: options.rounds, decodedPerRound: options.tokens - 1 };
}
