// What `tinyseek step` and `tinyseek generate` share: a model from --config (a preset name or a JSON file) and
// --weights (a checkpoint directory or safetensors file, read lazily by src/io/checkpoint.ts; "random" for seeded
// initialisation; by default the trained tiny checkpoint), and
// synchronous kernels from --backend.

import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { loadBackend, type Backend } from "../backend.ts";
import { TinyseekError } from "../errors.ts";
import { FileError, readBytes, withRegularFile } from "../io/files.ts";
import { loadCheckpoint, type Checkpoint } from "../io/checkpoint.ts";
import { excerpt, readSafetensorsHeaderFrom } from "../io/safetensors.ts";
import { ATTENTION_KINDS, resolveConfig, type ModelConfig } from "../model/config.ts";
import { preset, PRESET_NAMES, RUNNABLE_PRESETS } from "../model/presets.ts";
import { byteTokenizer, decode, encodeBytes, type Tokenizer } from "../model/tokenizer.ts";
import { loadTokenizer } from "../model/bpe-tokenizer.ts";
import { initModel, loadModel, type Model } from "../model/weights.ts";
import { UsageError, type Io } from "../cli/io.ts";
import { trainingLabel } from "./training.ts";

export interface LoadedModel {
  model: Model;
  configLabel: string;
  weightsLabel: string;
  /** The checkpoint directory's tokenizer.json, or the byte tokenizer (the tiny model's). */
  tokenizer: Tokenizer;
}

/** A config file is a few hundred bytes; a larger one is some other file given by mistake. */
const MAX_CONFIG_BYTES = 1_000_000;

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
    text = new TextDecoder().decode(await readBytes(nameOrPath, MAX_CONFIG_BYTES));
  } catch (error) {
    if (!(error instanceof FileError)) throw error;
    throw new TinyseekError(`--config: expected a preset (${PRESET_NAMES.join(", ")}) or a JSON config file, got ${JSON.stringify(nameOrPath)}: ${error.reason}`);
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
 * --weights FILE or DIR loads a checkpoint; --weights random (or --config/--attention naming another shape) gives seeded
 * initialisation; nothing at all gives the trained tiny checkpoint, labelled with what it was trained on.
 */
export async function loadModelFrom(configArg: string | undefined, weightsArg: string | undefined, overrides: Partial<ModelConfig> = {}): Promise<LoadedModel> {
  // Overrides that name what tiny already is (--attention mla) keep the checkpoint: only a new shape needs new weights.
  const tiny = preset("tiny");
  const sameAsTiny = Object.entries(overrides).every(([k, v]) => JSON.stringify(v) === JSON.stringify(tiny[k as keyof ModelConfig]));
  const plainTiny = (configArg === undefined || configArg === "tiny") && sameAsTiny;
  if (weightsArg === undefined && plainTiny && existsSync(defaultWeightsUrl)) {
    const model = await loadModel(fileURLToPath(defaultWeightsUrl));
    return { model, configLabel: "tiny", weightsLabel: `${DEFAULT_WEIGHTS} (${await trainingSummary()})`, tokenizer: byteTokenizer };
  }
  if (weightsArg === "random") weightsArg = undefined;
  if (weightsArg !== undefined) {
    if (Object.keys(overrides).length > 0) throw new TinyseekError(`--weights: ${weightsArg} fixes the model's shape; drop --attention (or use --weights random)`);
    const given = configArg === undefined ? undefined : (await loadConfig(configArg, overrides)).config;
    const checkpoint = await openWeights(weightsArg, given);
    const tokenizer = await tokenizerFor(weightsArg, checkpoint.model.config.vocab_size);
    const weightsLabel = `${checkpointLabel(checkpoint)}${tokenizer === byteTokenizer ? "" : `; tokenizer ${tokenizer.name}`}`;
    return { model: checkpoint.model, configLabel: configArg ?? `from ${weightsArg}`, weightsLabel, tokenizer };
  }
  const kinds = overrides.attention_kind;
  if (Array.isArray(kinds)) {
    // One kind per layer: say so in --attention's terms before the config's own check names attention_kind.
    const layers = (await loadConfig(configArg ?? "tiny")).config.num_hidden_layers;
    if (kinds.length !== layers) {
      throw new UsageError(`--attention: expected one kind, or ${layers} (one per layer of ${configArg ?? "tiny"}), got ${kinds.length}: ${kinds.join(",")}`);
    }
  }
  const { config, label } = await loadConfig(configArg ?? "tiny", overrides);
  const changed = Object.entries(overrides).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`).join(" ");
  return { model: initModel(config), configLabel: changed ? `${label} (${changed})` : label, weightsLabel: `random init (seed ${config.init_seed})`, tokenizer: byteTokenizer };
}

/**
 * A checkpoint directory's tokenizer.json (spec/tokenizers.md) when it has one; otherwise the byte tokenizer, which
 * only fits a model whose vocabulary is its 260 ids.
 */
async function tokenizerFor(weights: string, vocabSize: number): Promise<Tokenizer> {
  const dir = statSync(weights, { throwIfNoEntry: false })?.isDirectory() ? weights : undefined;
  if (dir && existsSync(join(dir, "tokenizer.json"))) return loadTokenizer(dir, { vocabSize });
  if (vocabSize === byteTokenizer.vocabSize) return byteTokenizer;
  throw new TinyseekError(`--weights: ${weights} has vocab_size ${vocabSize} and ${dir ? "no tokenizer.json beside its config.json" : "no tokenizer (a single file)"}; the byte tokenizer covers ${byteTokenizer.vocabSize} ids: give a checkpoint directory with its tokenizer.json`);
}

/**
 * --weights FILE or DIR, opened header first (src/io/checkpoint.ts: tensors are read when their layer runs), and
 * refused in the user's terms when a file is safetensors but not weights: a trace or a golden file would
 * otherwise fail deep in the loader (a dtype, or "config has 6 problems").
 */
async function openWeights(path: string, config: ModelConfig | undefined): Promise<Checkpoint> {
  const metadata = await withRegularFile(path, Number.MAX_SAFE_INTEGER, readSafetensorsHeaderFrom).then((h) => h.metadata, () => ({} as Record<string, string>));
  const has = (key: string) => Object.hasOwn(metadata, key);
  const what = metadata.format === "tinyseek-trace" ? "a trace of activations (step --trace)"
    : has("component") && has("case") ? `a golden test file (case ${excerpt(metadata.case)})` : null;
  if (what) throw new TinyseekError(`--weights: ${path} is ${what}, not model weights; give a checkpoint such as ${DEFAULT_WEIGHTS}, or random`);
  try {
    return await loadCheckpoint(path, { config });
  } catch (error) {
    if (error instanceof FileError) throw new TinyseekError(`--weights: ${error.message}`);
    throw error;
  }
}

/** "DIR (2 files, 5.91 MB; FP8 e4m3 128×128 blocks, dequantised as read; MTP layer: 44 tensors, read when used; …)". */
function checkpointLabel(c: Checkpoint): string {
  const parts = [`${c.files.length} file${c.files.length > 1 ? "s" : ""}, ${(c.bytes / 1e6).toFixed(c.bytes < 1e7 ? 2 : 0)} MB`];
  if (c.quantization) parts.push(`FP8 ${c.quantization.fmt} ${c.quantization.block}×${c.quantization.block} blocks, dequantised as read`);
  if (c.mtpNames.length > 0) parts.push(`MTP layer: ${c.mtpNames.length} tensors, read when used`);
  if (c.ignoredFields.length > 0) parts.push(`config.json fields not used: ${c.ignoredFields.join(", ")}`);
  return `${c.path} (${parts.join("; ")})`;
}

/** A prompt's text (as shown) and its tokens. */
export interface Prompt {
  text: string;
  tokens: number[];
}

/** A prompt file longer than any context is refused before it is read. */
const MAX_PROMPT_FILE_BYTES = 1_000_000;

/**
 * The prompts of `--prompt TEXT` (repeatable) or `--prompt-file FILE`, whose bytes become the tokens as they are,
 * UTF-8 or not. Node turns an argument's bytes that are not UTF-8 into U+FFFD before any code sees them, so a
 * --prompt holding U+FFFD gets a one-line note on `io.err` pointing to --prompt-file.
 */
export async function promptsFrom(texts: readonly string[], file: string | undefined, io: Pick<Io, "err">, tokenizer: Tokenizer = byteTokenizer): Promise<Prompt[]> {
  if (file !== undefined) {
    if (texts.length > 0) throw new UsageError("--prompt-file: give the prompt once, as --prompt TEXT or --prompt-file FILE, not both");
    let bytes: Uint8Array;
    try {
      bytes = await readBytes(file, MAX_PROMPT_FILE_BYTES);
    } catch (error) {
      if (error instanceof FileError) throw new TinyseekError(`--prompt-file: ${error.message}`);
      throw error;
    }
    // The byte tokenizer takes the bytes as they are; another one reads them as UTF-8 text.
    return [{ text: decode(bytes), tokens: tokenizer === byteTokenizer ? encodeBytes(bytes) : tokenizer.encode(new TextDecoder().decode(bytes)) }];
  }
  texts.forEach((text, i) => {
    if (text.includes("\uFFFD")) {
      io.err(`--prompt${texts.length > 1 ? ` ${i + 1}` : ""}: contains U+FFFD (�), which Node puts in place of argument bytes that are not UTF-8, ` +
        "and the model reads its 3 UTF-8 bytes; to give exact bytes use --prompt-file FILE");
    }
  });
  return texts.map((text) => ({ text, tokens: tokenizer.encode(text) }));
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
    return trainingLabel(JSON.parse(await readFile(new URL(`../../${DEFAULT_WEIGHTS.replace(/\.safetensors$/, ".json")}`, import.meta.url), "utf8")));
  } catch {
    return "trained; its summary file is missing";
  }
}
