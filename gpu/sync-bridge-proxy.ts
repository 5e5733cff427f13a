// The worker's side of the synchronous bridge, written once for Node (gpu/sync-bridge-worker.ts) and the browser
// (web/platform/sync-bridge-worker.ts): `Kernels` whose every call is posted to the main thread and then blocks in
// Atomics.wait until the main thread raised the flag, and the task runner. How a call is posted and its reply taken
// (a MessagePort and receiveMessageOnPort in Node, shared memory in a browser) is the platform's part. Nothing here
// imports Node: the browser's worker bundles it.

import type { Kernels } from "../src/kernels.ts";
import { packArgs, toWire, WAITING, type CallMessage, type Shared, type TaskMessage, type WorkerMessage } from "./sync-bridge-wire.ts";

/** What a task module exports: synchronous code over `kernels`; `emit` sends progress to the caller's onEvent. */
export type BridgeTask<A = never, R = unknown> = (kernels: Kernels, args: A, emit: (event: unknown) => void) => R | Promise<R>;

/**
 * Kernels named `name` with the operations `ops`, each call posted by `post`; `take` reads the reply once the main
 * thread raised `signal` (returning the result, or throwing the error as its class).
 */
export function proxyKernels(name: string, ops: string[], signal: Int32Array, post: (call: CallMessage) => void, take: (op: string) => unknown): Kernels {
  // Weights by identity: an id for each object sent, its data sent once; ids of collected objects go back with the
  // next call so that the main thread drops its copy (and the GPU its buffer).
  const ids = new WeakMap<object, number>();
  let nextId = 1;
  let released: number[] = [];
  const collected = new FinalizationRegistry<number>((id) => released.push(id));
  const share = (value: object): Shared => {
    const known = ids.get(value);
    if (known !== undefined) return { shared: known };
    const id = nextId++;
    ids.set(value, id);
    collected.register(value, id);
    return { shared: id, value };
  };
  const call = (op: string, args: unknown[]): unknown => {
    const message: CallMessage = { op, args: packArgs(op, args, share), released };
    released = [];
    Atomics.store(signal, 0, WAITING);
    post(message);
    while (Atomics.load(signal, 0) === WAITING) Atomics.wait(signal, 0, WAITING);
    return take(op);
  };
  return Object.fromEntries([["name", name], ...ops.map((op) => [op, (...args: unknown[]) => call(op, args)])]) as unknown as Kernels;
}

/**
 * Runs one task over `kernels` and posts its events and outcome. `find` gives the task's function or throws naming
 * why not. A result that cannot be cloned fails its task, not the worker.
 */
export async function runTask(
  kernels: Kernels,
  { id, module, export: exported, args }: TaskMessage,
  find: (module: string, exported: string) => BridgeTask<unknown> | Promise<BridgeTask<unknown>>,
  post: (message: WorkerMessage) => void,
): Promise<void> {
  let outcome: WorkerMessage;
  try {
    const task = await find(module, exported);
    const result = await task(kernels, args, (event) => post({ type: "event", id, event }));
    outcome = { type: "done", id, result };
  } catch (error) {
    outcome = { type: "failed", id, error: toWire(error) };
  }
  try {
    post(outcome);
  } catch (error) {
    post({ type: "failed", id, error: toWire(error) });
  }
}
