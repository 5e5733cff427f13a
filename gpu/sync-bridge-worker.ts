// The worker side of the synchronous bridge (gpu/sync-bridge.ts): a `Kernels` value whose every call is posted to
// the main thread, which runs it on its asynchronous kernels; the worker blocks in Atomics.wait until the main
// thread has posted the reply and raised the flag, then takes the reply with receiveMessageOnPort (no event loop
// turn needed). Tasks arrive on parentPort: `module`'s `export(kernels, args, emit)`, one at a time.

import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { TinyseekError } from "../src/errors.ts";
import type { Kernels } from "../src/kernels.ts";
import {
  fromWire, packArgs, READY, toWire, WAITING,
  type BridgeWorkerData, type CallMessage, type Reply, type Shared, type TaskMessage, type WorkerMessage,
} from "./sync-bridge-wire.ts";

/** What a task module exports: synchronous code over `kernels`; `emit` sends progress to the caller's onEvent. */
export type BridgeTask<A = never, R = unknown> = (kernels: Kernels, args: A, emit: (event: unknown) => void) => R | Promise<R>;

const { name, ops, calls, signal: signalBuffer } = workerData as BridgeWorkerData;
const signal = new Int32Array(signalBuffer);
const port = parentPort!;

// Weights by identity: an id for each object sent, its data sent once; ids of collected objects go back with the
// next call so that the main thread drops its copy (and the GPU its buffer).
const ids = new WeakMap<object, number>();
let nextId = 1;
let released: number[] = [];
const collected = new FinalizationRegistry<number>((id) => released.push(id));

function share(value: object): Shared {
  const known = ids.get(value);
  if (known !== undefined) return { shared: known };
  const id = nextId++;
  ids.set(value, id);
  collected.register(value, id);
  return { shared: id, value };
}

function call(op: string, args: unknown[]): unknown {
  const message: CallMessage = { op, args: packArgs(op, args, share), released };
  released = [];
  Atomics.store(signal, 0, WAITING);
  calls.postMessage(message);
  while (Atomics.load(signal, 0) === WAITING) Atomics.wait(signal, 0, WAITING);
  const reply = receiveMessageOnPort(calls)?.message as Reply | undefined;
  if (!reply) throw new TinyseekError(`sync bridge: ${name}.${op} woke without a reply`);
  if ("error" in reply) throw fromWire(reply.error);
  return reply.value;
}

const kernels = Object.fromEntries([
  ["name", name],
  ...ops.map((op) => [op, (...args: unknown[]) => call(op, args)]),
]) as unknown as Kernels;

async function runTask({ id, module, export: exported, args }: TaskMessage): Promise<WorkerMessage> {
  try {
    const task = (await import(module))[exported] as BridgeTask<unknown> | undefined;
    if (typeof task !== "function") throw new TinyseekError(`sync bridge: ${module} has no function export "${exported}"`);
    const result = await task(kernels, args, (event) => port.postMessage({ type: "event", id, event } satisfies WorkerMessage));
    return { type: "done", id, result };
  } catch (error) {
    return { type: "failed", id, error: toWire(error) };
  }
}

port.on("message", async (task: TaskMessage) => {
  const outcome = await runTask(task);
  try {
    port.postMessage(outcome);
  } catch (error) {
    // A result that cannot be cloned (a function, a class instance with private state) fails its task, not the worker.
    port.postMessage({ type: "failed", id: task.id, error: toWire(error) } satisfies WorkerMessage);
  }
});
port.postMessage({ type: "ready" } satisfies WorkerMessage);
