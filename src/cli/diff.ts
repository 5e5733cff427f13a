// `tinyseek diff A B`: compare two files of named tensors (two traces of one prompt on two backends, say) in forward
// order and say where they first part, with both sides' statistics.

import { DEFAULT_TOLERANCE } from "../io/golden.ts";
import { diffTensors, type TensorDiff } from "../io/diff.ts";
import { readSafetensors, readSafetensorsBytes } from "../io/safetensors.ts";
import type { TensorStats } from "../io/stats.ts";
import { TRACE_TOLERANCE } from "../trace.ts";
import { numberArg, parse, positionals, processIo, type Io } from "./io.ts";
import { formatNumber, inert, printTable, toJson } from "./table.ts";

export const help = `usage: tinyseek diff A B [--rtol R] [--atol A] [--nmse N] [--json]

Compares the tensors two safetensors files share, in A's forward order (the "order" metadata that traces carry;
otherwise A's header order), and names the first one over tolerance, with min, max, mean, NaN and Inf counts on
both sides. Tolerance per element |b - a| <= atol + rtol·|a| and NMSE <= nmse over the tensor. Defaults: for two
traces of the model (\`step --trace\`), the whole-model rule \`step --compare\` uses, rtol ${TRACE_TOLERANCE.rtol}, atol ${TRACE_TOLERANCE.atol},
nmse ${TRACE_TOLERANCE.nmse}; for other files rtol ${DEFAULT_TOLERANCE.rtol}, atol ${DEFAULT_TOLERANCE.atol}, nmse ${DEFAULT_TOLERANCE.nmse} (spec/golden.md).
Integer tensors must match exactly.
Exit 1 when some shared tensor differs.`;

const stats = (s: TensorStats) =>
  `min ${formatNumber(s.min)}, max ${formatNumber(s.max)}, mean ${formatNumber(s.mean)}, NaN ${s.nan}, Inf ${s.inf}`;

const number = (flag: string, value: string | undefined, fallback: number) => numberArg(`--${flag}`, value, fallback, { min: 0 });

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, {
    rtol: { type: "string" }, atol: { type: "string" }, nmse: { type: "string" }, json: { type: "boolean" },
  });
  const [pathA, pathB] = positionals(given, ["A", "B"], "tinyseek diff A B [--rtol R] [--atol A] [--nmse N] [--json]");
  // Flags are checked before any file is read: a bad number is a usage error whatever the files are.
  const flag = (name: "rtol" | "atol" | "nmse") => (values[name] === undefined ? undefined : number(name, values[name], 0));
  const chosen = { rtol: flag("rtol"), atol: flag("atol"), nmse: flag("nmse") };
  const a = readSafetensors(await readSafetensorsBytes(pathA!));
  const b = readSafetensors(await readSafetensorsBytes(pathB!));
  // Two model traces are held to the one whole-model rule (the one `step --compare` applies), other files to the
  // per-component default.
  const traces = a.metadata.format === "tinyseek-trace" && b.metadata.format === "tinyseek-trace";
  const fallback = traces ? TRACE_TOLERANCE : DEFAULT_TOLERANCE;
  const tolerance = { rtol: chosen.rtol ?? fallback.rtol, atol: chosen.atol ?? fallback.atol, nmse: chosen.nmse ?? fallback.nmse };
  const diff = diffTensors(a, b, tolerance);
  const failing = diff.tensors.filter((t) => !t.comparison.pass).length;
  if (values.json) {
    io.out(toJson({ tolerance, firstDeparture: diff.firstDeparture?.name ?? null, tensors: diff.tensors, onlyInA: diff.onlyInA, onlyInB: diff.onlyInB }));
    return failing > 0 ? 1 : 0;
  }
  printTable(io, diff.tensors.map((t: TensorDiff) => ({
    tensor: inert(t.name), elements: t.comparison.elements, mismatches: t.comparison.mismatches, "max abs err": t.comparison.maxAbsError,
    "max rel err": t.comparison.maxRelError, "norm err": t.comparison.normalisedError, verdict: t.comparison.pass ? "ok" : "differs",
  })));
  if (diff.onlyInA.length > 0) io.out(`\nonly in ${pathA}: ${inert(diff.onlyInA.join(", "), 2000)}`);
  if (diff.onlyInB.length > 0) io.out(`\nonly in ${pathB}: ${inert(diff.onlyInB.join(", "), 2000)}`);
  const first = diff.firstDeparture;
  if (!first) {
    io.out(`\n${diff.tensors.length} shared tensor(s), all within tolerance`);
    return 0;
  }
  io.out(`\nfirst departure: ${inert(first.name)} (${failing} of ${diff.tensors.length} shared tensors differ)`);
  io.out(`  A: ${stats(first.a)}\n  B: ${stats(first.b)}\n${first.comparison.message}`);
  return 1;
}
