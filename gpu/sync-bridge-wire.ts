// What crosses the synchronous bridge (gpu/sync-bridge.ts) between the worker and the main thread, in both
// directions: the messages, errors as plain data (rebuilt as the same class on the other side), and weights sent
// once. Backends cache weights by object identity (the GPU context by Float32Array, quantLinear by QuantWeight), and
// a structured clone is a new object every time, so the worker sends a weight's data the first time it sees it
// and only its id afterwards; the main thread keeps one object per id, released when the worker's copy is collected.

import { NotSupportedError, type AsyncKernels } from "../src/backend.ts";
import { TinyseekError } from "../src/errors.ts";
import type { Kernels } from "../src/kernels.ts";
import type { ExpertWeights } from "../src/moe/experts.ts";
import type { MessagePort } from "node:worker_threads";
import type { Tensor } from "../src/tensor.ts";

/** A plain copy of an error: its class by name, and whether it was a TinyseekError (any subclass). */
export interface WireError {
  name: string;
  message: string;
  tinyseek: boolean;
}

export function toWire(error: unknown): WireError {
  if (error instanceof Error) return { name: error.name, message: error.message, tinyseek: error instanceof TinyseekError };
  return { name: "Error", message: String(error), tinyseek: false };
}

/** The same class where this side knows it (NotSupportedError, TinyseekError), else an Error with the same name. */
export function fromWire(wire: WireError): Error {
  if (wire.name === "NotSupportedError") return new NotSupportedError(wire.message);
  const error = wire.tinyseek ? new TinyseekError(wire.message) : new Error(wire.message);
  error.name = wire.name;
  return error;
}

/** Main → worker, on the worker's parentPort. */
export interface TaskMessage {
  id: number;
  module: string;
  export: string;
  args: unknown;
}

/** Worker → main, on its parentPort. */
export type WorkerMessage =
  | { type: "ready" }
  | { type: "event"; id: number; event: unknown }
  | { type: "done"; id: number; result: unknown }
  | { type: "failed"; id: number; error: WireError };

/** Worker → main on the calls port, the worker then blocked until the reply. `released`: weight ids it let go. */
export interface CallMessage {
  op: string;
  args: unknown[];
  released: number[];
}

export type Reply = { value: unknown } | { error: WireError };

/** What the worker knows at start: the kernels' name and operations, the calls port and the wake-up flag. */
export interface BridgeWorkerData {
  name: string;
  ops: string[];
  calls: MessagePort;
  signal: SharedArrayBuffer;
}

/** The signal's one Int32: WAITING while the worker waits for a reply, READY once the main thread posted it. */
export const WAITING = 0;
export const READY = 1;

/** A weight by id; `value` only the first time this side's peer sees it. */
export interface Shared {
  shared: number;
  value?: unknown;
}

export type Share = (value: object) => Shared;
export type Lookup = (shared: Shared) => unknown;

const tensorOut = (t: Tensor, share: Share) => ({ shape: t.shape, data: share(t.data) });
const tensorIn = (t: { shape: readonly number[]; data: Shared }, lookup: Lookup): Tensor => ({ shape: t.shape, data: lookup(t.data) as Float32Array });

/** Per operation, its weight arguments packed (worker side): a weight's data, or a quantised weight, by id. */
export function packArgs(op: string, args: unknown[], share: Share): unknown[] {
  const [a, b, c] = args;
  switch (op) {
    case "linear": return [a, tensorOut(b as Tensor, share)];
    case "rmsnorm": return [a, tensorOut(b as Tensor, share), c];
    case "quantLinear": return [a, share(b as object), c];
    case "moe": {
      const e = c as ExpertWeights;
      return [a, b, { gate: tensorOut(e.gate, share), up: tensorOut(e.up, share), down: tensorOut(e.down, share) }];
    }
    default: return args;
  }
}

/** The inverse of packArgs (main side): each weight id back to the one object the main thread keeps for it. */
export function unpackArgs(op: string, args: unknown[], lookup: Lookup): unknown[] {
  const [a, b, c] = args as [unknown, never, never];
  switch (op) {
    case "linear": return [a, tensorIn(b, lookup)];
    case "rmsnorm": return [a, tensorIn(b, lookup), c];
    case "quantLinear": return [a, lookup(b), c];
    case "moe": {
      const e = c as Record<"gate" | "up" | "down", { shape: readonly number[]; data: Shared }>;
      return [a, b, { gate: tensorIn(e.gate, lookup), up: tensorIn(e.up, lookup), down: tensorIn(e.down, lookup) }];
    }
    default: return args;
  }
}

const OPS = ["matmul", "bmm", "linear", "softmax", "rmsnorm", "rope", "silu", "swiglu", "attention", "moe", "quantLinear"] as const;
// A kernel added to the Kernels interface and not listed above fails to type-check here.
const complete: [Exclude<keyof Kernels, "name" | (typeof OPS)[number]>] extends [never] ? true : false = true;
void complete;

/** The Kernels operations `kernels` has (quantLinear is optional). */
export const kernelOps = (kernels: AsyncKernels): string[] => OPS.filter((op) => typeof kernels[op] === "function");
