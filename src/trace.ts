// Named intermediate tensors, recorded during a forward pass: the stepping API. A trace is created with glob
// patterns ("layers.*.attn.probs", "layers.3.mlp.router.*"), and the model records a tensor only when some
// pattern matches its name, so an unwatched tensor costs nothing. `*` matches any run of characters (dots
// included), `?` one character. A later record of the same name replaces the earlier one.
// Traces save as safetensors (F32 for floats, I32 for indices, U8 for flags) and read back with `tinyseek inspect`.

import { globToRegExp } from "./glob.ts";
import { argError } from "./errors.ts";
import type { Tolerance } from "./io/compare.ts";
import { diffTensors, type Diff } from "./io/diff.ts";
import { writeSafetensors, writeSafetensorsFile, type Dtype, type Safetensors, type TensorToWrite } from "./io/safetensors.ts";
import { numel, shapeString } from "./tensor.ts";

export interface TracedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array | Uint8Array;
}

export interface Trace {
  readonly patterns: readonly string[];
  readonly matchers: readonly RegExp[];
  /** Recorded tensors, in the order they were first recorded (forward order). */
  readonly tensors: Map<string, TracedTensor>;
}

/** A trace that records every name matching one of `patterns` (a comma-separated string or a list). */
export function createTrace(patterns: string | readonly string[] = "*"): Trace {
  if (typeof patterns !== "string" && !(Array.isArray(patterns) && patterns.every((p) => typeof p === "string"))) {
    throw argError("patterns", "a comma-separated string or a list of glob patterns", Array.isArray(patterns) ? "a list with a non-string" : typeof patterns);
  }
  const list = (typeof patterns === "string" ? patterns.split(",") : [...patterns]).map((p) => p.trim()).filter((p) => p !== "");
  if (list.length === 0) throw argError("patterns", "at least one glob pattern", typeof patterns === "string" ? patterns : [...patterns]);
  return { patterns: list, matchers: list.map(globToRegExp), tensors: new Map() };
}

/** Whether `trace` wants the tensor called `name` (false without a trace): check before computing something costly. */
export function wants(trace: Trace | undefined, name: string): boolean {
  if (!trace) return false;
  return trace.matchers.some((m) => m.test(name));
}

/** Records a copy of `value` under `name` when the trace wants it. */
export function record(trace: Trace | undefined, name: string, value: TracedTensor): void {
  if (!wants(trace, name)) return;
  if (numel(value.shape) !== value.data.length) {
    throw argError(`trace "${name}"`, `${numel(value.shape)} values for shape ${shapeString(value.shape)}`, value.data.length);
  }
  trace!.tensors.delete(name); // re-recording moves the name to the end: the order stays the order of computation
  trace!.tensors.set(name, { shape: [...value.shape], data: value.data.slice() });
}

const dtypeOf = (data: TracedTensor["data"]): Dtype =>
  data instanceof Float32Array ? "F32" : data instanceof Int32Array ? "I32" : "U8";

/** The trace as a safetensors file (bytes); `metadata` adds string entries (config, prompt, seed). */
export function traceToSafetensors(trace: Trace, metadata: Record<string, string> = {}): Uint8Array {
  return writeSafetensors(traceTensors(trace), { format: "tinyseek-trace", order: JSON.stringify([...trace.tensors.keys()]), ...metadata });
}

export async function saveTrace(path: string, trace: Trace, metadata: Record<string, string> = {}): Promise<void> {
  await writeSafetensorsFile(path, traceTensors(trace), { format: "tinyseek-trace", order: JSON.stringify([...trace.tensors.keys()]), ...metadata });
}

function traceTensors(trace: Trace): Map<string, TensorToWrite> {
  return new Map([...trace.tensors].map(([name, t]) => [name, { dtype: dtypeOf(t.data), shape: t.shape, data: t.data }]));
}

/** A whole-model intermediate's tolerance on a float32 backend (spec/golden.md: NMSE <= 1e-7 for logits). */
export const TRACE_TOLERANCE: Tolerance = { rtol: 1e-3, atol: 1e-4, nmse: 1e-7 };

/** A trace as the in-memory form of its safetensors file (dtype per tensor, `order` metadata). */
export function traceAsFile(trace: Trace): Safetensors {
  const tensors = new Map([...trace.tensors].map(([name, t]) => [name, { dtype: dtypeOf(t.data), shape: t.shape, data: t.data }]));
  return { tensors, metadata: { order: JSON.stringify([...trace.tensors.keys()]) } };
}

/**
 * Two traces of one forward pass (the reference and a backend, say), compared tensor by tensor in forward order
 * by src/io/diff.ts: where a run departs from the other, not just that its logits differ. Integer tensors (router
 * indices, kept flags, exit layers) must match exactly.
 */
export function compareTraces(reference: Trace, other: Trace, tolerance: Tolerance = TRACE_TOLERANCE): Diff {
  return diffTensors(traceAsFile(reference), traceAsFile(other), tolerance);
}

export { globToRegExp };
