// Synchronous kernels over WebGPU's asynchronous ones, in a browser: the twin of Node's gpu/sync-bridge.ts, for
// the golden component cases that call Kernels synchronously, over the same protocol (gpu/sync-bridge-host.ts).
// The case runs in a module Web Worker (web/platform/sync-bridge-worker.ts) whose kernels post each call to the
// page and block in Atomics.wait; the page runs the call on its asynchronous WebGPU kernels (the same device the
// model uses), writes the reply into shared memory (web/platform/sync-bridge-wire.ts), raises the flag and
// notifies. Tasks run one at a time. A worker cannot import a module by URL the way Node's does, so it runs the
// tasks it bundles, found by export name: runCaseTask (src/golden/worker-task.ts); any other task fails naming
// itself.

import type { AsyncKernels, SyncTask } from "../../src/backend.ts";
import { TinyseekError } from "../../src/errors.ts";
import type { Bridge } from "../../gpu/backend.ts";
import { BridgeHost, untilReady } from "../../gpu/sync-bridge-host.ts";
import { kernelOps, type CallMessage, type TaskMessage, type WorkerMessage } from "../../gpu/sync-bridge-wire.ts";
import { REPLY_BYTES, writeReply } from "./sync-bridge-wire.ts";
import { workerClass, type BrowserWorker } from "./worker.ts";

/** Page → worker. */
export type PageMessage =
  | { type: "start"; name: string; ops: string[]; signal: SharedArrayBuffer; reply: SharedArrayBuffer }
  | ({ type: "task" } & TaskMessage);

/** Worker → page: a kernel call, or a message about a task. */
export type BridgeWorkerMessage = ({ type: "call" } & CallMessage) | WorkerMessage;

export class BrowserBridge implements Bridge {
  private readonly host: BridgeHost;

  private constructor(kernels: AsyncKernels, private readonly worker: BrowserWorker, signal: Int32Array, reply: SharedArrayBuffer) {
    this.host = new BridgeHost(kernels, signal, {
      postTask: (message) => worker.postMessage({ type: "task", ...message } satisfies PageMessage),
      answer: (answer) => writeReply(reply, answer),
    });
    worker.onmessage = (event) => {
      const m = event.data as BridgeWorkerMessage;
      if (m.type === "call") void this.host.onCall(m);
      else this.host.onWorkerMessage(m);
    };
    worker.onerror = (event) => this.host.fail(new TinyseekError(`sync bridge: the worker failed: ${event.message || "no message"}`));
  }

  /** Starts the worker and waits until it is ready. */
  static async open(kernels: AsyncKernels): Promise<BrowserBridge> {
    if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== true) {
      throw new TinyseekError("sync bridge: needs SharedArrayBuffer, which a browser gives only to a cross-origin isolated page (spec/web.md)");
    }
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const reply = new SharedArrayBuffer(REPLY_BYTES);
    const Worker = workerClass("sync bridge");
    const worker = new Worker(new URL("./sync-bridge-worker.ts", import.meta.url), { type: "module", name: "tinyseek-sync-bridge" });
    await untilReady((ready, failed) => {
      worker.onmessage = ready;
      worker.onerror = (event) => failed(`did not start: ${event.message || "no message"}`);
      worker.postMessage({ type: "start", name: kernels.name, ops: kernelOps(kernels), signal: signal.buffer as SharedArrayBuffer, reply } satisfies PageMessage);
    }, () => worker.terminate());
    return new BrowserBridge(kernels, worker, signal, reply);
  }

  run<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R> {
    return this.host.run<R>(task, args, onEvent);
  }

  async close(): Promise<void> {
    if (this.host.closed) return;
    this.host.close();
    this.worker.terminate();
  }
}
