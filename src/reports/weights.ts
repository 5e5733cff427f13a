// The model a report measures, from --weights as `tinyseek step` reads it (src/step/load.ts): the trained tiny
// checkpoint by default, a safetensors file, or "random" for seeded initialisation; and whether it is seeded, which
// every report says in its output.

import { existsSync } from "node:fs";
import { TinyseekError } from "../errors.ts";
import { byteTokenizer } from "../model/tokenizer.ts";
import { DEFAULT_WEIGHTS, loadModelFrom, type LoadedModel } from "../step/load.ts";

export interface ReportModel extends LoadedModel {
  seeded: boolean;
}

/** `preset` another than tiny has no checkpoint: seeded unless `weights` names a file of its shape. */
export async function loadReportModel(weights: string | undefined, preset?: string): Promise<ReportModel> {
  const loaded = bytesOnly(await loadModelFrom(preset, weights), weights);
  const checkpointShape = preset === undefined || preset === "tiny";
  const defaultExists = existsSync(new URL(`../../${DEFAULT_WEIGHTS}`, import.meta.url));
  const seeded = weights === "random" || (weights === undefined && !(checkpointShape && defaultExists));
  return { ...loaded, seeded };
}

/** The reports feed their texts in as bytes, the tiny model's tokens: a checkpoint with its own tokenizer is refused. */
export function bytesOnly(loaded: LoadedModel, weights: string | undefined): LoadedModel {
  if (loaded.tokenizer === byteTokenizer) return loaded;
  throw new TinyseekError(`--weights: the reports read their text as bytes (the byte tokenizer's ids); ${weights} has its own tokenizer (${loaded.tokenizer.name}): run step, generate, lens, patch or attribute on it`);
}
