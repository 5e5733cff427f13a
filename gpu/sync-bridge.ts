// Synchronous kernels over asynchronous ones, in Node. Component code (an MLA layer, the MoE layer, a whole
// generate loop) calls `Kernels` synchronously; WebGPU answers with promises. The bridge runs such code in a
// worker thread (gpu/sync-bridge-worker.ts) whose kernels post each call here and block in Atomics.wait; this
// thread runs the call on its asynchronous kernels, posts the reply on a MessagePort, raises a flag in shared
// memory and notifies. Errors cross as the same class and message (NotSupportedError, TinyseekError). Tasks run
// one at a time. An idle bridge keeps no event-loop handle, so a process that forgets close() still exits; close()
// terminates the worker, failing the task in flight (if any) instead of leaving anyone waiting. The protocol is
// gpu/sync-bridge-host.ts's, shared with the browser; this file is its worker_threads part.

import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { AsyncKernels, SyncTask } from "../src/backend.ts";
import { TinyseekError } from "../src/errors.ts";
import { BridgeHost, untilReady, type HostReply } from "./sync-bridge-host.ts";
import { kernelOps, toWire, type BridgeWorkerData, type CallMessage, type Reply, type WorkerMessage } from "./sync-bridge-wire.ts";

export class SyncBridge {
  private readonly host: BridgeHost;

  private constructor(
    kernels: AsyncKernels,
    private readonly worker: Worker,
    private readonly calls: MessagePort,
    signal: Int32Array,
  ) {
    this.host = new BridgeHost(kernels, signal, {
      postTask: (message) => worker.postMessage(message),
      answer: (reply) => this.answer(reply),
      // a task in flight keeps the process alive; an idle bridge does not
      busy: (busy) => (busy ? worker.ref() : worker.unref()),
    });
    worker.on("message", (m: WorkerMessage) => this.host.onWorkerMessage(m));
    worker.on("error", (error) => this.host.fail(new TinyseekError(`sync bridge: the worker failed: ${error.message}`)));
    worker.on("exit", (code) => this.host.fail(new TinyseekError(`sync bridge: the worker exited (code ${code})`)));
    calls.on("message", (m: CallMessage) => void this.host.onCall(m));
    calls.unref();
    worker.unref();
  }

  /** Starts the worker and waits until it is ready (tsx registered): about 0.3 s; task modules load on first use. */
  static async open(kernels: AsyncKernels): Promise<SyncBridge> {
    const { port1, port2 } = new MessageChannel();
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const workerData: BridgeWorkerData = { name: kernels.name, ops: kernelOps(kernels), calls: port2, signal: signal.buffer as SharedArrayBuffer };
    // execArgv: [] so that the parent's flags (vitest's, --input-type) never change how the entry loads.
    const worker = new Worker(new URL("./sync-bridge-entry.js", import.meta.url), { workerData, transferList: [port2], execArgv: [] });
    await untilReady((ready, failed) => {
      const onError = (error: Error) => failed(`did not start: ${error.message}`);
      const onExit = (code: number) => failed(`exited while starting (code ${code})`);
      worker.once("message", ready).once("error", onError).once("exit", onExit);
      // One by one: removeAllListeners would also drop the Worker's own, which keep its messages flowing.
      return () => worker.off("message", ready).off("error", onError).off("exit", onExit);
    }, async () => {
      await worker.terminate();
      port1.close();
    });
    return new SyncBridge(kernels, worker, port1, signal);
  }

  /**
   * Runs `task.module`'s export `task.export(kernels, args, emit)` in the worker with synchronous kernels; resolves
   * with its result (args and result cross by structured clone). `onEvent` receives what the task emits.
   */
  run<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R> {
    return this.host.run<R>(task, args, onEvent);
  }

  /** Terminates the worker; a task still running fails with a message naming it. Idempotent. */
  async close(): Promise<void> {
    if (this.host.closed) return;
    this.host.close();
    this.calls.close();
    await this.worker.terminate();
  }

  /** The reply goes on the calls port, where the woken worker takes it. */
  private answer(reply: HostReply): void {
    const wire: Reply = "error" in reply ? { error: toWire(reply.error) } : reply;
    try {
      this.calls.postMessage(wire);
    } catch (error) {
      this.calls.postMessage({ error: toWire(error) } satisfies Reply); // a value that cannot be cloned
    }
  }
}
