// Lesson 1: masks and attention, and the two time-decay variants (src/masks.ts, src/attention/attention.ts,
// src/attention/decay.ts). The computations only; notebooks/01-masks-and-attention.ipynb tells the story.
import { attention } from "../src/attention/attention.ts";
import { decayAttention, type DecayMode } from "../src/attention/decay.ts";
import { blockLocal, causal, combine, padding, slidingWindow, type Mask } from "../src/masks.ts";
import { randBounded, Random } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";

/** The mask builders side by side at T = 10: name, builder call, the bits and how many keys each query sees. */
export function maskGallery(T = 10): { name: string; call: string; mask: Mask; visible: number }[] {
  const entries: [string, string, Mask][] = [
    ["causal", `causal(${T})`, causal(T)],
    ["sliding window", `slidingWindow(${T}, 3)`, slidingWindow(T, 3)],
    ["block-local", `blockLocal(${T}, 4, 2)`, blockLocal(T, 4, 2)],
    ["padding (row b = 0)", `padding([7, ${T}], ${T})`, padding([7, T], T)],
    ["causal AND padding", `combine(causal(${T}), padding([7, ${T}], ${T}))`, combine(causal(T), padding([7, T], T))],
  ];
  return entries.map(([name, call, mask]) => ({ name, call, mask, visible: mask.data.slice(0, T * T).reduce((a, b) => a + b, 0) }));
}

/** Rows of the first [Tq, Tk] plane of a mask, as numbers. */
export const maskRows = (m: Mask): number[][] => {
  const [Tq, Tk] = m.shape.slice(-2) as [number, number];
  return Array.from({ length: Tq }, (_, q) => Array.from(m.data.subarray(q * Tk, (q + 1) * Tk)));
};

/** Seeded q, k, v of one head: [1, 1, T, Dh]. */
export function seededQkv(T = 10, Dh = 8, seed = 7): { q: Tensor; k: Tensor; v: Tensor } {
  const rng = new Random(seed);
  return { q: randBounded(rng, [1, 1, T, Dh]), k: randBounded(rng, [1, 1, T, Dh]), v: randBounded(rng, [1, 1, T, Dh]) };
}

/** Attention probabilities [Tq][Tk] of head 0 under a mask (or none). */
export function probsUnder(mask: Mask | undefined, T = 10): number[][] {
  const { q, k, v } = seededQkv(T);
  const { probs } = attention(q, k, v, { mask });
  return Array.from({ length: T }, (_, i) => Array.from(probs.data.subarray(i * T, (i + 1) * T)));
}

/** Facts a reader can check: each causal row sums to 1, hidden keys get exactly 0, a fully hidden row is zeros. */
export function attentionFacts(T = 10) {
  const causalProbs = probsUnder(causal(T), T);
  const rowSums = causalProbs.map((r) => r.reduce((a, b) => a + b, 0));
  const hiddenMass = causalProbs.reduce((s, r, i) => s + r.slice(i + 1).reduce((a, b) => a + b, 0), 0);
  const padded = probsUnder(combine(causal(T), padding([7], T)), T); // queries 7.. are padding
  const paddedRowSum = padded[T - 1]!.reduce((a, b) => a + b, 0);
  return { maxRowSumError: Math.max(...rowSums.map((s) => Math.abs(s - 1))), hiddenMass, paddedRowSum };
}

/**
 * The decay experiment. Every key is the same vector k, so plain attention spreads the last query's weight evenly
 * over all T keys and only the decay can make a difference. The query is +k (agrees with every key) or -k
 * (disagrees). "relative" adds (i - j)·ln γ to each score; "as-written" scales key j by γ^j.
 */
export function decayProfiles(T = 16, gamma = 0.8, Dh = 8, seed = 3) {
  const rng = new Random(seed);
  const one = randBounded(rng, [Dh]).data;
  const k = { shape: [1, 1, T, Dh], data: new Float32Array(T * Dh) };
  for (let j = 0; j < T; j++) k.data.set(one, j * Dh);
  const v = randBounded(rng, [1, 1, T, Dh]);
  const rows: { mode: string; sign: string; key: number; weight: number }[] = [];
  const lastRow = (probs: Tensor) => Array.from(probs.data.subarray((T - 1) * T, T * T));
  for (const sign of [1, -1]) {
    const q = { shape: [1, 1, T, Dh], data: new Float32Array(T * Dh) };
    for (let i = 0; i < T; i++) for (let d = 0; d < Dh; d++) q.data[i * Dh + d] = (sign * 2 * one[d]!) / Math.hypot(...one) * Math.sqrt(Dh);
    const label = sign > 0 ? "q·k > 0" : "q·k < 0";
    const series: [string, number[]][] = [["no decay", lastRow(attention(q, k, v, { mask: causal(T) }).probs)]];
    for (const mode of ["relative", "as-written"] as DecayMode[]) series.push([mode, lastRow(decayAttention(q, k, v, { gamma, mode }).probs)]);
    for (const [mode, weights] of series) weights.forEach((weight, key) => rows.push({ mode, sign: label, key, weight }));
  }
  return rows;
}

/** Where the last query puts most weight in each (mode, sign): the newest key (T - 1) or the oldest (0). */
export function decaySummary(rows: ReturnType<typeof decayProfiles>) {
  const groups = new Map<string, { mode: string; sign: string; newest: number; oldest: number }>();
  for (const r of rows) {
    const id = `${r.mode}|${r.sign}`;
    const g = groups.get(id) ?? { mode: r.mode, sign: r.sign, newest: 0, oldest: 0 };
    if (r.key === 0) g.oldest = r.weight;
    g.newest = r.weight; // rows come in key order: the last one seen is the newest key
    groups.set(id, g);
  }
  return [...groups.values()].map((g) => ({ ...g, favours: Math.abs(g.newest - g.oldest) < 1e-6 ? "no one" : g.newest > g.oldest ? "recent keys" : "old keys" }));
}
