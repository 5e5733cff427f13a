// The worker side of the synchronous bridge in Node (gpu/sync-bridge.ts): the kernels and task runner of
// gpu/sync-bridge-proxy.ts over worker_threads. Each call goes on the calls port; once the main thread has posted
// the reply and raised the flag, the worker takes it with receiveMessageOnPort (no event loop turn needed). Tasks
// arrive on parentPort: `module`'s `export(kernels, args, emit)`, one at a time.

import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { TinyseekError } from "../src/errors.ts";
import { proxyKernels, runTask, type BridgeTask } from "./sync-bridge-proxy.ts";
import { fromWire, type BridgeWorkerData, type Reply, type TaskMessage, type WorkerMessage } from "./sync-bridge-wire.ts";

export type { BridgeTask } from "./sync-bridge-proxy.ts";

const { name, ops, calls, signal } = workerData as BridgeWorkerData;
const port = parentPort!;

const kernels = proxyKernels(name, ops, new Int32Array(signal), (call) => calls.postMessage(call), (op) => {
  const reply = receiveMessageOnPort(calls)?.message as Reply | undefined;
  if (!reply) throw new TinyseekError(`sync bridge: ${name}.${op} woke without a reply`);
  if ("error" in reply) throw fromWire(reply.error);
  return reply.value;
});

async function find(module: string, exported: string): Promise<BridgeTask<unknown>> {
  const task = (await import(module))[exported] as BridgeTask<unknown> | undefined;
  if (typeof task !== "function") throw new TinyseekError(`sync bridge: ${module} has no function export "${exported}"`);
  return task;
}

port.on("message", (task: TaskMessage) => void runTask(kernels, task, find, (message) => port.postMessage(message)));
port.postMessage({ type: "ready" } satisfies WorkerMessage);
