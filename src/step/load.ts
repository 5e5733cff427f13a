// What `tinyseek step` and `tinyseek generate` share: a model from --config (a preset name or a JSON file) and
// --weights (a safetensors file, "random" for seeded initialisation; by default the trained tiny checkpoint), and
// synchronous kernels from --backend.

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { loadBackend, type Backend } from "../backend.ts";
import { TinyseekError } from "../errors.ts";
import { ATTENTION_KINDS, resolveConfig, type ModelConfig } from "../model/config.ts";
import { preset, PRESET_NAMES, RUNNABLE_PRESETS } from "../model/presets.ts";
import { initModel, loadModel, type Model } from "../model/weights.ts";
import { UsageError } from "../cli/io.ts";

export interface LoadedModel {
  model: Model;
  configLabel: string;
  weightsLabel: string;
}

/** A config from a preset name or a JSON file path, with overrides applied. */
export async function loadConfig(nameOrPath: string, overrides: Partial<ModelConfig> = {}): Promise<{ config: ModelConfig; label: string }> {
  if ((PRESET_NAMES as string[]).includes(nameOrPath)) {
    if (!(RUNNABLE_PRESETS as string[]).includes(nameOrPath)) {
      throw new TinyseekError(`config "${nameOrPath}" is for reading and counting only; run ${RUNNABLE_PRESETS.join(" or ")}`);
    }
    return { config: preset(nameOrPath, overrides), label: nameOrPath };
  }
  let text: string;
  try {
    text = await readFile(nameOrPath, "utf8");
  } catch {
    throw new TinyseekError(`config: expected a preset (${PRESET_NAMES.join(", ")}) or a JSON file, got ${JSON.stringify(nameOrPath)} (no such file)`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // JSON.parse quotes the text it choked on: binary bytes (a safetensors file given as --config) must not reach the terminal.
    const reason = (error as Error).message.replace(/[\x00-\x1f\x7f-\x9f\ufffd]/g, "?");
    throw new TinyseekError(`${nameOrPath}: not valid JSON (${reason})`);
  }
  return { config: resolveConfig({ ...(json as object), ...overrides }), label: nameOrPath };
}

/** The trained tiny checkpoint (train/train.ts): the weights `step` and `generate` use when none are named. */
export const DEFAULT_WEIGHTS = "data/tiny-alice.safetensors";
const defaultWeightsUrl = new URL(`../../${DEFAULT_WEIGHTS}`, import.meta.url);

/**
 * --weights FILE loads a checkpoint; --weights random (or --config/--attention naming another shape) gives seeded
 * initialisation; nothing at all gives the trained tiny checkpoint, labelled with what it was trained on.
 */
export async function loadModelFrom(configArg: string | undefined, weightsArg: string | undefined, overrides: Partial<ModelConfig> = {}): Promise<LoadedModel> {
  // Overrides that name what tiny already is (--attention mla) keep the checkpoint: only a new shape needs new weights.
  const tiny = preset("tiny");
  const sameAsTiny = Object.entries(overrides).every(([k, v]) => JSON.stringify(v) === JSON.stringify(tiny[k as keyof ModelConfig]));
  const plainTiny = (configArg === undefined || configArg === "tiny") && sameAsTiny;
  if (weightsArg === undefined && plainTiny && existsSync(defaultWeightsUrl)) {
    const model = await loadModel(fileURLToPath(defaultWeightsUrl));
    return { model, configLabel: "tiny", weightsLabel: `${DEFAULT_WEIGHTS} (${await trainingSummary()})` };
  }
  if (weightsArg === "random") weightsArg = undefined;
  if (weightsArg !== undefined) {
    if (Object.keys(overrides).length > 0) throw new TinyseekError(`--weights: ${weightsArg} fixes the model's shape; drop --attention (or use --weights random)`);
    const given = configArg === undefined ? undefined : (await loadConfig(configArg, overrides)).config;
    const model = await loadModel(weightsArg, given);
    return { model, configLabel: configArg ?? `from ${weightsArg}`, weightsLabel: weightsArg };
  }
  const { config, label } = await loadConfig(configArg ?? "tiny", overrides);
  const changed = Object.entries(overrides).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`).join(" ");
  return { model: initModel(config), configLabel: changed ? `${label} (${changed})` : label, weightsLabel: `random init (seed ${config.init_seed})` };
}

/** `--attention mla|mha|…` (one kind, or one per layer separated by commas) as a config override. */
export function attentionOverride(value: string | undefined): Partial<ModelConfig> {
  if (value === undefined) return {};
  const kinds = value.split(",").map((k) => k.trim());
  const unknown = kinds.find((k) => !(ATTENTION_KINDS as readonly string[]).includes(k));
  if (unknown !== undefined) throw new UsageError(`--attention: expected ${ATTENTION_KINDS.join(", ")} or one per layer separated by commas, got ${JSON.stringify(unknown)}`);
  return { attention_kind: (kinds.length === 1 ? kinds[0] : kinds) as ModelConfig["attention_kind"] };
}

/** A backend whose kernels the model can run on; a missing or asynchronous-only one is a clear error. */
export async function loadModelBackend(name: string): Promise<Backend & { kernels: NonNullable<Backend["kernels"]> }> {
  const backend = await loadBackend(name);
  if (!backend.kernels) {
    await backend.dispose();
    throw new TinyseekError(`backend "${name}" has no synchronous kernels, which the model's forward pass needs; use reference or wasm`);
  }
  return backend as Backend & { kernels: NonNullable<Backend["kernels"]> };
}

/** "trained on …, eval loss X nats/byte", from the summary train/train.ts writes beside the checkpoint. */
async function trainingSummary(): Promise<string> {
  try {
    const t = JSON.parse(await readFile(new URL(`../../${DEFAULT_WEIGHTS.replace(/\.safetensors$/, ".json")}`, import.meta.url), "utf8"));
    return `trained on ${t.text}, ${t.steps} steps, ${t.tokensSeen.toLocaleString("en")} tokens; eval loss ${t.evalLoss.toFixed(2)} nats/byte on the held-out 10 %, uniform ${t.uniformLoss.toFixed(2)}`;
  } catch {
    return "trained; its summary file is missing";
  }
}
