// What every command shares: where output goes (so tests run commands in-process and read what they printed),
// the usage error (exit 2), and argument parsing that turns node:util's errors into usage errors.

import { availableParallelism } from "node:os";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { TinyseekError } from "../errors.ts";

export interface Io {
  /** One or more lines for standard output. */
  out(text: string): void;
  /** One or more lines for standard error. */
  err(text: string): void;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(`${text}\n`),
  err: (text) => void process.stderr.write(`${text}\n`),
};

/** Every command module exports `help` and `run`; the command table in src/cli/main.ts loads it lazily. */
export interface Command {
  readonly help: string;
  run(args: string[], io?: Io): Promise<number>;
}

/** Wrong arguments, unknown commands, unknown or unavailable backends: the CLI exits 2. */
export class UsageError extends TinyseekError {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs, strict, with positionals; a bad flag or a missing value becomes a UsageError. */
export function parse<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(parseArgsMessage(error as Error));
  }
}

/** node:util's message on one line: its first sentence, with the hint that matters kept (how to pass "-1"). */
function parseArgsMessage(error: Error): string {
  const first = error.message.split("\n")[0]!;
  const ambiguous = /^Option '(--[^']+)' argument is ambiguous/.exec(first);
  if (ambiguous) return `${ambiguous[1]}: a value that starts with '-' must be written ${ambiguous[1]}=VALUE`;
  // "Unknown option '--x'. To specify a positional argument starting with a '-', …": the first sentence says it.
  return (error as NodeJS.ErrnoException).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? first.replace(/\. To specify .*$/, "") : first;
}

/** How a number may be typed: decimal digits only (no 0x10, 0b11, 0o7, Infinity or 1_000, which Number() accepts),
 *  with a fraction and an exponent only where the flag is not an integer. */
const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** `raw` as a number if it is one written in decimal (a safe integer with `integer`), else undefined. */
export function decimal(raw: string, integer = false): number | undefined {
  if (!(integer ? INTEGER : DECIMAL).test(raw)) return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && (!integer || Number.isSafeInteger(n)) ? n : undefined;
}

/**
 * A numeric flag's value, or `fallback` when the flag is absent. Anything but a decimal number (an integer, without
 * fraction or exponent, with `integer`) in [min, max] — the empty string included, which Number() would read as 0 —
 * is a UsageError that quotes the flag and what was typed.
 */
export function numberArg(
  flag: string, raw: string | undefined, fallback: number, { integer = false, min = -Infinity, max = Infinity }: { integer?: boolean; min?: number; max?: number } = {},
): number {
  if (raw === undefined) return fallback;
  const n = decimal(raw, integer);
  if (n === undefined || n < min || n > max) {
    const range = max !== Infinity ? ` in [${min}, ${max}]` : min !== -Infinity ? ` >= ${min}` : "";
    throw new UsageError(`${flag}: expected ${integer ? "an integer" : "a number"}${range}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/**
 * --threads N: a decimal integer >= 1, capped at the machine's cores (`cores`, default what Node reports) with a
 * one-line note on `io.err`: more threads than cores only wait on each other, and each holds a copy of the module.
 */
export function threadsArg(raw: string | undefined, io: Io, cores = availableParallelism()): number | undefined {
  if (raw === undefined) return undefined;
  const threads = numberArg("--threads", raw, 1, { integer: true, min: 1 });
  if (threads <= cores) return threads;
  io.err(`--threads ${raw}: this machine has ${cores} core${cores === 1 ? "" : "s"}; using ${cores}`);
  return cores;
}

/** Exactly `names.length` positional arguments, named in the error when some are missing or extra. */
export function positionals(given: string[], names: string[], usage: string): string[] {
  if (given.length !== names.length) {
    throw new UsageError(`expected ${names.length === 0 ? "no arguments" : names.join(" ")}, got ${given.length === 0 ? "none" : given.join(" ")} (usage: ${usage})`);
  }
  return given;
}
