// Activation patching (spec/research.md; Meng et al. 2022, Wang et al. 2023): run a clean and a corrupted prompt of
// the same length; for each layer and position (or head), rerun the corrupted prompt with that one activation taken
// from the clean run, and measure
//   m = logit(answer) − logit(wrong)      (or p(answer) when no wrong token is given)   at the last position
// reported as the normalised effect (m_patched − m_corrupt) / (m_clean − m_corrupt): 1 restores the clean
// behaviour, 0 does nothing.

import { argError, checkInteger, TinyseekError } from "../errors.ts";
import type { Model } from "../model/weights.ts";
import type { Tensor } from "../tensor.ts";
import type { TracedTensor } from "../trace.ts";
import { probabilities } from "./lens.ts";
import { run, runWithCache, type RunOptions } from "./run.ts";

/** resid: the residual entering each layer; attn, mlp: each sublayer's output; heads: each head's output (all positions). */
export type PatchPoint = "resid" | "attn" | "mlp" | "heads";
export const PATCH_POINTS: readonly PatchPoint[] = ["resid", "attn", "mlp", "heads"];

const pointName = (point: PatchPoint, l: number): string =>
  ({ resid: `layers.${l}.in`, attn: `layers.${l}.attn.out`, mlp: `layers.${l}.mlp.out`, heads: `layers.${l}.attn.heads` })[point];

export interface PatchingOptions extends RunOptions {
  clean: readonly number[];
  corrupt: readonly number[];
  answer: number;
  wrong?: number;
  point: PatchPoint;
}

export interface Patching {
  point: PatchPoint;
  metric: "logit difference" | "probability";
  clean: number;
  corrupt: number;
  /** Row labels: the layers (those with the point). */
  layers: number[];
  /** Column count: positions (resid, attn, mlp) or heads. */
  columns: "position" | "head";
  /** [layer row][column]: the normalised effect. */
  effect: number[][];
  /** [layer row][column]: the metric itself. */
  patched: number[][];
}

/** A hook replacing the given rows (positions along the token axis, or heads along the first) with `from`'s. */
export function patchFrom(from: TracedTensor, along: "position" | "head", indices: readonly number[]) {
  return (value: Tensor): Tensor => {
    const data = value.data.slice();
    const tokenAxis = value.shape.length === 3 ? 1 : 0;
    const T = value.shape[tokenAxis]!, width = value.shape[value.shape.length - 1]!;
    const planes = value.shape.length === 3 ? value.shape[0]! : 1;
    for (const i of indices) {
      if (along === "head") data.set(from.data.subarray(i * T * width, (i + 1) * T * width), i * T * width);
      else for (let h = 0; h < planes; h++) data.set(from.data.subarray((h * T + i) * width, (h * T + i + 1) * width), (h * T + i) * width);
    }
    return { shape: value.shape, data };
  };
}

export async function activationPatching(model: Model, options: PatchingOptions): Promise<Patching> {
  const { clean, corrupt, answer, wrong, point, ...rest } = options;
  const c = model.config;
  if (!PATCH_POINTS.includes(point)) throw argError("point", PATCH_POINTS.join(", "), point);
  if (clean.length !== corrupt.length) throw new TinyseekError(`patching: the clean and corrupted prompts must have the same token length, got ${clean.length} and ${corrupt.length}`);
  checkInteger("answer", answer, 0, c.vocab_size - 1);
  if (wrong !== undefined) checkInteger("wrong", wrong, 0, c.vocab_size - 1);
  const T = clean.length, V = c.vocab_size;
  const metric = (logits: Tensor): number => wrong !== undefined
    ? logits.data[(T - 1) * V + answer]! - logits.data[(T - 1) * V + wrong]!
    : probabilities(logits, T - 1)[answer]!;
  const layers = Array.from({ length: c.num_hidden_layers }, (_, l) => l);
  const names = layers.map((l) => pointName(point, l));
  const cleanRun = await runWithCache(model, clean, { ...rest, names });
  const mClean = metric(cleanRun.logits);
  const mCorrupt = metric((await run(model, corrupt, rest)).logits);
  if (mClean === mCorrupt) throw new TinyseekError(`patching: the metric is ${mClean} on both prompts, so no effect can be normalised; choose prompts or an answer that tell them apart`);
  const columns = point === "heads" ? c.num_attention_heads : T;
  const patched: number[][] = [], effect: number[][] = [];
  for (const [row, l] of layers.entries()) {
    patched.push([]);
    effect.push([]);
    for (let i = 0; i < columns; i++) {
      const hook = patchFrom(cleanRun.activations.get(names[row]!)!, point === "heads" ? "head" : "position", [i]);
      const m = metric((await run(model, corrupt, { ...rest, interventions: [...(rest.interventions ?? []), { hooks: [[names[row]!, hook]] }] })).logits);
      patched[row]!.push(m);
      effect[row]!.push((m - mCorrupt) / (mClean - mCorrupt));
    }
  }
  return { point, metric: wrong !== undefined ? "logit difference" : "probability", clean: mClean, corrupt: mCorrupt, layers, columns: point === "heads" ? "head" : "position", effect, patched };
}
