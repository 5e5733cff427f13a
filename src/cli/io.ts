// What every command shares: where output goes (so tests run commands in-process and read what they printed),
// the usage error (exit 2), and argument parsing that turns node:util's errors into usage errors.

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
    throw new UsageError((error as Error).message.split("\n")[0]!);
  }
}

/** Exactly `names.length` positional arguments, named in the error when some are missing or extra. */
export function positionals(given: string[], names: string[], usage: string): string[] {
  if (given.length !== names.length) {
    throw new UsageError(`expected ${names.length === 0 ? "no arguments" : names.join(" ")}, got ${given.length === 0 ? "none" : given.join(" ")} (usage: ${usage})`);
  }
  return given;
}
