// The worker side of the browser's synchronous bridge (web/platform/sync-bridge.ts): the kernels and task runner
// of gpu/sync-bridge-proxy.ts over a Web Worker. Each call is posted to the page; the reply is read from shared
// memory once the page raised the flag. Tasks are the ones this worker bundles, by export name.

import { TinyseekError } from "../../src/errors.ts";
import type { Kernels } from "../../src/kernels.ts";
import { runCaseTask } from "../../src/golden/worker-task.ts";
import { proxyKernels, runTask, type BridgeTask } from "../../gpu/sync-bridge-proxy.ts";
import type { BridgeWorkerMessage, PageMessage } from "./sync-bridge.ts";
import { readReply } from "./sync-bridge-wire.ts";

const TASKS: Record<string, BridgeTask<unknown>> = { runCaseTask: runCaseTask as BridgeTask<unknown> };

const scope = globalThis as unknown as { onmessage: ((event: MessageEvent<PageMessage>) => void) | null; postMessage(message: BridgeWorkerMessage): void };

function find(module: string, exported: string): BridgeTask<unknown> {
  const task = Object.hasOwn(TASKS, exported) ? TASKS[exported] : undefined;
  if (!task) throw new TinyseekError(`sync bridge: the browser's worker has no task "${exported}" (${module}); it runs ${Object.keys(TASKS).join(", ")}`);
  return task;
}

let kernels: Kernels | undefined;

scope.onmessage = ({ data: m }) => {
  if (m.type === "start") {
    const reply = m.reply;
    kernels = proxyKernels(m.name, m.ops, new Int32Array(m.signal), (call) => scope.postMessage({ type: "call", ...call }), () => readReply(reply));
    scope.postMessage({ type: "ready" });
    return;
  }
  const { type: _, ...task } = m;
  void runTask(kernels!, task, find, (message) => scope.postMessage(message));
};
