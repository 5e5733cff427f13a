// Everything the page shows about one prompt, from the model API of src/ (no model math here): the step record
// (src/step/record.ts: ops, routing, exits, prediction), the logit lens (src/research/lens.ts) and every head's
// attention with the MLA latent (src/research/run.ts), each a forward on the chosen backend, timed.

import type { Backend } from "../../src/backend.ts";
import type { Intervention } from "../../src/model/interventions.ts";
import type { Model } from "../../src/model/weights.ts";
import { logitLens, probabilities } from "../../src/research/lens.ts";
import { runWithCache } from "../../src/research/run.ts";
import { stepRecordAsync, type StepRecord } from "../../src/step/record.ts";
import type { TracedTensor } from "../../src/trace.ts";
import type { Tensor } from "../../src/tensor.ts";
import { byteTokenizer } from "../../src/model/tokenizer.ts";

/** Predictions listed in the next-token table. */
export const TOP = 10;

export interface LensCell {
  id: number;
  label: string;
  prob: number;
}

export interface LensView {
  /** "embed", "layers.0.out", … */
  points: string[];
  /** [point][position]: the lens's most probable token there. */
  top1: LensCell[][];
  /** [point]: the five most probable tokens after the last position. */
  last: LensCell[][];
}

export interface LayerAttention {
  layer: number;
  /** [H, T, Tk] softmax probabilities, or null when the kind has no probs point. */
  probs: TracedTensor | null;
  /** [1, T, r] MLA latent c_kv, or null for other kinds. */
  latent: TracedTensor | null;
}

export interface Timing {
  what: string;
  ms: number;
}

export interface Analysis {
  record: StepRecord;
  lens: LensView;
  attention: LayerAttention[];
  /** The logits [V] after the last position (the lens run's own output), which the page exposes for checks. */
  lastLogits: Float32Array;
  timings: Timing[];
}

export interface AnalysisOptions {
  backend: Backend;
  interventions: readonly Intervention[];
  /** Early exit threshold; undefined: the model's own (none for the tiny model). */
  exitThreshold?: number;
}

async function timed<R>(timings: Timing[], what: string, work: () => Promise<R>): Promise<R> {
  const started = performance.now();
  const result = await work();
  timings.push({ what, ms: performance.now() - started });
  return result;
}

export async function analyse(model: Model, prompt: string, tokens: readonly number[], options: AnalysisOptions): Promise<Analysis> {
  const { backend, interventions, exitThreshold } = options;
  const timings: Timing[] = [];
  const record = await timed(timings, "step forward", () => stepRecordAsync(model, prompt, tokens, { backend, interventions, exitThreshold, top: TOP, tokenizer: byteTokenizer }));
  const lens = await timed(timings, "logit-lens forward", () => logitLens(model, tokens, { backend, interventions, exitThreshold }));
  const cache = await timed(timings, "attention forward", () => runWithCache(model, tokens, { backend, interventions, exitThreshold, names: ["layers.*.attn.probs", "layers.*.attn.latent"] }));
  const attention = record.layers.map((l) => ({
    layer: l.layer,
    probs: cache.activations.get(`layers.${l.layer}.attn.probs`) ?? null,
    latent: cache.activations.get(`layers.${l.layer}.attn.latent`) ?? null,
  }));
  const V = lens.final.shape[1]!;
  const lastLogits = lens.final.data.slice((tokens.length - 1) * V, tokens.length * V);
  return { record, lens: lensView(lens.points, lens.logits), attention, lastLogits, timings };
}

function lensView(points: string[], logits: readonly Tensor[]): LensView {
  const label = byteTokenizer.tokenLabel;
  const top1: LensCell[][] = [];
  const last: LensCell[][] = [];
  for (const l of logits) {
    const T = l.shape[0]!;
    const row: LensCell[] = [];
    for (let t = 0; t < T; t++) {
      const p = probabilities(l, t);
      const id = ranked(p, 1)[0]!;
      row.push({ id, label: label(id), prob: p[id]! });
    }
    top1.push(row);
    const p = probabilities(l, T - 1);
    last.push(ranked(p, 5).map((id) => ({ id, label: label(id), prob: p[id]! })));
  }
  return { points, top1, last };
}

/** The ids of the `n` largest probabilities, ties to the lower id (as the step record orders them). */
function ranked(p: Float64Array, n: number): number[] {
  return Array.from(p.keys()).sort((a, b) => p[b]! - p[a]! || a - b).slice(0, n);
}
