// `tinyseek inspect FILE`: what a safetensors file holds, and per tensor the statistics people ask for when two
// backends disagree (min, max, mean, NaN and Inf counts), plus a few leading values.

import { readBytes, readSafetensors, type SafeTensor } from "../io/safetensors.ts";
import { parse, positionals, processIo, UsageError, type Io } from "./io.ts";
import { formatNumber, printTable, toJson } from "./table.ts";

export const help = `usage: tinyseek inspect FILE [--values N] [--json]

Lists every tensor of a safetensors file (dtype, shape, min, max, mean, NaN and Inf counts, the first N values,
default 4) and its metadata. Small floats (F16, BF16, F8) are shown decoded; --json prints the same as JSON.`;

export interface TensorStats {
  name: string;
  dtype: string;
  shape: number[];
  elements: number;
  min: number;
  max: number;
  mean: number;
  nan: number;
  inf: number;
  first: number[];
}

/** Statistics over finite values (min/max/mean are NaN when there are none), in float64. */
export function tensorStats(name: string, t: SafeTensor, firstCount: number): TensorStats {
  let min = Infinity, max = -Infinity, sum = 0, finite = 0, nan = 0, inf = 0;
  const n = t.data.length;
  const first: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = Number(t.data[i]!);
    if (i < firstCount) first.push(v);
    if (Number.isNaN(v)) nan++;
    else if (!Number.isFinite(v)) inf++;
    else {
      finite++;
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  const none = finite === 0;
  return { name, dtype: t.dtype, shape: [...t.shape], elements: n, min: none ? NaN : min, max: none ? NaN : max, mean: none ? NaN : sum / finite, nan, inf, first };
}

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, { values: { type: "string" }, json: { type: "boolean" } });
  const [path] = positionals(given, ["FILE"], "tinyseek inspect FILE [--values N] [--json]");
  const count = values.values === undefined ? 4 : Number(values.values);
  if (!Number.isInteger(count) || count < 0) throw new UsageError(`--values: expected an integer >= 0, got ${JSON.stringify(values.values)}`);
  const bytes = await readBytes(path!);
  const file = readSafetensors(bytes);
  const stats = [...file.tensors].map(([name, t]) => tensorStats(name, t, count)).sort((a, b) => (a.name < b.name ? -1 : 1));
  if (values.json) {
    io.out(toJson({ file: path, bytes: bytes.length, metadata: file.metadata, tensors: stats }));
    return 0;
  }
  io.out(`${path}: ${stats.length} tensor(s), ${bytes.length} bytes`);
  const metadata = Object.entries(file.metadata);
  if (metadata.length > 0) {
    io.out("");
    printTable(io, metadata.map(([key, value]) => ({ metadata: key, value: value.length > 200 ? `${value.slice(0, 200)}…` : value })));
  }
  io.out("");
  printTable(io, stats.map((s) => ({
    tensor: s.name, dtype: s.dtype, shape: `[${s.shape.join(", ")}]`, min: s.min, max: s.max, mean: s.mean, NaN: s.nan, Inf: s.inf,
    first: s.first.map(formatNumber).join(" ") + (s.elements > s.first.length ? " …" : ""),
  })));
  return 0;
}
