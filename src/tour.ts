// A guided tour of the reference core for a newcomer: the four attention masks drawn as grids, one attention
// computation with its probabilities, and the two time decays side by side. Everything comes from seeded data, so
// the tour prints the same text on every machine. `tinyseek tour` prints it (src/cli/tour.ts).

import { attention } from "./attention/attention.ts";
import { decayAttention } from "./attention/decay.ts";
import { checkInteger } from "./errors.ts";
import { blockLocal, causal, padding, renderMask, slidingWindow, type Mask } from "./masks.ts";
import { randBounded, Random } from "./random.ts";
import type { Tensor } from "./tensor.ts";

export interface TourMask {
  name: string;
  explanation: string;
  /** One string per query row: "■" visible, "·" hidden, separated by spaces. */
  grid: string[];
}

export interface TourReport {
  seed: number;
  masks: TourMask[];
  attention: { tokens: number; headDim: number; scores: number[][]; probs: number[][] };
  decay: { gamma: number; keys: number; none: number[]; relative: number[]; asWritten: number[]; asWrittenNegative: number[] };
}

/** Runs the tour's computations on seeded data. */
export function runTour(seed = 7): TourReport {
  checkInteger("seed", seed, 0, 2 ** 32 - 1);
  const grid = (m: Mask, b = 0) => renderMask(m, b).split("\n");
  const masks: TourMask[] = [
    {
      name: "causal, 4 new tokens after 3 cached (offset 3)",
      explanation: "Each token sees itself and everything before it. The 3 keys on the left are already in the KV cache, " +
        "so the first new token (absolute position 3) sees 4 keys, not 1.",
      grid: grid(causal(4, 7, 3)),
    },
    {
      name: "padding, a batch row of length 3 padded to 5",
      explanation: "Keys past the row's length are invisible, and the padded queries see nothing at all: their rows " +
        "are empty, and attention returns zeros there, never NaN.",
      grid: grid(padding([3, 5], 5), 0),
    },
    {
      name: "sliding window of 3",
      explanation: "Each token sees itself and the 2 tokens before it: w = 3 keys in all, query included " +
        "(FlashAttention's window_size = (w - 1, 0)).",
      grid: grid(slidingWindow(7, 3)),
    },
    {
      name: "block-local, segments of 3 with an overlap of 2",
      explanation: "Tokens are cut into segments of 3. A token sees its own segment up to itself, plus the 2 tokens just " +
        "before the segment starts, so memory stays bounded however long the text grows.",
      grid: grid(blockLocal(9, 3, 2)),
    },
  ];

  // One head, 5 tokens, head dimension 4, causal.
  const T = 5, Dh = 4;
  const rng = new Random(seed);
  const [q, k, v] = [randBounded(rng, [1, 1, T, Dh]), randBounded(rng, [1, 1, T, Dh]), randBounded(rng, [1, 1, T, Dh])];
  const { probs } = attention(q, k, v, { mask: causal(T) });
  const scores = rows(T, T, (i, j) => (j <= i ? dot(q, k, i, j, Dh) / Math.sqrt(Dh) : -Infinity));

  // Decay: 8 keys with the same content, so only their age can tell them apart; the last query looks back.
  const keys = 8, gamma = 0.7, D = 4;
  const content = randBounded(new Random(seed + 1), [D]).data;
  const repeat = (sign: number, n: number) => ({ shape: [1, 1, n, D], data: new Float32Array(n * D).map((_, i) => sign * content[i % D]!) });
  const k8 = repeat(1, keys), v8 = repeat(1, keys);
  const lastRow = (t: Tensor) => [...t.data.subarray((keys - 1) * keys, keys * keys)];
  const decayRow = (sign: number, mode?: "relative" | "as-written", g = gamma) =>
    lastRow(decayAttention(repeat(sign, keys), k8, v8, { gamma: g, mode }).probs);

  return {
    seed,
    masks,
    attention: { tokens: T, headDim: Dh, scores, probs: rows(T, T, (i, j) => probs.data[i * T + j]!) },
    decay: {
      gamma, keys,
      none: decayRow(1, "relative", 1),
      relative: decayRow(1, "relative"),
      asWritten: decayRow(1, "as-written"),
      asWrittenNegative: decayRow(-1, "as-written"),
    },
  };
}

function dot(q: Tensor, k: Tensor, i: number, j: number, D: number): number {
  let sum = 0;
  for (let d = 0; d < D; d++) sum += q.data[i * D + d]! * k.data[j * D + d]!;
  return sum;
}

const rows = (R: number, C: number, f: (i: number, j: number) => number) =>
  Array.from({ length: R }, (_, i) => Array.from({ length: C }, (_, j) => f(i, j)));

const SHADES = [" ", "░", "▒", "▓", "█"];
/** A probability as a shade: blank for 0, then four steps up to 1. */
const shade = (p: number) => SHADES[p === 0 ? 0 : Math.min(4, 1 + Math.floor(p * 4))]!;
const bar = (p: number, width = 10) => "█".repeat(Math.round(p * width)).padEnd(width, "·");
const fixed = (x: number) => (Math.abs(x) < 0.005 ? 0 : x).toFixed(2); // no "-0.00"

/** The tour as terminal text: short sections, each with its picture and a few plain words. */
export function renderTour(report: TourReport): string {
  const out: string[] = [];
  const heading = (title: string) => out.push("", title, "─".repeat(title.length));
  out.push(`tinyseek tour (seed ${report.seed}): masks, attention and time decay, computed by the reference`);

  heading("1. Masks: who may look at whom");
  out.push("Rows are queries (the token doing the looking), columns are keys (the tokens it may look at).",
    "■ means visible, · means hidden. A mask is data: the same grid drives every backend.");
  for (const m of report.masks) {
    out.push("", `  ${m.name}`, ...m.grid.map((line, i) => `    q${i} ${line}`), ...wrap(m.explanation, 96, "  "));
  }

  heading("2. One attention computation");
  const { tokens: T, headDim, scores, probs } = report.attention;
  out.push(...wrap(`${T} tokens, one head of dimension ${headDim}, causal. Score = q·k / √${headDim}; a softmax over each row ` +
    "turns the scores into probabilities that sum to 1, and hidden keys get exactly 0. The output of a row is the " +
    "probability-weighted average of the value vectors.", 100, ""), "");
  const header = `         ${Array.from({ length: T }, (_, j) => `k${j}`.padStart(7)).join("")}`;
  out.push("  scores", header);
  scores.forEach((row, i) => out.push(`    q${i}   ${row.map((s) => (s === -Infinity ? "·" : fixed(s)).padStart(7)).join("")}`));
  out.push("", "  probabilities", header);
  probs.forEach((row, i) => {
    const cells = row.map((p, j) => (j > i ? "·".padStart(7) : ` ${shade(p)}${fixed(p).padStart(5)}`)).join("");
    const sum = row.reduce((a, b) => a + b, 0);
    out.push(`    q${i}   ${cells}   sum ${sum.toFixed(3)}`);
  });
  out.push("  Shading: ░ < 0.25 ≤ ▒ < 0.5 ≤ ▓ < 0.75 ≤ █. Query 0 can only see itself, so its one weight is 1.");

  heading("3. Time decay: should old tokens fade?");
  const d = report.decay;
  out.push(`${d.keys} keys with identical content, so only their age differs; γ = ${d.gamma}. Weights of the last query:`, "");
  const columns: [string, string, number[]][] = [
    ["no decay", "(γ = 1)", d.none], ["relative", "(default)", d.relative],
    ["as written", "q·k > 0", d.asWritten], ["as written", "q·k < 0", d.asWrittenNegative],
  ];
  const cell = (text: string) => text.padEnd(18);
  const line = (first: string, rest: string[]) => `  ${first.padEnd(11)}${rest.map(cell).join("")}`.trimEnd();
  out.push(line("key (age)", columns.map(([a]) => a)), line("", columns.map(([, b]) => b)));
  for (let j = 0; j < d.keys; j++) out.push(line(`${j} (${d.keys - 1 - j})`, columns.map(([, , w]) => `${bar(w[j]!)} ${fixed(w[j]!)}`)));
  out.push("", ...wrap(
    "Relative decay adds (i - j)·ln γ to each score: every weight is multiplied by γ^age, so old tokens fade whatever " +
    "the content (ALiBi, RetNet). The material's version multiplies key j by γ^j instead: that shrinks the newest keys " +
    "the most, so when q·k > 0 the OLDEST token gets the most weight, and when q·k < 0 the effect flips. tinyseek " +
    "keeps it as `decay: \"as-written\"` to show the flaw; use `relative`.", 100, ""));
  return out.join("\n");
}

function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(indent + line);
  return lines;
}
