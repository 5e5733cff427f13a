// The shipped checkpoint in a browser: data/tiny-alice.safetensors and its training summary, bundled as assets
// by the build (web/vite.config.ts) and fetched, then read by the same parser as the command line
// (modelFromSafetensors, src/model/weights.ts). What it returns is what loadModelFrom gives `tinyseek step`.

import { TinyseekError } from "../../src/errors.ts";
import type { LoadedModel } from "../../src/step/load.ts";
import { trainingLabel } from "../../src/step/training.ts";
import { byteTokenizer } from "../../src/model/tokenizer.ts";
import { modelFromSafetensors } from "../../src/model/weights.ts";

/** The checkpoint's name, as the command line labels it. */
export const SHIPPED_WEIGHTS = "data/tiny-alice.safetensors";

const weightsUrl = new URL("../../data/tiny-alice.safetensors", import.meta.url);
const summaryUrl = new URL("../../data/tiny-alice.json", import.meta.url);

/** The bytes at `url`, or an error naming it and the HTTP status. */
export async function fetchBytes(url: URL | string, what: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new TinyseekError(`${what}: could not fetch ${String(url)}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new TinyseekError(`${what}: fetching ${String(url)} gave HTTP ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** The trained tiny model, its labels and its tokenizer (the byte tokenizer). */
export async function loadBrowserModel(): Promise<LoadedModel> {
  const [bytes, summary] = await Promise.all([fetchBytes(weightsUrl, "checkpoint"), trainingSummary()]);
  const model = modelFromSafetensors(bytes);
  return { model, configLabel: "tiny", weightsLabel: `${SHIPPED_WEIGHTS} (${summary})`, tokenizer: byteTokenizer };
}

async function trainingSummary(): Promise<string> {
  try {
    return trainingLabel(JSON.parse(new TextDecoder().decode(await fetchBytes(summaryUrl, "training summary"))));
  } catch {
    return "trained; its summary file is missing"; // as the command line says
  }
}
