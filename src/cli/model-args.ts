// What the model commands share: a backend by name, and for the research commands (lens, patch, attribute) the model
// flags of `step` and a backend, opened together.

import { loadBackend, type Backend } from "../backend.ts";
import { byteTokenizer, type Tokenizer } from "../model/tokenizer.ts";
import type { Model } from "../model/weights.ts";
import { attentionOverride, loadModelFrom } from "../step/load.ts";
import { UsageError } from "./io.ts";

export const MODEL_FLAGS = {
  config: { type: "string" }, weights: { type: "string" }, attention: { type: "string" }, backend: { type: "string" }, json: { type: "boolean" },
} as const;

export const MODEL_HELP = `  --config NAME|FILE   a preset (tiny, small) or a JSON config; default tiny
  --weights FILE       safetensors weights, or "random"; default the trained checkpoint data/tiny-alice.safetensors
  --attention KIND     as in tinyseek step
  --backend NAME       reference (default), wasm or webgpu
  --json               print the whole result as JSON`;

export interface Opened {
  model: Model;
  backend: Backend;
  weightsLabel: string;
  tokenizer: Tokenizer;
}

/** The backend --backend names (default the reference); an unknown or unavailable one is a usage error (exit 2). */
export async function backendNamed(name: string | undefined): Promise<Backend> {
  try {
    return await loadBackend(name ?? "reference");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** The model and backend the flags name; the caller disposes the backend. */
export async function openModel(values: { config?: string; weights?: string; attention?: string; backend?: string }): Promise<Opened> {
  const backend = await backendNamed(values.backend);
  try {
    const { model, weightsLabel, tokenizer } = await loadModelFrom(values.config, values.weights, attentionOverride(values.attention));
    return { model, backend, weightsLabel, tokenizer };
  } catch (error) {
    await backend.dispose();
    throw error;
  }
}

/** The id of a text that is exactly one token (for the byte tokenizer: one byte). */
export function oneToken(flag: string, text: string, tokenizer: Tokenizer): number {
  const ids = tokenizer.encode(text, { bos: false });
  const example = tokenizer === byteTokenizer ? ' (one byte, e.g. "e" or " ")' : "";
  if (ids.length !== 1) throw new UsageError(`${flag}: expected text of one token${example}, got ${JSON.stringify(text)} (${ids.length} tokens)`);
  return ids[0]!;
}
