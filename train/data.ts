// The training text and how it is cut: data/alice.txt (the whole of Alice's Adventures in Wonderland), its first
// ~90 % for training and the rest, from the first line break after 90 % (late in chapter XI), held out for evaluation.
// Every sequence starts with <bos> at position 0, as a prompt does in `tinyseek step` and `generate`, and predicts
// each of its bytes from the ones before.

import { readFileSync } from "node:fs";
import { BOS } from "../src/model/tokenizer.ts";
import type { Random } from "../src/random.ts";

export const TEXT_PATH = new URL("../data/alice.txt", import.meta.url);
/** TEXT_PATH as the summary records it, relative to the repository root. */
export const TEXT_NAME = "data/alice.txt";

export interface Split {
  train: Uint8Array;
  eval: Uint8Array;
}

/** The text's bytes, cut at the first "\n" after (1 - evalFraction) of its length; the eval part starts after it. */
export function splitText(bytes: Uint8Array = readFileSync(TEXT_PATH), evalFraction = 0.1): Split {
  const cut = bytes.indexOf(10, Math.floor(bytes.length * (1 - evalFraction)));
  return { train: bytes.subarray(0, cut + 1), eval: bytes.subarray(cut + 1) };
}

/** A sequence to score: `input` (<bos> and all but the last byte) predicts `targets` (every byte). */
export interface Sequence {
  input: number[];
  targets: number[];
}

const sequence = (bytes: ArrayLike<number>): Sequence => {
  const ids = [BOS, ...Array.from(bytes)];
  return { input: ids.slice(0, -1), targets: ids.slice(1) };
};

/** Consecutive chunks of `length` bytes (the last may be shorter), each its own sequence: the evaluation set. */
export function chunks(bytes: Uint8Array, length: number): Sequence[] {
  const out: Sequence[] = [];
  for (let at = 0; at < bytes.length; at += length) out.push(sequence(bytes.subarray(at, at + length)));
  return out;
}

/** `batch` windows of `length` bytes at uniformly drawn offsets: one training batch. */
export function sampleBatch(rng: Random, bytes: Uint8Array, batch: number, length: number): Sequence[] {
  return Array.from({ length: batch }, () => {
    const at = rng.int(bytes.length - length + 1);
    return sequence(bytes.subarray(at, at + length));
  });
}
