// A byte-level tokenizer: token t < 256 is the byte t of the text's UTF-8 encoding, and four specials follow.
// Lossless on any string: decode(encode(s)) === s for every well-formed string (lone surrogates, which UTF-8
// cannot encode, become U+FFFD as TextEncoder makes them). Decoding a byte sequence that is not valid UTF-8 (a
// model may sample one) gives U+FFFD for each bad byte, never an exception.

import { argError, checkInteger } from "../errors.ts";

export const BOS = 256;
export const EOS = 257;
export const PAD = 258;
/** Marks where image patch embeddings go in early fusion (spec/crossmodal.md). */
export const IMG = 259;
export const VOCAB_SIZE = 260;

const SPECIAL_NAMES: Record<number, string> = { [BOS]: "<bos>", [EOS]: "<eos>", [PAD]: "<pad>", [IMG]: "<img>" };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

export interface EncodeOptions {
  /** Prepend BOS (default true). */
  bos?: boolean;
  /** Append EOS (default false). */
  eos?: boolean;
}

export function encode(text: string, options: EncodeOptions = {}): number[] {
  if (typeof text !== "string") throw argError("text", "a string", typeof text);
  return encodeBytes(encoder.encode(text), options);
}

/** The tokens of raw bytes, UTF-8 or not (a prompt read from a file): token t is byte t. */
export function encodeBytes(bytes: Uint8Array, options: EncodeOptions = {}): number[] {
  if (!(bytes instanceof Uint8Array)) throw argError("bytes", "a Uint8Array", typeof bytes);
  const { bos = true, eos = false } = options;
  const ids = Array.from(bytes);
  if (bos) ids.unshift(BOS);
  if (eos) ids.push(EOS);
  return ids;
}

/** The text of the byte tokens; special tokens are skipped. */
export function decode(ids: ArrayLike<number>): string {
  const bytes: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    checkInteger(`ids[${i}]`, ids[i]!, 0, VOCAB_SIZE - 1);
    if (ids[i]! < 256) bytes.push(ids[i]!);
  }
  return decoder.decode(Uint8Array.from(bytes));
}

/** How a single token reads in a table: printable ASCII as itself, other bytes as hex, specials by name. */
export function tokenLabel(id: number): string {
  checkInteger("id", id, 0, VOCAB_SIZE - 1);
  if (id in SPECIAL_NAMES) return SPECIAL_NAMES[id]!;
  if (id === 32) return "␠";
  if (id === 10) return "⏎";
  if (id > 32 && id < 127) return String.fromCharCode(id);
  return `<${id.toString(16).padStart(2, "0")}>`;
}

/**
 * What the CLI needs of a tokenizer, met by the byte tokenizer above (`byteTokenizer`, the tiny model's) and by a
 * checkpoint's tokenizer.json (`loadTokenizer` in src/model/bpe-tokenizer.ts).
 */
export interface Tokenizer {
  /** What it is, for a header line: "bytes", or the tokenizer.json path. */
  readonly name: string;
  /** Every id below it is valid input to decode and tokenLabel. */
  readonly vocabSize: number;
  /** Added by encode's `bos` option (default true); undefined when the tokenizer has none. */
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  encode(text: string, options?: EncodeOptions): number[];
  /** The text of the ids; special tokens are skipped and invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>): string;
  tokenLabel(id: number): string;
}

export const byteTokenizer: Tokenizer = Object.freeze({ name: "bytes", vocabSize: VOCAB_SIZE, bosId: BOS, eosId: EOS, encode, decode, tokenLabel });
