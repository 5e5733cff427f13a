// What `tinyseek step` and `tinyseek generate` share: a model from --config (a preset name or a JSON file) and
// --weights (a safetensors file; else seeded initialisation), and synchronous kernels from --backend.

import { readFile } from "node:fs/promises";
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

export async function loadModelFrom(configArg: string | undefined, weightsArg: string | undefined, overrides: Partial<ModelConfig> = {}): Promise<LoadedModel> {
  if (weightsArg !== undefined) {
    if (Object.keys(overrides).length > 0) throw new TinyseekError(`weights: ${weightsArg} fixes the model's shape; drop ${Object.keys(overrides).join(", ")}`);
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
