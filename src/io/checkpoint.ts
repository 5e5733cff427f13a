// A checkpoint as DeepSeek publishes one: a directory with config.json (the Hugging Face config) and either
// model.safetensors.index.json with its shards or one model.safetensors; or a single safetensors file whose
// metadata holds tinyseek's config. Only headers are read when it is opened: every tensor is then read on its own,
// with positioned reads, when its layer is first used (src/model/lazy-layers.ts), so a checkpoint larger than
// memory steps layer by layer. FP8 projections (F8_E4M3 `weight` + F32 `weight_scale_inv`, one scale per 128×128
// block) are dequantised as they are read, as DeepSeek's own weight_dequant does. Every name, dtype and shape is
// checked against the config before anything is read, and each problem is one line naming the file and the tensor.
// spec/checkpoints.md says what is read, when, and what is refused.

import { closeSync, constants, fstatSync, openSync, readSync, statSync } from "node:fs";
import { totalmem } from "node:os";
import { basename, join } from "node:path";
import { TinyseekError } from "../errors.ts";
import { configFromHf, resolveConfig, type Fp8Quantization, type ModelConfig } from "../model/config.ts";
import { lazyLayers, type Residency } from "../model/lazy-layers.ts";
import { weightShapes } from "../model/params.ts";
import { layerFromParams, mtpFromParams, type Model, type ModelWeights, type MtpWeights } from "../model/weights.ts";
import type { Fp8Weight } from "../quant/fp8.ts";
import { numel, shapeString, type Tensor } from "../tensor.ts";
import { FileError, readBytes, reasonFor, withRegularFile } from "./files.ts";
import { dequantizeFp8Codes, fp8ScalesProblem, SCALE_SUFFIX } from "./fp8-weights.ts";
import { decodeTensorBytes, readSafetensorsHeaderFrom, SafetensorsError, type HeaderEntry } from "./safetensors.ts";

export const CONFIG_FILE = "config.json";
export const INDEX_FILE = "model.safetensors.index.json";
export const SINGLE_FILE = "model.safetensors";
/** config.json and the index are a few kB (V3's index: 9 MB, one line per tensor); more is some other file. */
const MAX_JSON_BYTES = 64_000_000;
const FLOAT_DTYPES = new Set(["F64", "F32", "F16", "BF16"]);

export interface CheckpointOptions {
  /** The config to use instead of the checkpoint's own (config.json, or a single file's "config" metadata). */
  config?: ModelConfig;
  /** Bytes of layers kept in memory before the least recently used is dropped (default: half the machine's memory). */
  residentBytes?: number;
}

interface Located {
  readonly file: string;
  readonly entry: HeaderEntry;
  readonly dataStart: number;
}

export interface Checkpoint {
  /** The directory or file given. */
  readonly path: string;
  /** The model: embedding, final norm and head read now, each layer when first used. */
  readonly model: Model;
  readonly config: ModelConfig;
  /** From config.json's quantization_config, or FP8 found in the files (block 128); null when nothing is FP8. */
  readonly quantization: Fp8Quantization | null;
  /** The safetensors files, in the order the index names them. */
  readonly files: readonly string[];
  /** Their total size in bytes. */
  readonly bytes: number;
  /** config.json fields tinyseek does not use, set aside (not refused). */
  readonly ignoredFields: readonly string[];
  /** The first file's metadata (tinyseek writes its config there; a trace or a golden file says what it is). */
  readonly metadata: Record<string, string>;
  /**
   * Tensors of the multi-token-prediction layer (model.layers.N, N = num_hidden_layers; scales excluded), checked
   * like the others; `model.weights.mtp` reads them when first used. Empty when the checkpoint has none.
   */
  readonly mtpNames: readonly string[];
  readonly residency: Residency;
  has(name: string): boolean;
  /** A tensor by checkpoint name, read now as float32 (an FP8 weight dequantised with its block scales). */
  tensor(name: string): Tensor;
  /** An FP8 weight's codes and scales as stored, or null when `name` is not FP8. */
  fp8Weight(name: string): Fp8Weight | null;
}

const failAt = (file: string, message: string) => new TinyseekError(`${file}: ${message}`);

/** Opens a checkpoint directory or file: headers only; tensors are read when used. */
export async function loadCheckpoint(path: string, options: CheckpointOptions = {}): Promise<Checkpoint> {
  if (typeof path !== "string" || path === "") throw new TinyseekError(`checkpoint: expected a directory or a safetensors file, got ${JSON.stringify(path)}`);
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code; // a checkpoint may be either, so ENOENT names both
    throw new FileError(path, code === "ENOENT" ? "no such file or directory" : reasonFor(error as NodeJS.ErrnoException));
  }
  const { files, index } = isDirectory ? await shardsOf(path) : { files: [path], index: null };
  const located = new Map<string, Located>();
  let metadata: Record<string, string> = {};
  let bytes = 0;
  for (const file of files) {
    const header = await withRegularFile(file, Number.MAX_SAFE_INTEGER, async (f) => {
      bytes += f.size;
      try {
        return await readSafetensorsHeaderFrom(f);
      } catch (error) {
        if (error instanceof SafetensorsError) throw failAt(file, error.message);
        throw error;
      }
    });
    if (file === files[0]) metadata = header.metadata;
    for (const [name, entry] of header.entries) {
      const before = located.get(name);
      if (before) throw failAt(file, `tensor "${name}" is also in ${before.file}: a tensor must be in one shard`);
      located.set(name, { file, entry, dataStart: header.dataStart });
    }
  }
  if (index) checkIndex(index, located);

  const hf = options.config ? null : isDirectory ? await readHfConfig(path) : null;
  const config = options.config ?? hf?.config ?? configFromMetadata(path, metadata);
  const fp8Present = [...located.values()].some((t) => t.entry.dtype === "F8_E4M3");
  const quantization = hf?.quantization ?? (fp8Present ? { fmt: "e4m3" as const, block: 128 } : null);
  const block = quantization?.block ?? 128;
  const mtpNames = checkNames(path, config, located, block);

  const read = (name: string): Tensor => readFloat(name, located, block);
  const expected = weightShapes(config);
  const layerNames: string[][] = Array.from({ length: config.num_hidden_layers }, () => []);
  for (const name of expected.keys()) {
    const layer = /^model\.layers\.(\d+)\./.exec(name);
    if (layer) layerNames[Number(layer[1])]?.push(name);
  }
  const { layers, residency } = lazyLayers({
    count: config.num_hidden_layers,
    bytes: (l) => layerNames[l]!.reduce((sum, name) => sum + 4 * numel(expected.get(name)!.shape), 0),
    load: (l) => layerFromParams(config, l, read, (E, _, nameOf) => readStacked(E, nameOf, located, block)),
  }, options.residentBytes ?? Math.floor(totalmem() / 2));
  const embed_tokens = read("model.embed_tokens.weight");
  const weights: ModelWeights = { embed_tokens, layers, norm: read("model.norm.weight"), lm_head: config.tie_word_embeddings ? embed_tokens : read("lm_head.weight") };
  if (mtpNames.length > 0) {
    // The MTP layer is read when first used (speculative decoding, the stepper's look-ahead) and then kept.
    let mtp: MtpWeights | undefined;
    Object.defineProperty(weights, "mtp", { enumerable: true, get: () => (mtp ??= mtpFromParams(config, (name) => (located.has(name) ? read(name) : undefined))) });
  }
  const model: Model = { config, weights };
  return {
    path, model, config, quantization, files, bytes, ignoredFields: hf?.ignored ?? [], metadata, mtpNames, residency,
    has: (name) => located.has(name),
    tensor: (name) => {
      if (!located.has(name)) throw new TinyseekError(`${path}: no tensor "${name}" in the checkpoint`);
      return read(name);
    },
    fp8Weight: (name) => {
      const t = located.get(name);
      if (!t || t.entry.dtype !== "F8_E4M3") return null;
      const scales = readFloat(name + SCALE_SUFFIX, located, block).data;
      return { scheme: "fp8", shape: t.entry.shape as [number, number], block, bits: readStored(name, t), scales };
    },
  };
}

/** The safetensors files of a directory: the index's shards, or model.safetensors. */
async function shardsOf(dir: string): Promise<{ files: string[]; index: { path: string; map: Map<string, string> } | null }> {
  const indexPath = join(dir, INDEX_FILE);
  if (exists(indexPath)) {
    const json = await readJson(indexPath);
    const weightMap = (json as { weight_map?: unknown }).weight_map;
    if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) throw failAt(indexPath, `expected { "weight_map": { tensor: shard file } }`);
    const map = new Map<string, string>();
    const files: string[] = [];
    for (const [name, shard] of Object.entries(weightMap)) {
      // A shard is a file beside the index: a path elsewhere would let an index read any file on the machine.
      if (typeof shard !== "string" || shard === "" || shard !== basename(shard) || shard === "." || shard === "..") {
        throw failAt(indexPath, `tensor "${name}": expected a shard file name beside the index, got ${JSON.stringify(shard)}`);
      }
      const file = join(dir, shard);
      if (!files.includes(file)) {
        if (!exists(file)) throw failAt(indexPath, `shard "${shard}" (holding "${name}") is missing: no file ${file}`);
        files.push(file);
      }
      map.set(name, file);
    }
    if (files.length === 0) throw failAt(indexPath, "weight_map names no tensors");
    return { files, index: { path: indexPath, map } };
  }
  const single = join(dir, SINGLE_FILE);
  if (exists(single)) return { files: [single], index: null };
  throw failAt(dir, `a checkpoint directory holds ${INDEX_FILE} (with its shards) or ${SINGLE_FILE}; found neither`);
}

/** Every tensor the index maps must be in the shard it names, and every tensor of a shard must be in the index. */
function checkIndex(index: { path: string; map: Map<string, string> }, located: Map<string, Located>): void {
  for (const [name, file] of index.map) {
    const found = located.get(name);
    if (!found) throw failAt(index.path, `tensor "${name}" is mapped to ${basename(file)}, which has no such tensor`);
    if (found.file !== file) throw failAt(index.path, `tensor "${name}" is mapped to ${basename(file)}, but it is in ${basename(found.file)}`);
  }
  for (const [name, { file }] of located) {
    if (!index.map.has(name)) throw failAt(file, `tensor "${name}" is not in ${basename(index.path)}'s weight_map`);
  }
}

/**
 * Checks every tensor against the config before any is read: each expected weight present with its shape, a float
 * dtype or F8_E4M3 with block scales that fit it, nothing unexpected. Returns the MTP layers' tensor names.
 */
function checkNames(path: string, config: ModelConfig, located: Map<string, Located>, block: number): string[] {
  const expected = weightShapes(config);
  const problems: string[] = [];
  const mtp: string[] = [];
  const L = config.num_hidden_layers;
  // The MTP layer is all or nothing (as modelFromParams reads it): without any of its tensors, the main model alone.
  const withMtp = [...expected].some(([name, entry]) => entry.mtp && located.has(name));
  for (const [name, { shape, optional, mtp: ofMtp }] of expected) {
    const t = located.get(name);
    if (!t && (optional || (ofMtp && !withMtp))) continue;
    if (ofMtp && t) mtp.push(name);
    if (!t) problems.push(`missing tensor "${name}" ${shapeString(shape)}`);
    else if (shapeString(t.entry.shape) !== shapeString(shape)) problems.push(`${t.file}: tensor "${name}": the config gives ${shapeString(shape)}, the file ${shapeString(t.entry.shape)}`);
  }
  for (const [name, t] of located) {
    const at = `${t.file}: tensor "${name}"`;
    if (name.endsWith(SCALE_SUFFIX)) {
      const weight = located.get(name.slice(0, -SCALE_SUFFIX.length));
      if (!weight || weight.entry.dtype !== "F8_E4M3") problems.push(`${at}: block scales of ${weight ? `a ${weight.entry.dtype} weight` : "no weight"} (scales go with an F8_E4M3 weight)`);
      continue;
    }
    if (t.entry.dtype === "F8_E4M3") {
      if (t.entry.shape.length !== 2) problems.push(`${at}: F8_E4M3 of shape ${shapeString(t.entry.shape)}, expected a matrix [out, in]`);
      else {
        const problem = fp8ScalesProblem(name, t.entry, located.get(name + SCALE_SUFFIX)?.entry, block);
        if (problem) problems.push(`${at}: ${problem}`);
      }
    } else if (!FLOAT_DTYPES.has(t.entry.dtype)) problems.push(`${at}: dtype ${t.entry.dtype}, expected a float dtype (F32, BF16, F16, F64) or F8_E4M3 with ${SCALE_SUFFIX}`);
    // The MTP layer's tensors are all in `expected` (weightShapes lists them): one it lacks is as unexpected there
    // as in a main layer.
    if (expected.has(name)) continue;
    problems.push(`${at}: unexpected (not a weight of this config${/^model\.layers\.\d+\./.test(name) ? `, whose layers are 0…${L - 1} plus ${config.num_nextn_predict_layers} MTP` : ""})`);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 8).join("; ") + (problems.length > 8 ? `; … and ${problems.length - 8} more` : "");
    throw new TinyseekError(`${path}: the checkpoint does not fit its config (${problems.length} problem${problems.length > 1 ? "s" : ""}): ${shown}`);
  }
  return mtp;
}

/** A tensor's stored bytes, read with one positioned read (the file is opened non-blocking and checked again). */
function readStored(name: string, t: Located): Uint8Array {
  const [begin, end] = t.entry.offsets;
  const out = new Uint8Array(end - begin);
  let fd: number;
  try {
    fd = openSync(t.file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    throw failAt(t.file, `cannot read tensor "${name}": ${(error as Error).message}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw failAt(t.file, `cannot read tensor "${name}": no longer a regular file`);
    for (let done = 0; done < out.length;) {
      const n = readSync(fd, out, done, out.length - done, t.dataStart + begin + done);
      if (n === 0) throw failAt(t.file, `ended while tensor "${name}" was read (the file changed since it was opened)`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** A tensor as float32: float dtypes widened, FP8 dequantised with its scales. */
function readFloat(name: string, located: Map<string, Located>, block: number): Tensor {
  const t = located.get(name)!;
  const shape = [...t.entry.shape];
  try {
    if (t.entry.dtype === "F8_E4M3") {
      const scales = readFloat(name + SCALE_SUFFIX, located, block).data;
      return { shape, data: dequantizeFp8Codes(name, readStored(name, t), shape as [number, number], scales, block) };
    }
    const data = decodeTensorBytes(name, t.entry, readStored(name, t)).data;
    return { shape, data: data instanceof Float32Array ? data : Float32Array.from(data as Float64Array) };
  } catch (error) {
    if (error instanceof SafetensorsError) throw failAt(t.file, error.message);
    throw error;
  }
}

/** The routed experts' weights read straight into one stacked [E, rows, cols] array: no copy per expert. */
function readStacked(E: number, nameOf: (e: number) => string, located: Map<string, Located>, block: number): Tensor {
  const [rows, cols] = located.get(nameOf(0))!.entry.shape as [number, number];
  const data = new Float32Array(E * rows * cols);
  for (let e = 0; e < E; e++) {
    const name = nameOf(e);
    const t = located.get(name)!;
    const into = data.subarray(e * rows * cols, (e + 1) * rows * cols);
    if (t.entry.dtype !== "F8_E4M3") into.set(readFloat(name, located, block).data);
    else {
      try {
        dequantizeFp8Codes(name, readStored(name, t), [rows, cols], readFloat(name + SCALE_SUFFIX, located, block).data, block, into);
      } catch (error) {
        if (error instanceof SafetensorsError) throw failAt(t.file, error.message);
        throw error;
      }
    }
  }
  return { shape: [E, rows, cols], data };
}

const exists = (path: string) => {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
};

async function readJson(path: string): Promise<unknown> {
  const text = new TextDecoder().decode(await readBytes(path, MAX_JSON_BYTES));
  try {
    return JSON.parse(text);
  } catch (error) {
    throw failAt(path, `not valid JSON (${(error as Error).message.replace(/[\x00-\x1f\x7f-\x9f\ufffd]/g, "?").slice(0, 120)})`);
  }
}

async function readHfConfig(dir: string) {
  const path = join(dir, CONFIG_FILE);
  if (!exists(path)) throw failAt(dir, `no ${CONFIG_FILE} (the Hugging Face config a checkpoint directory carries); pass --config`);
  const json = await readJson(path);
  try {
    return configFromHf(json);
  } catch (error) {
    if (error instanceof TinyseekError) throw failAt(path, error.message);
    throw error;
  }
}

function configFromMetadata(path: string, metadata: Record<string, string>): ModelConfig {
  const json = metadata.config;
  if (json === undefined) throw failAt(path, `the file has no "config" metadata; pass --config, or give the directory with its ${CONFIG_FILE}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw failAt(path, `the file's "config" metadata is not valid JSON (${(error as Error).message})`);
  }
  return resolveConfig(parsed as Record<string, unknown>);
}
