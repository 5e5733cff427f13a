// Where do two runs part? Given two files of named tensors (traces of one forward pass on two backends, or two
// golden files), compare the tensors they share in forward order and name the first one over tolerance, with
// statistics of both sides: a whole-model mismatch is then a question about one layer, not about the logits.

import { TinyseekError } from "../errors.ts";
import { compareTensors, type ComparedTensor, type Comparison, type Tolerance } from "./compare.ts";
import type { SafeTensor, Safetensors } from "./safetensors.ts";
import { tensorStats, type TensorStats } from "./stats.ts";

export interface TensorDiff {
  readonly name: string;
  readonly comparison: Comparison;
  readonly a: TensorStats;
  readonly b: TensorStats;
}

export interface Diff {
  /** Shared tensors in forward order (the first file's `order` metadata, as traces write it; else its header order). */
  readonly tensors: readonly TensorDiff[];
  /** The first shared tensor over tolerance, if any. */
  readonly firstDeparture?: TensorDiff;
  readonly onlyInA: readonly string[];
  readonly onlyInB: readonly string[];
}

/** The tensor order a file declares (`order`: a JSON list of names), or its own. */
export function forwardOrder(file: Safetensors): string[] {
  try {
    const order: unknown = JSON.parse(file.metadata.order ?? "null");
    if (Array.isArray(order) && order.every((n) => typeof n === "string")) {
      return [...order.filter((n) => file.tensors.has(n)), ...[...file.tensors.keys()].filter((n) => !order.includes(n))];
    }
  } catch {
    // not JSON: fall back to the header's order
  }
  return [...file.tensors.keys()];
}

/** Floats as floats and integers as Int32 (or U8), whatever the stored dtype, so that any two dtypes compare. */
export function comparable(t: SafeTensor): ComparedTensor {
  const d = t.data;
  if (d instanceof Float32Array || d instanceof Float64Array || d instanceof Int32Array || d instanceof Uint8Array) return { shape: t.shape, data: d };
  const values = Array.from(d as ArrayLike<number | bigint>, Number);
  if (!values.every((v) => Number.isInteger(v) && Math.abs(v) < 2 ** 31)) {
    throw new TinyseekError(`a ${t.dtype} tensor holds values outside the int32 range: cannot compare it`);
  }
  return { shape: t.shape, data: Int32Array.from(values) };
}

export function diffTensors(a: Safetensors, b: Safetensors, tolerance: Tolerance): Diff {
  const tensors: TensorDiff[] = [];
  for (const name of forwardOrder(a)) {
    const ta = a.tensors.get(name)!;
    const tb = b.tensors.get(name);
    if (!tb) continue;
    const comparison = compareTensors(name, comparable(ta), comparable(tb), tolerance);
    tensors.push({ name, comparison, a: tensorStats(ta.data), b: tensorStats(tb.data) });
  }
  return {
    tensors,
    firstDeparture: tensors.find((t) => !t.comparison.pass),
    onlyInA: [...a.tensors.keys()].filter((n) => !b.tensors.has(n)),
    onlyInB: [...b.tensors.keys()].filter((n) => !a.tensors.has(n)),
  };
}
