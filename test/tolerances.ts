// One comparison of a backend's output with the reference's for every backend-parameterised suite: the tolerance
// table of spec/backends.md (the one place its numbers live), read here, and the check each output must pass:
// |out − ref| ≤ atol + rtol·|ref| for every element, and NMSE ≤ nmse over outputs of 16 elements or more.
import { readFileSync } from "node:fs";
import type { Tensor } from "../src/tensor.ts";

export interface Tolerance {
  rtol: number;
  atol: number;
  nmse: number;
}

/** Copies and single float32 additions: exactly the reference's bits. */
export const EXACT: Tolerance = { rtol: 0, atol: 0, nmse: 0 };

/** The tolerance table of spec/backends.md: rows `| kernel | backend | rtol | atol | nmse | ... |`, keyed "kernel/backend". */
export function readTolerances(kernels: readonly string[]): Map<string, Tolerance> {
  const text = readFileSync(new URL("../spec/backends.md", import.meta.url), "utf8");
  const table = new Map<string, Tolerance>();
  for (const line of text.split("\n")) {
    const cells = line.split("|").map((c) => c.trim().replace(/`/g, ""));
    if (cells.length < 7 || !kernels.includes(cells[1]!)) continue;
    const [rtol, atol, nmse] = cells.slice(3, 6).map(Number) as [number, number, number];
    if ([rtol, atol, nmse].some(Number.isNaN)) throw new Error(`spec/backends.md: unreadable tolerance row: ${line}`);
    table.set(`${cells[1]}/${cells[2]}`, { rtol, atol, nmse });
  }
  return table;
}

/** The worst errors seen per key ("kernel/backend"): TINYSEEK_TOLERANCE_REPORT prints them (how spec/ was calibrated). */
export const worst = new Map<string, { nmse: number; abs: number; rel: number }>();
const NMSE_MIN_ELEMENTS = 16;

/** With TINYSEEK_TOLERANCE_REPORT set, prints the worst errors seen per kernel and backend (a suite's afterAll). */
export function reportWorst(): void {
  if (!process.env.TINYSEEK_TOLERANCE_REPORT) return;
  const lines = ["| kernel / backend | worst nmse | worst abs | worst rel |", "|---|---|---|---|"];
  for (const [key, w] of [...worst].sort()) {
    lines.push(`| ${key} | ${w.nmse.toExponential(1)} | ${w.abs.toExponential(1)} | ${w.rel.toExponential(1)} |`);
  }
  console.log(lines.join("\n"));
}

/** Throws naming `where`, how many elements fail, the worst one with its index, and where NaN appeared. */
export function checkTolerance(where: string, key: string, out: Tensor, ref: Tensor, tol: Tolerance): void {
  if (out.shape.join() !== ref.shape.join()) throw new Error(`${where}: shape [${out.shape}], reference [${ref.shape}]`);
  let bad = 0, num = 0, den = 0, worstAt = -1, worstExcess = 0, maxAbs = 0, maxRel = 0, nan = -1;
  for (let i = 0; i < ref.data.length; i++) {
    const o = out.data[i]!, r = ref.data[i]!;
    // A non-finite value on either side must be matched exactly: a finite score where the reference masks with -∞
    // (indexScores past a query's position) is as wrong as a NaN.
    if (Number.isNaN(o) !== Number.isNaN(r) || ((!Number.isFinite(o) || !Number.isFinite(r)) && o !== r)) {
      bad++;
      if (nan < 0) nan = i;
      continue;
    }
    const err = Math.abs(o - r);
    if (!Number.isFinite(r)) continue;
    const excess = err / (tol.atol + tol.rtol * Math.abs(r));
    if (excess > 1) bad++;
    if (excess > worstExcess || worstAt < 0) [worstExcess, worstAt] = [excess, i];
    maxAbs = Math.max(maxAbs, err);
    if (r !== 0) maxRel = Math.max(maxRel, err / Math.abs(r));
    num += err * err;
    den += r * r;
  }
  // Against max(‖ref‖², n·atol²): an output far below atol (a few elements summing to nearly nothing) is judged
  // by the per-element bound alone, where a relative measure would only measure its cancellation.
  const nmse = num / Math.max(den, ref.data.length * tol.atol ** 2) || 0;
  const seen = worst.get(key) ?? { nmse: 0, abs: 0, rel: 0 };
  worst.set(key, { nmse: Math.max(seen.nmse, nmse), abs: Math.max(seen.abs, maxAbs), rel: Math.max(seen.rel, maxRel) });
  // NMSE over fewer than 16 elements is the relative error of a few sums, which cancellation inflates while every
  // element sits well inside atol (spec/backends.md): such outputs are judged element by element.
  if (bad === 0 && (nmse <= tol.nmse || ref.data.length < NMSE_MIN_ELEMENTS)) return;
  const index = (i: number) => {
    const idx: number[] = [];
    for (let d = ref.shape.length - 1; d >= 0; d--) {
      idx.unshift(i % ref.shape[d]!);
      i = Math.floor(i / ref.shape[d]!);
    }
    return `[${idx}]`;
  };
  const lines = [
    `${where}`,
    `  ${bad} of ${ref.data.length} elements over atol ${tol.atol} + rtol ${tol.rtol}·|ref|; nmse ${nmse.toExponential(2)} (bound ${tol.nmse})`,
  ];
  if (worstAt >= 0) lines.push(`  worst at ${index(worstAt)}: ${out.data[worstAt]} vs reference ${ref.data[worstAt]}`);
  if (nan >= 0) lines.push(`  non-finite at ${index(nan)}: ${out.data[nan]} vs reference ${ref.data[nan]}`);
  throw new Error(lines.join("\n"));
}
