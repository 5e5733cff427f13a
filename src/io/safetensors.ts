// safetensors (huggingface/safetensors): 8 bytes of little-endian u64 header length N, N bytes of a JSON object
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } }, then the raw
// little-endian data, offsets relative to its start. The reader is strict, like the Rust reference: every check
// below has its own error, and nothing is allocated from a claimed size before it is checked against the file.
// spec/safetensors.md lists the checks and their messages.

import { TinyseekError } from "../errors.ts";
import { decode as decodeMiniFloat, encode as encodeMiniFloat, FORMATS, type MiniFloat } from "../quant/minifloat.ts";

export class SafetensorsError extends TinyseekError {
  override name = "SafetensorsError";
}

export const DTYPES = [
  "F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2",
  "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
] as const;
export type Dtype = (typeof DTYPES)[number];

/** Bytes per element. */
export const DTYPE_SIZE: Record<Dtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** The narrow float formats (src/quant/minifloat.ts converts them: round half to even, no saturation on write). */
const SMALL_FLOATS: Partial<Record<Dtype, MiniFloat>> = { F16: FORMATS.fp16, BF16: FORMATS.bf16, F8_E4M3: FORMATS.e4m3, F8_E5M2: FORMATS.e5m2 };

/** Decoding tables (65536 entries for 16-bit formats, 256 for 8-bit), built on first use. */
const decodeTables = new Map<MiniFloat, Float32Array>();
function decodeTable(f: MiniFloat): Float32Array {
  let table = decodeTables.get(f);
  if (!table) {
    table = new Float32Array(2 ** (1 + f.exponentBits + f.mantissaBits));
    for (let bits = 0; bits < table.length; bits++) table[bits] = decodeMiniFloat(f, bits);
    decodeTables.set(f, table);
  }
  return table;
}

/** What a tensor of each dtype reads as: small floats widen to Float32Array, F64 stays exact. */
export interface DtypeArrays {
  F64: Float64Array; F32: Float32Array; F16: Float32Array; BF16: Float32Array; F8_E4M3: Float32Array;
  F8_E5M2: Float32Array; I64: BigInt64Array; I32: Int32Array; I16: Int16Array; I8: Int8Array;
  U64: BigUint64Array; U32: Uint32Array; U16: Uint16Array; U8: Uint8Array; BOOL: Uint8Array;
}
export type TensorData = DtypeArrays[Dtype];

export interface SafeTensor {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Decoded values, or the stored little-endian bytes when read with `{ raw: true }`. */
  readonly data: TensorData;
}

export interface HeaderEntry {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** [begin, end) in bytes, relative to the start of the data region. */
  readonly offsets: readonly [number, number];
}

export interface SafetensorsHeader {
  readonly entries: Map<string, HeaderEntry>;
  readonly metadata: Record<string, string>;
  /** Where the data region starts in the file: 8 + header length. */
  readonly dataStart: number;
}

export interface Safetensors {
  readonly tensors: Map<string, SafeTensor>;
  readonly metadata: Record<string, string>;
}

/** The Rust reference refuses headers above 100 MB; so do we (a header that large is an attack, not a model). */
export const MAX_HEADER_BYTES = 100_000_000;

const fail = (message: string) => new SafetensorsError(`safetensors: ${message}`);

/** Parses and checks the header without touching tensor data. */
export function readSafetensorsHeader(bytes: Uint8Array): SafetensorsHeader {
  if (!(bytes instanceof Uint8Array)) throw fail(`expected the file's bytes as a Uint8Array, got ${typeof bytes}`);
  if (bytes.length < 8) throw fail(`file of ${bytes.length} bytes is too short for the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const claimed = view.getBigUint64(0, true);
  if (claimed > BigInt(bytes.length - 8)) {
    throw fail(`header length ${claimed} is larger than the ${bytes.length - 8} bytes after the length prefix`);
  }
  const headerLength = Number(claimed);
  if (headerLength > MAX_HEADER_BYTES) throw fail(`header length ${headerLength} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  if (headerLength < 2) throw fail(`header length ${headerLength} is too short for a JSON object`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch {
    throw fail("header is not valid UTF-8");
  }
  if (!text.startsWith("{")) throw fail(`header must start with "{", got ${JSON.stringify(text.slice(0, 10))}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw fail(`header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw fail("header must be a JSON object");

  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const entries = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") metadata = checkMetadata(value);
    else entries.set(name, checkEntry(name, value, dataLength));
  }
  checkCoverage(entries, dataLength);
  return { entries, metadata, dataStart };
}

function checkMetadata(value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail(`"__metadata__" must be an object of strings`);
  const metadata: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") throw fail(`"__metadata__.${key}" must be a string, got ${JSON.stringify(v)}`);
    metadata[key] = v;
  }
  return metadata;
}

const ENTRY_KEYS = ["dtype", "shape", "data_offsets"];

function checkEntry(name: string, value: unknown, dataLength: number): HeaderEntry {
  const at = `tensor ${JSON.stringify(name)}`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail(`${at}: entry must be an object`);
  const entry = value as Record<string, unknown>;
  for (const key of ENTRY_KEYS) if (!(key in entry)) throw fail(`${at}: missing "${key}"`);
  for (const key of Object.keys(entry)) if (!ENTRY_KEYS.includes(key)) throw fail(`${at}: unknown field "${key}"`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string" || !(DTYPES as readonly string[]).includes(dtype)) {
    throw fail(`${at}: unknown dtype ${JSON.stringify(dtype)} (known: ${DTYPES.join(", ")})`);
  }
  const isCount = (d: unknown): d is number => typeof d === "number" && Number.isSafeInteger(d) && d >= 0;
  if (!Array.isArray(shape) || !shape.every(isCount)) throw fail(`${at}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw fail(`${at}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) throw fail(`${at}: data_offsets [${begin}, ${end}] run past the ${dataLength} bytes of data`);
  let bytes = DTYPE_SIZE[dtype as Dtype];
  for (const d of shape) {
    bytes *= d;
    if (!Number.isSafeInteger(bytes)) throw fail(`${at}: shape ${JSON.stringify(shape)} is too large`);
  }
  if (bytes !== end - begin) {
    throw fail(`${at}: ${dtype} of shape [${shape.join(", ")}] needs ${bytes} bytes, data_offsets give ${end - begin}`);
  }
  return { dtype: dtype as Dtype, shape: [...shape], offsets: [begin, end] };
}

/** Tensors must tile the data region exactly: no overlap, no gap, nothing left over (as the Rust reference checks). */
function checkCoverage(entries: Map<string, HeaderEntry>, dataLength: number): void {
  const sorted = [...entries].sort(([, a], [, b]) => a.offsets[0] - b.offsets[0] || a.offsets[1] - b.offsets[1]);
  let at = 0;
  let previous = "the start of the data";
  for (const [name, { offsets }] of sorted) {
    const [begin, end] = offsets;
    if (begin < at) throw fail(`tensor ${JSON.stringify(name)} at [${begin}, ${end}] overlaps ${previous}, which ends at ${at}`);
    if (begin > at) throw fail(`gap of ${begin - at} bytes between ${previous} and tensor ${JSON.stringify(name)} at ${begin}`);
    at = end;
    previous = `tensor ${JSON.stringify(name)}`;
  }
  if (at !== dataLength) throw fail(`${dataLength - at} bytes after the last tensor are not covered by any entry`);
}

export interface ReadOptions {
  /** Keep each tensor's stored bytes (a Uint8Array) instead of decoding them. */
  raw?: boolean;
}

/** Reads a whole safetensors file held in memory. */
export function readSafetensors(bytes: Uint8Array, options: ReadOptions = {}): Safetensors {
  const header = readSafetensorsHeader(bytes);
  const tensors = new Map<string, SafeTensor>();
  for (const name of header.entries.keys()) tensors.set(name, readTensor(bytes, header, name, options));
  return { tensors, metadata: header.metadata };
}

/** Reads one tensor of a parsed file. */
export function readTensor(bytes: Uint8Array, header: SafetensorsHeader, name: string, options: ReadOptions = {}): SafeTensor {
  const entry = header.entries.get(name);
  if (!entry) throw fail(`no tensor named ${JSON.stringify(name)} (have: ${[...header.entries.keys()].join(", ") || "none"})`);
  const [begin, end] = entry.offsets;
  const stored = bytes.subarray(header.dataStart + begin, header.dataStart + end);
  const data = options.raw ? stored.slice() : decode(entry.dtype, stored);
  if (entry.dtype === "BOOL" && !options.raw) {
    const bad = (data as Uint8Array).findIndex((b) => b > 1);
    if (bad >= 0) throw fail(`tensor ${JSON.stringify(name)}: BOOL element ${bad} is ${(data as Uint8Array)[bad]}, expected 0 or 1`);
  }
  return { dtype: entry.dtype, shape: entry.shape, data };
}

/** Little-endian bytes → values. The data region need not be aligned, so everything goes through a DataView. */
function decode(dtype: Dtype, stored: Uint8Array): TensorData {
  const n = stored.length / DTYPE_SIZE[dtype];
  const view = new DataView(stored.buffer, stored.byteOffset, stored.byteLength);
  const fill = <A extends { [i: number]: number | bigint }>(out: A, get: (i: number) => number | bigint): A => {
    for (let i = 0; i < n; i++) out[i] = get(i);
    return out;
  };
  const small = SMALL_FLOATS[dtype];
  if (small) {
    const table = decodeTable(small);
    return DTYPE_SIZE[dtype] === 2
      ? fill(new Float32Array(n), (i) => table[view.getUint16(2 * i, true)]!)
      : fill(new Float32Array(n), (i) => table[stored[i]!]!);
  }
  switch (dtype) {
    case "F64": return fill(new Float64Array(n), (i) => view.getFloat64(8 * i, true));
    case "F32": return fill(new Float32Array(n), (i) => view.getFloat32(4 * i, true));
    case "I64": return fill(new BigInt64Array(n), (i) => view.getBigInt64(8 * i, true));
    case "I32": return fill(new Int32Array(n), (i) => view.getInt32(4 * i, true));
    case "I16": return fill(new Int16Array(n), (i) => view.getInt16(2 * i, true));
    case "I8": return new Int8Array(stored.slice().buffer);
    case "U64": return fill(new BigUint64Array(n), (i) => view.getBigUint64(8 * i, true));
    case "U32": return fill(new Uint32Array(n), (i) => view.getUint32(4 * i, true));
    case "U16": return fill(new Uint16Array(n), (i) => view.getUint16(2 * i, true));
    default: return stored.slice(); // U8, BOOL
  }
}

/** A tensor to write: values (numbers, or bigints for I64/U64) encoded as `dtype`, or its stored bytes as `raw`. */
export interface TensorToWrite {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly data?: ArrayLike<number> | ArrayLike<bigint>;
  readonly raw?: Uint8Array;
}

/**
 * Serialises tensors as the Rust reference does: data ordered by element size (largest first, so every tensor is
 * aligned to its element size) then by name, header `__metadata__` first, compact JSON padded with spaces to a
 * multiple of 8 bytes. The same input always gives the same bytes.
 */
export function writeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== "string") throw fail(`metadata "${key}" must be a string, got ${typeof value}`);
  }
  for (const [name, t] of map) {
    if (!(DTYPES as readonly string[]).includes(t?.dtype)) throw fail(`tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(t?.dtype)}`);
  }
  const order = [...map.keys()].sort((a, b) => {
    const size = DTYPE_SIZE[map.get(b)!.dtype] - DTYPE_SIZE[map.get(a)!.dtype];
    return size !== 0 ? size : a < b ? -1 : a > b ? 1 : 0;
  });
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of order) {
    if (name === "__metadata__") throw fail(`"__metadata__" is reserved and cannot name a tensor`);
    const t = map.get(name)!;
    const bytes = encode(name, t);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const withSpaces = new Uint8Array(padded).fill(0x20);
    withSpaces.set(json);
    json = withSpaces;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

const INT_RANGES: Partial<Record<Dtype, [number, number]>> = {
  I32: [-(2 ** 31), 2 ** 31 - 1], I16: [-32768, 32767], I8: [-128, 127],
  U32: [0, 2 ** 32 - 1], U16: [0, 65535], U8: [0, 255], BOOL: [0, 1],
};

function encode(name: string, t: TensorToWrite): Uint8Array {
  const at = `tensor ${JSON.stringify(name)}`;
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw fail(`${at}: shape must be a list of non-negative integers, got ${JSON.stringify(t.shape)}`);
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  const size = DTYPE_SIZE[t.dtype];
  if ((t.raw === undefined) === (t.data === undefined)) throw fail(`${at}: give exactly one of data and raw`);
  if (t.raw !== undefined) {
    if (!(t.raw instanceof Uint8Array) || t.raw.length !== n * size) {
      throw fail(`${at}: raw must be ${n * size} bytes for ${t.dtype} [${t.shape.join(", ")}], got ${t.raw.length}`);
    }
    return t.raw.slice();
  }
  const data = t.data!;
  if (data.length !== n) throw fail(`${at}: expected ${n} values for shape [${t.shape.join(", ")}], got ${data.length}`);
  const out = new Uint8Array(n * size);
  const view = new DataView(out.buffer);
  const small = SMALL_FLOATS[t.dtype];
  const number = (i: number): number => {
    const v = data[i];
    if (typeof v !== "number") throw fail(`${at}: value ${i} must be a number for ${t.dtype}, got ${typeof v}`);
    return v;
  };
  const integer = (i: number): number => {
    const v = number(i);
    const [lo, hi] = INT_RANGES[t.dtype]!;
    if (!Number.isInteger(v) || v < lo || v > hi) throw fail(`${at}: value ${i} is ${v}, not an integer in [${lo}, ${hi}] for ${t.dtype}`);
    return v;
  };
  const big = (i: number): bigint => {
    const v = data[i];
    const b = typeof v === "bigint" ? v : Number.isSafeInteger(v) ? BigInt(v as number) : undefined;
    const fits = b !== undefined && (t.dtype === "I64" ? BigInt.asIntN(64, b) : BigInt.asUintN(64, b)) === b;
    if (!fits) throw fail(`${at}: value ${i} is ${String(v)}, not a ${t.dtype} integer`);
    return b;
  };
  for (let i = 0; i < n; i++) {
    if (small) {
      const bits = encodeMiniFloat(small, number(i), { saturate: false }); // overflow: Inf, or NaN in E4M3 (as PyTorch casts)
      if (size === 2) view.setUint16(2 * i, bits, true);
      else out[i] = bits;
      continue;
    }
    switch (t.dtype) {
      case "F64": view.setFloat64(8 * i, number(i), true); break;
      case "F32": view.setFloat32(4 * i, number(i), true); break;
      case "I64": view.setBigInt64(8 * i, big(i), true); break;
      case "U64": view.setBigUint64(8 * i, big(i), true); break;
      case "I32": view.setInt32(4 * i, integer(i), true); break;
      case "U32": view.setUint32(4 * i, integer(i), true); break;
      case "I16": view.setInt16(2 * i, integer(i), true); break;
      case "U16": view.setUint16(2 * i, integer(i), true); break;
      case "I8": view.setInt8(i, integer(i)); break;
      default: out[i] = integer(i); // U8, BOOL
    }
  }
  return out;
}

export async function readSafetensorsFile(path: string, options: ReadOptions = {}): Promise<Safetensors> {
  return readSafetensors(await readBytes(path), options);
}

export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const { writeFile } = await import("node:fs/promises"); // loaded on use: the module itself runs in a browser too
  await writeFile(path, writeSafetensors(tensors, metadata));
}

/** A file's bytes, with file-system errors as one clear line. */
export async function readBytes(path: string): Promise<Uint8Array> {
  const { readFile } = await import("node:fs/promises");
  try {
    const buffer = await readFile(path);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TinyseekError(`${path}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : (error as Error).message}`);
  }
}
