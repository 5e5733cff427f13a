// The notebooks' one plotting helper: Observable Plot drawing into linkedom's DOM, so a picture is an SVG string made
// without a browser, the same bytes on every run. Every function returns a `Picture`: its `svg` text for tests, and
// a `Symbol.for("Jupyter.display")` method that a notebook kernel (Deno's) calls to show it inline. Nothing here
// depends on Deno.
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";

export const DISPLAY: unique symbol = Symbol.for("Jupyter.display") as never;

/** Something a notebook cell can end with to show it: an SVG picture, a table or a block of text. */
export interface Shown {
  [DISPLAY](): Record<string, string>;
}

export interface Picture extends Shown {
  readonly svg: string;
}

/** Observable Plot options without `document`, which this module supplies. */
export type PlotOptions = Omit<Plot.PlotOptions, "document">;

/** Any Observable Plot chart as a standalone SVG: white background, black ink (reads the same in dark mode). */
export function plot(options: PlotOptions): Picture {
  const { document } = parseHTML("<!doctype html><html><body></body></html>");
  if (options.title || options.subtitle || options.caption) throw new Error("plot: put titles in the notebook's text, the SVG stays bare");
  const node = Plot.plot({
    ...options,
    document,
    style: { background: "white", color: "black", ...(typeof options.style === "object" ? options.style : {}) },
  } as Plot.PlotOptions) as unknown as { outerHTML: string };
  const svg = node.outerHTML.replace(/^<svg /, '<svg xmlns="http://www.w3.org/2000/svg" ');
  if (!svg.startsWith("<svg")) throw new Error("plot: a legend makes HTML, not SVG; label the marks instead");
  return { svg, [DISPLAY]: () => ({ "image/svg+xml": svg, "text/plain": `[picture: ${svg.length} bytes of SVG]` }) };
}

/** A matrix as a grid of cells (rows top to bottom): attention probabilities, masks, images. */
export interface HeatmapOptions {
  x?: string; // axis label for columns
  y?: string; // axis label for rows
  scheme?: string; // an Observable Plot colour scheme (default "blues")
  domain?: [number, number]; // colour domain (default: the data's range)
  cell?: number; // pixels per cell (default 20)
  cellHeight?: number; // default: cell
  text?: boolean; // print each value in its cell (small grids only)
  xLabels?: readonly string[];
  yLabels?: readonly string[];
  marginLeft?: number; // default: room for the longest row label
}

export function heatmap(rows: readonly (readonly number[])[], options: HeatmapOptions = {}): Picture {
  const cell = options.cell ?? 20;
  const R = rows.length;
  const C = rows[0]?.length ?? 0;
  // Cells are placed by index, so repeated labels (two "o" tokens) stay separate rows; labels only name the ticks.
  const xl = (j: number) => options.xLabels?.[j] ?? String(j);
  const yl = (i: number) => options.yLabels?.[i] ?? String(i);
  const data = rows.flatMap((row, i) => row.map((v, j) => ({ x: j, y: i, v })));
  const top = options.domain?.[1] ?? Math.max(...data.map((d) => d.v));
  const every = (n: number) => Math.max(1, Math.ceil(n / 24)); // at most ~24 tick labels an axis
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const longest = Math.max(0, ...range(R).map((i) => yl(i).length));
  const marginLeft = options.marginLeft ?? Math.max(40, 16 + 6.5 * longest);
  return plot({
    width: marginLeft + C * cell + 20,
    height: 40 + R * (options.cellHeight ?? cell) + 30,
    marginLeft,
    padding: 0.05,
    x: { label: options.x ?? null, domain: range(C), ticks: range(C).filter((j) => j % every(C) === 0), tickFormat: xl, axis: "top" },
    y: { label: options.y ?? null, domain: range(R), ticks: range(R).filter((i) => i % every(R) === 0), tickFormat: yl },
    color: { scheme: (options.scheme ?? "blues") as Plot.ColorScheme, domain: options.domain },
    marks: [
      Plot.cell(data, { x: "x", y: "y", fill: "v" }),
      ...(options.text ? [Plot.text(data, { x: "x", y: "y", text: (d: { v: number }) => (d.v === 0 ? "" : d.v.toFixed(2)), fill: (d: { v: number }) => (d.v > 0.6 * top ? "white" : "black"), fontSize: 9 })] : []),
    ],
  });
}

/** A 0/1 mask as dark (visible) and light (hidden) squares. */
export function maskGrid(bits: ArrayLike<number>, Tq: number, Tk: number, options: Omit<HeatmapOptions, "domain" | "scheme"> = {}): Picture {
  const rows = Array.from({ length: Tq }, (_, q) => Array.from({ length: Tk }, (_, k) => bits[q * Tk + k]!));
  return heatmap(rows, { x: "key", y: "query", ...options, scheme: "greys", domain: [-0.15, 1] });
}

/** An RGB image [3, H, W] with values in [0, 1], one square per pixel; lines every `grid` pixels (patch borders). */
export function image(data: ArrayLike<number>, H: number, W: number, options: { pixel?: number; grid?: number } = {}): Picture {
  const pixel = options.pixel ?? 8;
  const pixels = [];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const c = (k: number) => Math.round(255 * Math.min(1, Math.max(0, data[(k * H + y) * W + x]!)));
      pixels.push({ x, y, rgb: `rgb(${c(0)},${c(1)},${c(2)})` });
    }
  }
  const g = options.grid;
  const cuts = g ? Array.from({ length: Math.floor(Math.max(H, W) / g) + 1 }, (_, i) => i * g) : [];
  return plot({
    width: W * pixel + 50, height: H * pixel + 50, marginLeft: 30, marginTop: 30, marginRight: 20, marginBottom: 20,
    x: { domain: [0, W], axis: "top", label: null, ticks: g ? cuts : undefined },
    y: { domain: [H, 0], label: null, ticks: g ? cuts : undefined },
    marks: [
      Plot.rect(pixels, { x1: "x", x2: (d: { x: number }) => d.x + 1, y1: "y", y2: (d: { y: number }) => d.y + 1, fill: "rgb" }),
      ...(g ? [Plot.ruleX(cuts.filter((v) => v <= W), { stroke: "black", strokeOpacity: 0.6 }), Plot.ruleY(cuts.filter((v) => v <= H), { stroke: "black", strokeOpacity: 0.6 })] : []),
    ],
  });
}

/** Bars: one per row of `data`, grouped (fx) or stacked/coloured by `fill` when given. */
export function bars<T extends Record<string, unknown>>(
  data: readonly T[], options: { x: keyof T & string; y: keyof T & string; fill?: keyof T & string; fx?: keyof T & string; fxLabel?: string; yLabel?: string; xLabel?: string; width?: number; height?: number; rule?: number; logY?: boolean },
): Picture {
  return plot({
    width: options.width ?? 640,
    height: options.height ?? 260,
    marginLeft: 60,
    x: { label: options.xLabel ?? options.x, domain: firstSeen(data, options.x), ...(options.fx ? { axis: null } : {}) },
    fx: options.fx ? { label: options.fxLabel ?? null, domain: firstSeen(data, options.fx) } : undefined,
    y: { label: options.yLabel ?? options.y, grid: true, type: options.logY ? "log" : "linear", ...(options.logY ? { tickFormat: "~g" } : {}) },
    color: options.fill ? { type: "categorical", scheme: "tableau10", domain: firstSeen(data, options.fill) } : undefined,
    marks: [
      Plot.barY(data as T[], { x: options.x, y: options.y, fill: options.fill ?? "steelblue", fx: options.fx }),
      ...(options.fill && options.fx ? [Plot.text(data as T[], { x: options.x, y: options.y, fx: options.fx, text: options.fill, dy: -6, fontSize: 8 })] : []),
      ...(options.rule !== undefined ? [Plot.ruleY([options.rule], { stroke: "crimson", strokeDasharray: "4 3" })] : []),
      ...(options.logY ? [] : [Plot.ruleY([0])]),
    ],
  });
}

/** Lines, one per series, each labelled at its last point (no legend: legends are HTML). */
export function lines<T extends Record<string, unknown>>(
  data: readonly T[], options: { x: keyof T & string; y: keyof T & string; series?: keyof T & string; xLabel?: string; yLabel?: string; logX?: boolean; logY?: boolean; width?: number; height?: number; dots?: boolean },
): Picture {
  const z = options.series;
  return plot({
    width: options.width ?? 640,
    height: options.height ?? 300,
    marginLeft: 60,
    marginRight: z ? 110 : 20,
    x: { label: options.xLabel ?? options.x, type: options.logX ? "log" : "linear", ...(options.logX ? { tickFormat: "~g" } : {}) },
    y: { label: options.yLabel ?? options.y, type: options.logY ? "log" : "linear", grid: true, ...(options.logY ? { tickFormat: "~g" } : {}) },
    color: z ? { type: "categorical", scheme: "tableau10", domain: firstSeen(data, z) } : undefined,
    marks: [
      Plot.line(data as T[], { x: options.x, y: options.y, stroke: z ?? "steelblue", z }),
      ...(options.dots ? [Plot.dot(data as T[], { x: options.x, y: options.y, fill: z ?? "steelblue", r: 3 })] : []),
      ...(z ? [Plot.text(data as T[], Plot.selectLast({ x: options.x, y: options.y, z, text: z, fill: z, textAnchor: "start", dx: 5 }))] : []),
    ],
  });
}

/** The distinct values of one field in order of first appearance: colours follow the data's order, not the alphabet. */
function firstSeen<T extends Record<string, unknown>>(data: readonly T[], key: keyof T): unknown[] {
  return [...new Set(data.map((d) => d[key]))];
}

/** Rows of objects as a Markdown table (numbers to 4 significant digits). */
export function table(rows: readonly Record<string, unknown>[]): Shown & { readonly markdown: string } {
  const keys = Object.keys(rows[0] ?? {});
  const cell = (v: unknown) => (typeof v === "number" ? fmt(v) : v === null || v === undefined ? "—" : String(v)).replace(/\|/g, "\\|");
  const markdown = [
    `| ${keys.join(" | ")} |`,
    `| ${keys.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${keys.map((k) => cell(r[k])).join(" | ")} |`),
  ].join("\n");
  return { markdown, [DISPLAY]: () => ({ "text/markdown": markdown, "text/plain": markdown }) };
}

/** A block of preformatted text (mask grids, report tables) shown as it is. */
export function text(s: string): Shown & { readonly text: string } {
  return { text: s, [DISPLAY]: () => ({ "text/plain": s }) };
}

/** 4 significant digits, integers as they are, tiny values in exponent form. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
