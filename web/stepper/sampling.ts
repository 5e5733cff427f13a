// Sampling from the model with the page's settings, through src/model/generate.ts (greedy at temperature 0,
// otherwise temperature, top-k and top-p, drawn from the seeded generator: the same seed gives the same text).

import type { Backend } from "../../src/backend.ts";
import { checkSampling, generateAsync } from "../../src/model/generate.ts";
import type { Intervention } from "../../src/model/interventions.ts";
import { byteTokenizer } from "../../src/model/tokenizer.ts";
import type { Model } from "../../src/model/weights.ts";
import { argError, checkInteger } from "../../src/errors.ts";

export interface SampleSettings {
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  maxTokens: number;
}

export interface Sample {
  text: string;
  tokens: number[];
  stopReason: string;
  prefillMs: number;
  /** Decode steps per second after the prefill (NaN with one token). */
  tokensPerSecond: number;
}

/** Numbers from the form, checked as generate checks them (one line naming the field otherwise). */
export function readSettings(values: Record<keyof SampleSettings, string>): SampleSettings {
  const number = (name: string, text: string) => {
    const v = text.trim() === "" ? NaN : Number(text);
    if (!Number.isFinite(v)) throw argError(name, "a number", text);
    return v;
  };
  const settings = {
    temperature: number("temperature", values.temperature),
    topK: number("topK", values.topK),
    topP: number("topP", values.topP),
    seed: number("seed", values.seed),
    maxTokens: number("maxTokens", values.maxTokens),
  };
  checkSampling(settings);
  checkInteger("seed", settings.seed, 0, 2 ** 32 - 1);
  checkInteger("maxTokens", settings.maxTokens, 1, 512);
  return settings;
}

export async function sampleFrom(model: Model, tokens: readonly number[], settings: SampleSettings, backend: Backend, interventions: readonly Intervention[], exitThreshold?: number): Promise<Sample> {
  const result = await generateAsync(model, tokens, { ...settings, backend, interventions, exitThreshold });
  const decodeMs = result.steps.slice(1).reduce((a, s) => a + s.ms, 0);
  return {
    text: byteTokenizer.decode(result.tokens),
    tokens: result.tokens,
    stopReason: result.stopReason,
    prefillMs: result.prefillMs,
    tokensPerSecond: result.steps.length > 1 ? (1000 * (result.steps.length - 1)) / decodeMs : NaN,
  };
}
