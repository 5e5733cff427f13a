// The worker side of the browser's synchronous bridge (web/platform/sync-bridge.ts): Kernels whose every call is
// posted to the page and then waits in Atomics.wait for the page's reply in shared memory. Tasks are the ones
// this worker bundles, by export name.

import { TinyseekError } from "../../src/errors.ts";
import type { Kernels } from "../../src/kernels.ts";
import { runCaseTask } from "../../src/golden/worker-task.ts";
import { packArgs, toWire, WAITING, type Shared } from "../../gpu/sync-bridge-wire.ts";
import type { BridgeWorkerMessage, PageMessage } from "./sync-bridge.ts";
import { readReply } from "./sync-bridge-wire.ts";

type Task = (kernels: Kernels, args: never, emit: (event: unknown) => void) => unknown;
const TASKS: Record<string, Task> = { runCaseTask: runCaseTask as Task };

const scope = globalThis as unknown as { onmessage: ((event: MessageEvent<PageMessage>) => void) | null; postMessage(message: BridgeWorkerMessage): void };

// Weights by identity, sent once (as gpu/sync-bridge-worker.ts does).
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

let kernels: Kernels | undefined;

function start(name: string, ops: string[], signalBuffer: SharedArrayBuffer, reply: SharedArrayBuffer): Kernels {
  const signal = new Int32Array(signalBuffer);
  const call = (op: string, args: unknown[]) => {
    const message = { type: "call" as const, op, args: packArgs(op, args, share), released };
    released = [];
    Atomics.store(signal, 0, WAITING);
    scope.postMessage(message);
    while (Atomics.load(signal, 0) === WAITING) Atomics.wait(signal, 0, WAITING);
    return readReply(reply);
  };
  return Object.fromEntries([["name", name], ...ops.map((op) => [op, (...args: unknown[]) => call(op, args)])]) as unknown as Kernels;
}

scope.onmessage = async ({ data: m }) => {
  if (m.type === "start") {
    kernels = start(m.name, m.ops, m.signal, m.reply);
    scope.postMessage({ type: "ready" });
    return;
  }
  const { id } = m;
  try {
    const task = Object.hasOwn(TASKS, m.export) ? TASKS[m.export] : undefined;
    if (!task) throw new TinyseekError(`sync bridge: the browser's worker has no task "${m.export}" (${m.module}); it runs ${Object.keys(TASKS).join(", ")}`);
    const result = await task(kernels!, m.args as never, (event) => scope.postMessage({ type: "event", id, event }));
    scope.postMessage({ type: "done", id, result });
  } catch (error) {
    scope.postMessage({ type: "failed", id, error: toWire(error) });
  }
};
