// `tinyseek inspect FILE`: what a safetensors file holds, and per tensor the statistics people ask for when two
// backends disagree (min, max, mean, NaN and Inf counts), plus a few leading values.

import { readSafetensors, readSafetensorsBytes, type SafeTensor } from "../io/safetensors.ts";
import { tensorStats, type TensorStats } from "../io/stats.ts";
import { numberArg, parse, positionals, processIo, type Io } from "./io.ts";
import { formatNumber, inert, printTable, toJson } from "./table.ts";

export const help = `usage: tinyseek inspect FILE [--values N] [--json]

Lists every tensor of a safetensors file (dtype, shape, min, max, mean, NaN and Inf counts, the first N values,
default 4) and its metadata. Small floats (F16, BF16, F8) are shown decoded; --json prints the same as JSON.`;

export interface TensorSummary extends TensorStats {
  name: string;
  dtype: string;
  shape: number[];
  first: number[];
}

function summarise(name: string, t: SafeTensor, firstCount: number): TensorSummary {
  const first = Array.from(t.data.subarray(0, firstCount) as ArrayLike<number | bigint>, Number);
  return { name, dtype: t.dtype, shape: [...t.shape], ...tensorStats(t.data), first };
}

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, { values: { type: "string" }, json: { type: "boolean" } });
  const [path] = positionals(given, ["FILE"], "tinyseek inspect FILE [--values N] [--json]");
  const count = numberArg("--values", values.values, 4, { integer: true, min: 0 });
  const bytes = await readSafetensorsBytes(path!);
  const file = readSafetensors(bytes);
  const stats = [...file.tensors].map(([name, t]) => summarise(name, t, count)).sort((a, b) => (a.name < b.name ? -1 : 1));
  if (values.json) {
    io.out(toJson({ file: path, bytes: bytes.length, metadata: file.metadata, tensors: stats }));
    return 0;
  }
  io.out(`${path}: ${stats.length} tensor(s), ${bytes.length} bytes`);
  const metadata = Object.entries(file.metadata);
  if (metadata.length > 0) {
    io.out("");
    printTable(io, metadata.map(([key, value]) => ({ metadata: inert(key), value: inert(value) })));
  }
  io.out("");
  printTable(io, stats.map((s) => ({
    tensor: inert(s.name), dtype: s.dtype, shape: `[${s.shape.join(", ")}]`, min: s.min, max: s.max, mean: s.mean, NaN: s.nan, Inf: s.inf,
    first: s.first.map(formatNumber).join(" ") + (s.elements > s.first.length ? " …" : ""),
  })));
  return 0;
}
