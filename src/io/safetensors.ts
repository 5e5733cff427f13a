// safetensors (huggingface/safetensors): 8 bytes of little-endian u64 header length N, N bytes of a JSON object
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } }, then the raw
// little-endian data, offsets relative to its start. The reader is strict, like the Rust reference: every check
// below has its own error, and nothing is allocated from a claimed size before it is checked against the file.
// spec/safetensors.md lists the checks and their messages.

import { excerpt, TinyseekError } from "../errors.ts";

export { excerpt };
import { MAX_FILE_BYTES, withRegularFile, type RandomAccessFile } from "./files.ts";
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
/** More tensors than this in one file is refused before any is checked (a real checkpoint shard holds hundreds). */
export const MAX_TENSORS = 100_000;
/** More dimensions than this is refused (NumPy's limit): a shape is quoted in tables and messages. */
export const MAX_RANK = 64;

const fail = (message: string) => new SafetensorsError(`safetensors: ${message}`);

/** Parses and checks the header without touching tensor data. */
export function readSafetensorsHeader(bytes: Uint8Array): SafetensorsHeader {
  if (!(bytes instanceof Uint8Array)) throw fail(`expected the file's bytes as a Uint8Array, got ${typeof bytes}`);
  const headerLength = headerLengthOf(bytes, bytes.length);
  return parseHeader(bytes.subarray(8, 8 + headerLength), bytes.length - 8 - headerLength);
}

/** The header length N from a file's first 8 bytes, checked against the file's size and the limit. */
function headerLengthOf(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) throw fail(`file of ${fileSize} bytes is too short for the 8-byte header length`);
  const claimed = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (claimed > BigInt(fileSize - 8)) {
    throw fail(`header length ${claimed} is larger than the ${fileSize - 8} bytes after the length prefix`);
  }
  const headerLength = Number(claimed);
  if (headerLength > MAX_HEADER_BYTES) throw fail(`header length ${headerLength} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  if (headerLength < 2) throw fail(`header length ${headerLength} is too short for a JSON object`);
  return headerLength;
}

/** The header's bytes (the N after the prefix), checked against a data region of `dataLength` bytes. */
function parseHeader(headerBytes: Uint8Array, dataLength: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw fail("header is not valid UTF-8");
  }
  if (!text.startsWith("{")) throw fail(`header must start with "{", got ${excerpt(text.slice(0, 10))}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // The engine's message may quote the text: keep it short and free of control characters.
    const reason = excerpt((error as Error).message, 120).slice(1, -1);
    throw fail(`header is not valid JSON (${reason})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw fail("header must be a JSON object");
  const duplicate = duplicateKey(text); // JSON.parse keeps the last of two equal keys without a word
  if (duplicate) throw fail(duplicate);
  const count = Object.keys(json).length - (Object.hasOwn(json, "__metadata__") ? 1 : 0);
  if (count > MAX_TENSORS) throw fail(`header lists ${count} tensors, more than the limit of ${MAX_TENSORS}`);

  const dataStart = 8 + headerBytes.length;
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
  const metadata: Record<string, string> = Object.create(null); // "__proto__" is kept as a key like any other
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") throw fail(`${excerpt(`__metadata__.${key}`)} must be a string, got ${excerpt(v)}`);
    metadata[key] = v;
  }
  return metadata;
}

/**
 * The first key that appears twice in one object of a valid JSON text, as a message naming it (tensor names at
 * the top, metadata keys and entry fields below), or undefined. One pass over the text with a stack, no recursion.
 */
function duplicateKey(text: string): string | undefined {
  const objects: (Set<string> | null)[] = []; // per open bracket: the keys seen so far, null for an array
  let top = ""; // the top-level key whose value is being read
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // '"': a string, a key where one is expected
      let end = i + 1;
      while (text.charCodeAt(end) !== 0x22) end += text.charCodeAt(end) === 0x5c ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        const seen = objects[objects.length - 1]!;
        if (seen.has(key)) {
          if (objects.length === 1) return `${key === "__metadata__" ? '"__metadata__"' : `tensor ${excerpt(key)}`} appears twice in the header`;
          return `key ${excerpt(key)} appears twice in ${top === "__metadata__" ? '"__metadata__"' : `the entry of tensor ${excerpt(top)}`}`;
        }
        seen.add(key);
        if (objects.length === 1) top = key;
        expectKey = false;
      }
      i = end;
    } else if (c === 0x7b) { // '{'
      objects.push(new Set());
      expectKey = true;
    } else if (c === 0x5b) { // '['
      objects.push(null);
    } else if (c === 0x7d || c === 0x5d) { // '}' or ']'
      objects.pop();
      expectKey = false;
    } else if (c === 0x2c) { // ','
      expectKey = objects[objects.length - 1] !== null;
    }
  }
  return undefined;
}

const ENTRY_KEYS = ["dtype", "shape", "data_offsets"];

function checkEntry(name: string, value: unknown, dataLength: number): HeaderEntry {
  const at = `tensor ${excerpt(name)}`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail(`${at}: entry must be an object`);
  const entry = value as Record<string, unknown>;
  for (const key of ENTRY_KEYS) if (!(key in entry)) throw fail(`${at}: missing "${key}"`);
  for (const key of Object.keys(entry)) if (!ENTRY_KEYS.includes(key)) throw fail(`${at}: unknown field ${excerpt(key)}`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string" || !(DTYPES as readonly string[]).includes(dtype)) {
    throw fail(`${at}: unknown dtype ${excerpt(dtype)} (known: ${DTYPES.join(", ")})`);
  }
  const isCount = (d: unknown): d is number => typeof d === "number" && Number.isSafeInteger(d) && d >= 0;
  if (Array.isArray(shape) && shape.length > MAX_RANK) throw fail(`${at}: shape has ${shape.length} dimensions, more than the limit of ${MAX_RANK}`);
  if (!Array.isArray(shape) || !shape.every(isCount)) throw fail(`${at}: shape must be a list of non-negative integers, got ${excerpt(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw fail(`${at}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${excerpt(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) throw fail(`${at}: data_offsets [${begin}, ${end}] run past the ${dataLength} bytes of data`);
  let bytes = DTYPE_SIZE[dtype as Dtype];
  for (const d of shape) {
    bytes *= d;
    if (!Number.isSafeInteger(bytes)) throw fail(`${at}: shape ${excerpt(shape)} is too large`);
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
    if (begin < at) throw fail(`tensor ${excerpt(name)} at [${begin}, ${end}] overlaps ${previous}, which ends at ${at}`);
    if (begin > at) throw fail(`gap of ${begin - at} bytes between ${previous} and tensor ${excerpt(name)} at ${begin}`);
    at = end;
    previous = `tensor ${excerpt(name)}`;
  }
  if (at !== dataLength) throw fail(`${dataLength - at} bytes after the last tensor are not covered by any entry`);
}

export interface ReadOptions {
  /** Keep each tensor's stored bytes (a Uint8Array) instead of decoding them. */
  raw?: boolean;
}

/** Reads a whole safetensors file held in memory. */
export function readSafetensors(bytes: Uint8Array, options: ReadOptions = {}): Safetensors {
  return decodeAll(bytes, readSafetensorsHeader(bytes), options);
}

function decodeAll(bytes: Uint8Array, header: SafetensorsHeader, options: ReadOptions): Safetensors {
  const tensors = new Map<string, SafeTensor>();
  for (const name of header.entries.keys()) tensors.set(name, readTensor(bytes, header, name, options));
  return { tensors, metadata: header.metadata };
}

/** Reads one tensor of a parsed file. */
export function readTensor(bytes: Uint8Array, header: SafetensorsHeader, name: string, options: ReadOptions = {}): SafeTensor {
  const entry = header.entries.get(name);
  if (!entry) {
    const names = [...header.entries.keys()];
    const have = names.length === 0 ? "none" : names.length <= 8 ? names.join(", ") : `${names.slice(0, 8).join(", ")}, … (${names.length} in all)`;
    throw fail(`no tensor named ${excerpt(name)} (have: ${have})`);
  }
  const [begin, end] = entry.offsets;
  const stored = bytes.subarray(header.dataStart + begin, header.dataStart + end);
  const data = options.raw ? stored.slice() : decode(entry.dtype, stored);
  if (entry.dtype === "BOOL" && !options.raw) {
    const bad = (data as Uint8Array).findIndex((b) => b > 1);
    if (bad >= 0) throw fail(`tensor ${excerpt(name)}: BOOL element ${bad} is ${(data as Uint8Array)[bad]}, expected 0 or 1`);
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

/** A safetensors file from disk, read header first (see `readSafetensorsFrom`). */
export async function readSafetensorsFile(path: string, options: ReadOptions = {}): Promise<Safetensors> {
  const { bytes, header } = await withRegularFile(path, MAX_FILE_BYTES, readSafetensorsFrom);
  return decodeAll(bytes, header, options);
}

/** A safetensors file's bytes, read header first: a regular file of at most `maxBytes` whose header checks out. */
export async function readSafetensorsBytes(path: string, maxBytes = MAX_FILE_BYTES): Promise<Uint8Array> {
  return (await withRegularFile(path, maxBytes, readSafetensorsFrom)).bytes;
}

/**
 * Reads an open file header first: the 8-byte length, then the header it claims (refused above
 * MAX_HEADER_BYTES or past the end before it is read), and only once the header has checked out against the
 * file's size the data region it describes. Nothing is allocated from a claimed size that was not checked.
 */
export async function readSafetensorsFrom(file: RandomAccessFile): Promise<{ bytes: Uint8Array; header: SafetensorsHeader }> {
  const { prefix, headerBytes, header } = await headerOf(file);
  const bytes = new Uint8Array(file.size);
  bytes.set(prefix);
  bytes.set(headerBytes, 8);
  await file.read(header.dataStart, bytes.subarray(header.dataStart));
  return { bytes, header };
}

/**
 * The header of an open file, and nothing else: 8 + N bytes read, however large the file. A checkpoint's shards
 * are opened this way, and each tensor is then read on its own (`decodeTensorBytes`) when it is needed.
 */
export async function readSafetensorsHeaderFrom(file: RandomAccessFile): Promise<SafetensorsHeader> {
  return (await headerOf(file)).header;
}

async function headerOf(file: RandomAccessFile) {
  const prefix = file.size < 8 ? new Uint8Array(8) : await file.read(0, new Uint8Array(8));
  const headerLength = headerLengthOf(prefix, file.size);
  const headerBytes = await file.read(8, new Uint8Array(headerLength));
  return { prefix, headerBytes, header: parseHeader(headerBytes, file.size - 8 - headerLength) };
}

/** One tensor's stored bytes (its data_offsets' range, read on its own) decoded as `readTensor` decodes them. */
export function decodeTensorBytes(name: string, entry: HeaderEntry, stored: Uint8Array, options: ReadOptions = {}): SafeTensor {
  const [begin, end] = entry.offsets;
  if (stored.length !== end - begin) throw fail(`tensor ${excerpt(name)}: expected ${end - begin} stored bytes, got ${stored.length}`);
  return readTensor(stored, { entries: new Map([[name, { ...entry, offsets: [0, stored.length] }]]), metadata: {}, dataStart: 0 }, name, options);
}

export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const { writeFile } = await import("node:fs/promises"); // loaded on use: the module itself runs in a browser too
  await writeFile(path, writeSafetensors(tensors, metadata));
}

/** A file's bytes, with file-system errors as one clear line (regular files only, size checked first). */
export { readBytes } from "./files.ts";
