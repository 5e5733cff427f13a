// The command table and the top level: `tinyseek COMMAND [args] [--help]`. Each command is a module loaded only
// when run; to add one, add a line to COMMANDS. Errors print one line and exit 1 (2 for usage).

import { TinyseekError } from "../errors.ts";
import { tinyseekVersion } from "../io/golden.ts";
import { processIo, UsageError, type Command, type Io } from "./io.ts";

interface Entry {
  /** One line for `tinyseek --help`. */
  readonly summary: string;
  readonly load: () => Promise<Command>;
}

export const COMMANDS: Record<string, Entry> = {
  golden: { summary: "write, check, compare and list golden files; the case × backend support matrix", load: () => import("./golden.ts") },
  tour: { summary: "a guided tour: masks as grids, one attention computation, time decay side by side", load: () => import("./tour.ts") },
  inspect: { summary: "tensors, dtypes, shapes, statistics and metadata of a safetensors file", load: () => import("./inspect.ts") },
  diff: { summary: "where two traces (or any two tensor files) first part, in forward order", load: () => import("./diff.ts") },
  "attention-report": { summary: "KV state per attention kind and NSA's coverage on real text: the memory and sparsity claims, measured", load: () => import("./attention-report.ts") },
  step: { summary: "run a prompt through the model layer by layer: heatmaps, routing, early exits (npm start)", load: () => import("./step.ts") },
  generate: { summary: "continue a prompt: greedy, temperature, top-k, top-p sampling with a seed", load: () => import("./generate.ts") },
  lens: { summary: "the logit lens: what each layer's residual stream would predict if it were the last", load: () => import("./lens.ts") },
  patch: { summary: "activation patching between a clean and a corrupted prompt: a layer × position heatmap", load: () => import("./patch.ts") },
  attribute: { summary: "direct logit attribution: each layer, head and expert's share of one token's logit", load: () => import("./attribute.ts") },
  "quant-report": { summary: "int8, int4, FP8 and narrow floats on every projection: bytes, layer and logits error, next-token agreement", load: () => import("./quant-report.ts") },
  "moe-report": { summary: "MoE capacity, drop orders and bias balancing on a batch of text", load: () => import("./moe-report.ts") },
  devices: { summary: "the WebGPU adapter (Dawn): name, native backend, limits; or what is missing", load: () => import("./devices.ts") },
};

export function topHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    `tinyseek ${tinyseekVersion()}: a DeepSeek-style transformer you can read, run and step through`,
    "",
    "usage: tinyseek COMMAND [arguments] [--help]",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `npx tinyseek COMMAND --help` for a command's arguments.",
  ].join("\n");
}

/** Runs the CLI on `argv` (without node and the script) and returns the exit code. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? io.err : io.out)(topHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    io.out(tinyseekVersion());
    return 0;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    io.err(`tinyseek: unknown command ${JSON.stringify(name)} (commands: ${Object.keys(COMMANDS).join(", ")}; see npx tinyseek --help)`);
    return 2;
  }
  try {
    const command = await entry.load();
    if (args.includes("--help") || args.includes("-h")) {
      io.out(command.help);
      return 0;
    }
    return await command.run(args, io);
  } catch (error) {
    const oneLine = (e: Error) => e.message.replace(/\s*\n\s*/g, " ");
    if (error instanceof UsageError) {
      io.err(`tinyseek ${name}: ${oneLine(error)} (see npx tinyseek ${name} --help)`);
      return 2;
    }
    if (error instanceof TinyseekError) {
      io.err(`tinyseek ${name}: ${oneLine(error)}`);
      return 1;
    }
    const system = systemError(error);
    if (system) {
      io.err(`tinyseek ${name}: ${system}`);
      return 1;
    }
    const e = error instanceof Error ? error : new Error(String(error));
    io.err(`tinyseek ${name}: internal error: ${e.name}: ${oneLine(e)}${process.env.TINYSEEK_DEBUG ? `\n${e.stack}` : " (set TINYSEEK_DEBUG=1 for the stack)"}`);
    return 1;
  }
}

/** A file the command could not read or write (Node's ENOENT, ENOTDIR, EACCES, …) in one line: "PATH: reason (syscall)". */
function systemError(error: unknown): string | null {
  const e = error as NodeJS.ErrnoException;
  if (!(error instanceof Error) || typeof e.code !== "string" || !/^E[A-Z]+$/.test(e.code) || typeof e.path !== "string") return null;
  const reason = e.message.replace(/^E[A-Z]+: /, "").replace(/, \w+ '.*'$/s, "");
  return `${e.path}: ${reason}${e.syscall ? ` (${e.syscall})` : ""}`;
}
