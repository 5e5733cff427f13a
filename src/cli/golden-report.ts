// The table `golden check` prints (src/cli/golden.ts), also shown by the golden page in a browser (web/golden/):
// node-free, so that both print the same rows from the same results.

import type { Comparison } from "../io/compare.ts";
import type { CheckResult } from "../io/golden.ts";
import type { Io } from "./io.ts";
import { printTable, type Row } from "./table.ts";

function summaryRow(r: CheckResult, name: (file: string) => string): Row {
  const worst = (key: "maxAbsError" | "maxRelError" | "normalisedError") =>
    r.comparisons.length === 0 ? undefined : Math.max(...r.comparisons.map((c: Comparison) => c[key]));
  return {
    file: name(r.file), outputs: r.comparisons.length, "max abs err": worst("maxAbsError"), "max rel err": worst("maxRelError"),
    "norm err": worst("normalisedError"), verdict: r.outcome,
  };
}

/**
 * The table of `golden check`: one row per file (worst errors over its outputs, the verdict), then each failure's
 * message and the counts; 1 if any file failed. `name` shows a file (its base name on the command line).
 */
export function goldenReport(io: Io, results: CheckResult[], json: boolean | undefined, what: string, name: (file: string) => string): number {
  const failures = results.filter((r) => r.outcome === "fail");
  if (json) {
    printTable(io, [], { json: true, value: results });
  } else {
    printTable(io, results.map((r) => summaryRow(r, name)));
    for (const r of results) if (r.outcome !== "ok") io.out(`\n${name(r.file)}: ${r.outcome}\n${r.message}`);
    const count = (o: string) => results.filter((r) => r.outcome === o).length;
    io.out(`\n${count("ok")} ok, ${failures.length} failed, ${count("not supported")} not supported (${what})`);
    const sources = [...new Set(results.map((r) => r.toleranceSource).filter((t) => t !== undefined))];
    if (sources.length > 0) io.out(`tolerance: ${sources.length === 1 ? sources[0] : "each case's registered tolerance (a file may tighten it, never loosen it)"}`);
  }
  return failures.length > 0 ? 1 : 0;
}
