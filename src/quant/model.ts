// A whole model quantised (spec/quant.md): every linear projection, or those chosen by name, in one scheme.
// Embeddings and norms stay float; so do the router gate and the output head unless named, as DeepSeek-V3's
// inference/model.py creates both in the default dtype while its projections are FP8.
//   int8.gG / int4.gG   symmetric per-group integer codes, G in {32, 64, 128}; ".a8" adds per-token int8 activations
//   fp8                 DeepSeek-V3's e4m3 with 128×128 weight blocks and 1×128 activation tiles
//   bf16 fp16 e4m3 e5m2 the weights rounded to that format (a plain cast, no scale): the error the format itself adds
// A quantised weight runs through kernels.quantLinear (src/model-adapters.ts); a rounded one is just a float tensor.
// On disk (safetensors): int8 codes as I8 `<module>.qweight` [out, in], int4 as U8 `<module>.qweight`
// [out, ceil(in/2)] (two offset-binary codes a byte, low nibble first, each row packed on its own), both with F32
// `<module>.scales` [out, groups]; fp8 as DeepSeek ships it, F8_E4M3 `<module>.weight` with F32
// `<module>.weight_scale_inv`; rounded floats as `<module>.weight` in their own dtype. The metadata `quantization`
// (JSON) names the scheme and every quantised weight; `config` is the model's.

import { argError, TinyseekError } from "../errors.ts";
import { globToRegExp } from "../glob.ts";
import { fp8WeightTensors, readFp8Weight } from "../io/fp8-weights.ts";
import { readSafetensorsHeader, readTensor, writeSafetensors, type SafeTensor, type SafetensorsHeader, type TensorToWrite } from "../io/safetensors.ts";
import { namedWeights, replaceWeights, type HookedWeight } from "../model-adapters.ts";
import { resolveConfig, type ModelConfig } from "../model/config.ts";
import { weightShapes } from "../model/params.ts";
import { modelFromParams, type Model } from "../model/weights.ts";
import { numel, shapeString, type Tensor } from "../tensor.ts";
import { dequantizeFp8, quantizeFp8 } from "./fp8.ts";
import { dequantizeInt, GROUP_SIZES, packInt4, quantizeInt, unpackInt4, type IntWeight } from "./int.ts";
import type { QuantWeight } from "./linear.ts";
import { FORMATS, roundArray, type FormatName } from "./minifloat.ts";

export type QuantScheme =
  | { readonly kind: "int"; readonly bits: 8 | 4; readonly group: number; readonly activations: boolean }
  | { readonly kind: "fp8"; readonly block: 128 }
  | { readonly kind: "float"; readonly format: FormatName };

/** Every scheme name the report runs, from the largest. */
export const SCHEME_NAMES = [
  "bf16", "fp16", "int8.g32", "int8.g64", "int8.g128", "int8.g128.a8", "fp8", "e4m3", "e5m2", "int4.g32", "int4.g64", "int4.g128",
] as const;

const FLOAT_FORMATS = Object.keys(FORMATS) as FormatName[];

/** "int8.g64", "int4.g32.a8", "int8" (group 128), "fp8", "bf16", … → the scheme. */
export function parseScheme(name: string): QuantScheme {
  if (typeof name !== "string") throw argError("scheme", "a scheme name", name);
  const int = /^int(8|4)(?:\.g(\d+))?(\.a8)?$/.exec(name);
  if (int) {
    const group = int[2] === undefined ? 128 : Number(int[2]);
    if (!(GROUP_SIZES as readonly number[]).includes(group)) throw argError("scheme", `a group size of 32, 64 or 128 in "${name}"`, group);
    return { kind: "int", bits: Number(int[1]) as 8 | 4, group, activations: int[3] !== undefined };
  }
  if (name === "fp8" || name === "fp8.e4m3.block128") return { kind: "fp8", block: 128 };
  if ((FLOAT_FORMATS as string[]).includes(name)) return { kind: "float", format: name as FormatName };
  throw argError("scheme", `one of int8.gG, int4.gG (G = 32, 64, 128; ".a8" for int8 activations), fp8, ${FLOAT_FORMATS.join(", ")}`, name);
}

export function schemeName(s: QuantScheme): string {
  return s.kind === "int" ? `int${s.bits}.g${s.group}${s.activations ? ".a8" : ""}` : s.kind === "fp8" ? "fp8" : s.format;
}

/** The linear layers a model has, by checkpoint weight name: projections, the routers' gates and the head. */
export function linearNames(model: Model): string[] {
  return [...namedWeights(model).keys()].filter((n) => /_proj(_with_mqa)?\.weight$/.test(n) || /\.mlp\.gate\.weight$/.test(n) || n === "lm_head.weight");
}

const moduleOf = (name: string) => name.replace(/\.weight$/, "");

/** Projections only: what is quantised when no targets are named. */
const DEFAULT_TARGETS = ["*_proj", "*_proj_with_mqa"];

/** A name pattern: `*` any run of characters, `?` one; it matches a weight name in full or from a dot on, with or
 *  without ".weight", so "q_b_proj" finds every layer's q_b_proj as PEFT's target_modules does. */
export function globMatcher(pattern: string): (name: string) => boolean {
  if (typeof pattern !== "string" || pattern === "") throw argError("target", "a non-empty name pattern", pattern);
  const re = globToRegExp(pattern);
  return (name) => {
    const module = moduleOf(name);
    return re.test(name) || re.test(module) || module.split(".").some((_, i, parts) => re.test(parts.slice(i).join(".")));
  };
}

/** The names among `names` that the patterns pick; a pattern that picks none is an error naming it. */
export function selectNames(names: readonly string[], patterns: readonly string[], what: string): string[] {
  if (!Array.isArray(patterns) || patterns.length === 0) throw argError("targets", "at least one name pattern", patterns);
  const chosen = new Set<string>();
  for (const pattern of patterns) {
    const hits = names.filter(globMatcher(pattern));
    if (hits.length === 0) throw new TinyseekError(`targets: "${pattern}" matches no ${what} (they are named like ${names[0] ?? "nothing"})`);
    hits.forEach((h) => chosen.add(h));
  }
  return names.filter((n) => chosen.has(n));
}

export interface Quantization {
  readonly scheme: QuantScheme;
  /** The quantised (or rounded) weights by checkpoint name, as the model holds them. */
  readonly weights: ReadonlyMap<string, Tensor>;
}

export interface QuantizedModel extends Model {
  readonly quantization: Quantization;
}

/** One weight in a scheme: a hooked tensor over codes (int, fp8) or the rounded values (float formats). */
export function quantizeWeight(w: Tensor, scheme: QuantScheme): Tensor {
  if (scheme.kind === "float") return { shape: [...w.shape], data: roundArray(FORMATS[scheme.format], w.data) };
  if (scheme.kind === "fp8") return hooked(quantizeFp8(w, scheme.block), true);
  return hooked(quantizeInt(w, scheme.bits, scheme.group), scheme.activations);
}

function hooked(q: QuantWeight, activations: boolean): HookedWeight {
  const data = (q.scheme === "fp8" ? dequantizeFp8(q) : dequantizeInt(q)).data;
  return { shape: [...q.shape], data, quant: { weight: q, activations } };
}

export interface QuantizeOptions {
  /** Name patterns of the linear layers to quantise (default: every projection; the gate and head stay float). */
  targets?: readonly string[];
}

export function quantizeModel(model: Model, scheme: string | QuantScheme, options: QuantizeOptions = {}): QuantizedModel {
  const s = typeof scheme === "string" ? parseScheme(scheme) : scheme;
  const all = namedWeights(model);
  const names = selectNames(linearNames(model), options.targets ?? DEFAULT_TARGETS, "linear layer");
  const weights = new Map(names.map((n) => [n, quantizeWeight(all.get(n)!, s)]));
  return { ...replaceWeights(model, weights), quantization: { scheme: s, weights } };
}

// ── sizes ──

/** Bytes a weight takes as stored in its scheme: codes plus scales, or its format's width. */
export function storedBytes(w: Tensor, scheme: QuantScheme | null): number {
  if (scheme === null) return 4 * numel(w.shape);
  if (scheme.kind === "float") return (FORMATS[scheme.format].exponentBits + FORMATS[scheme.format].mantissaBits + 1) / 8 * numel(w.shape);
  const q = (w as HookedWeight).quant!.weight;
  const [out, inDim] = q.shape;
  const codes = q.scheme === "int4" ? out * Math.ceil(inDim / 2) : out * inDim;
  return codes + 4 * q.scales.length;
}

// ── safetensors ──

const FLOAT_DTYPES = { bf16: "BF16", fp16: "F16", e4m3: "F8_E4M3", e5m2: "F8_E5M2" } as const;

function quantTensors(name: string, w: Tensor, scheme: QuantScheme): Record<string, TensorToWrite> {
  if (scheme.kind === "float") return { [name]: { dtype: FLOAT_DTYPES[scheme.format], shape: w.shape, data: w.data } };
  const q = (w as HookedWeight).quant!.weight;
  if (q.scheme === "fp8") return fp8WeightTensors(name, q);
  const [out, inDim] = q.shape;
  const m = moduleOf(name);
  const scales: TensorToWrite = { dtype: "F32", shape: [out, q.scales.length / out], data: q.scales };
  if (q.scheme === "int8") return { [`${m}.qweight`]: { dtype: "I8", shape: [out, inDim], data: q.codes }, [`${m}.scales`]: scales };
  const packed = new Uint8Array(out * Math.ceil(inDim / 2));
  for (let o = 0; o < out; o++) packed.set(packInt4(q.codes.subarray(o * inDim, (o + 1) * inDim)), o * Math.ceil(inDim / 2));
  return { [`${m}.qweight`]: { dtype: "U8", shape: [out, Math.ceil(inDim / 2)], raw: packed }, [`${m}.scales`]: scales };
}

export function quantizedModelToSafetensors(model: QuantizedModel): Uint8Array {
  const { scheme, weights } = model.quantization;
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of namedWeights(model)) {
    const entries = weights.has(name) ? quantTensors(name, t, scheme) : { [name]: { dtype: "F32", shape: t.shape, data: t.data } as TensorToWrite };
    for (const [n, e] of Object.entries(entries)) tensors.set(n, e);
  }
  const quantization = { scheme: schemeName(scheme), ...scheme, weights: [...weights.keys()] };
  return writeSafetensors(tensors, { format: "pt", generator: "tinyseek", config: JSON.stringify(model.config), quantization: JSON.stringify(quantization) });
}

/** A quantised model from the bytes quantizedModelToSafetensors wrote: the same codes, so the same logits. */
export function quantizedModelFromSafetensors(bytes: Uint8Array, config?: ModelConfig): QuantizedModel {
  const header = readSafetensorsHeader(bytes);
  const meta = header.metadata;
  if (meta.quantization === undefined) throw new TinyseekError(`weights: the file has no "quantization" metadata (a float model: load it with loadModel)`);
  const parse = (key: string) => {
    try {
      return JSON.parse(meta[key]!) as Record<string, unknown>;
    } catch (error) {
      throw new TinyseekError(`weights: the file's "${key}" metadata is not valid JSON (${(error as Error).message})`);
    }
  };
  const info = parse("quantization");
  const scheme = parseScheme(String(info.scheme));
  if (!Array.isArray(info.weights)) throw new TinyseekError(`weights: "quantization" metadata lists no weights`);
  if (!config && meta.config === undefined) throw new TinyseekError(`weights: the file has no "config" metadata; pass a config`);
  const resolved = config ?? resolveConfig(parse("config"));
  const quantised = new Set(info.weights as string[]);
  const consumed = new Set<string>();
  const read = (name: string) => {
    consumed.add(name);
    return readTensor(bytes, header, name);
  };
  const shapes = weightShapes(resolved);
  const weights = new Map<string, Tensor>();
  for (const name of quantised) {
    const shape = shapes.get(name)?.shape;
    if (!shape || shape.length !== 2) throw new TinyseekError(`weights: "quantization" metadata lists "${name}", not a linear weight of this config`);
    weights.set(name, readQuantized(bytes, header, name, shape as [number, number], scheme, read, consumed));
  }
  const params = new Map<string, Tensor>(weights);
  for (const name of header.entries.keys()) {
    if (consumed.has(name)) continue;
    const t = read(name);
    if (!(t.data instanceof Float32Array)) throw new TinyseekError(`weights: tensor "${name}" has dtype ${t.dtype}, expected F32 (or a quantised weight listed in the metadata)`);
    params.set(name, { shape: [...t.shape], data: t.data });
  }
  // The model (every name and shape checked against the config), routed experts' codes hung on their stacks.
  return { ...replaceWeights(modelFromParams(resolved, params), weights), quantization: { scheme, weights } };
}

/** One quantised weight of the expected shape [out, in], from its stored tensors. */
function readQuantized(
  bytes: Uint8Array, header: SafetensorsHeader, name: string, [out, inDim]: [number, number], scheme: QuantScheme,
  read: (n: string) => SafeTensor, consumed: Set<string>,
): Tensor {
  const expect = (t: SafeTensor, tensorName: string, dtype: string, shape: number[]) => {
    if (t.dtype !== dtype || shapeString(t.shape) !== shapeString(shape)) {
      throw new TinyseekError(`weights: "${tensorName}" must be ${dtype} ${shapeString(shape)}, got ${t.dtype} ${shapeString(t.shape)}`);
    }
  };
  if (scheme.kind === "float") {
    const t = read(name);
    expect(t, name, FLOAT_DTYPES[scheme.format], [out, inDim]);
    return { shape: [out, inDim], data: t.data as Float32Array };
  }
  if (scheme.kind === "fp8") {
    consumed.add(name).add(`${name}_scale_inv`);
    const q = readFp8Weight(bytes, header, name, scheme.block);
    if (shapeString(q.shape) !== shapeString([out, inDim])) throw new TinyseekError(`weights: "${name}" must be F8_E4M3 ${shapeString([out, inDim])}, got ${shapeString(q.shape)}`);
    return hooked(q, true);
  }
  const m = moduleOf(name);
  const groups = Math.ceil(inDim / scheme.group);
  const scales = read(`${m}.scales`);
  expect(scales, `${m}.scales`, "F32", [out, groups]);
  const stored = read(`${m}.qweight`);
  let codes: Int8Array;
  if (scheme.bits === 8) {
    expect(stored, `${m}.qweight`, "I8", [out, inDim]);
    codes = stored.data as Int8Array;
  } else {
    const width = Math.ceil(inDim / 2);
    expect(stored, `${m}.qweight`, "U8", [out, width]);
    codes = new Int8Array(out * inDim);
    for (let o = 0; o < out; o++) codes.set(unpackInt4((stored.data as Uint8Array).subarray(o * width, (o + 1) * width), inDim), o * inDim);
  }
  const weight: IntWeight = { scheme: scheme.bits === 8 ? "int8" : "int4", shape: [out, inDim], groupSize: scheme.group, codes, scales: scales.data as Float32Array };
  return hooked(weight, scheme.activations);
}
