// Tables for every command that prints one: aligned columns in markdown form (readable in a terminal, pastable
// into an issue), or the same rows as JSON with `--json`. Numbers are formatted here so every table agrees.

import type { Io } from "./io.ts";

export type Cell = string | number | bigint | boolean | null | undefined;
export type Row = Record<string, Cell>;

export interface Column {
  readonly key: string;
  /** Header text (default: the key). */
  readonly title?: string;
  /** Default: right for numbers, left otherwise. */
  readonly align?: "left" | "right";
}

/** 4 significant digits; scientific notation for very small or large magnitudes; integers as they are. */
export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "Inf" : "-Inf";
  if (Object.is(v, -0)) return "-0";
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
}

/** Text from a file (a tensor name, a metadata value) as one short, inert cell: control characters as their
 *  Unicode pictures, so that a name cannot drive the terminal, and at most `max` characters. */
export function inert(text: string, max = 200): string {
  const shown = text.length > max ? `${text.slice(0, max)}…` : text;
  return shown.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => (c < " " ? String.fromCharCode(0x2400 + c.charCodeAt(0)) : c === "\x7f" ? "\u2421" : "\ufffd"));
}

export function formatCell(v: Cell): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return formatNumber(v);
  return String(v);
}

export function formatTable(rows: readonly Row[], columns?: readonly Column[]): string {
  const cols: Column[] = columns ? [...columns] : [...new Set(rows.flatMap((r) => Object.keys(r)))].map((key) => ({ key }));
  const cells = rows.map((r) => cols.map((c) => formatCell(r[c.key]).replace(/\|/g, "\\|")));
  const titles = cols.map((c) => c.title ?? c.key);
  // A loop, not Math.max(...cells): spreading 200,000 rows as arguments overflows the stack.
  const widths = cols.map((_, i) => cells.reduce((w, row) => Math.max(w, row[i]!.length), Math.max(3, titles[i]!.length)));
  const right = cols.map((c) => c.align === "right" || (c.align === undefined && rows.length > 0 && rows.every((r) => typeof r[c.key] === "number")));
  const line = (values: string[]) => `| ${values.map((v, i) => (right[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (right[i] ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [line(titles), rule, ...cells.map(line)].join("\n");
}

/** JSON that survives NaN, ±Infinity and bigint (as strings: plain JSON would turn them into null or throw). */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) => {
      if (typeof v === "bigint") return v.toString();
      if (typeof v === "number" && !Number.isFinite(v)) return String(v);
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
      return v;
    },
    2,
  );
}

/** Prints `rows` as a table, or `json` (default: the rows) when `asJson` is set. */
export function printTable(io: Io, rows: readonly Row[], options: { json?: boolean; columns?: readonly Column[]; value?: unknown } = {}): void {
  io.out(options.json ? toJson(options.value ?? rows) : formatTable(rows, options.columns));
}
