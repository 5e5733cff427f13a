// Synchronous kernels over asynchronous ones, in Node. Component code (an MLA layer, the MoE layer, a whole
// generate loop) calls `Kernels` synchronously; WebGPU answers with promises. The bridge runs such code in a
// worker thread (gpu/sync-bridge-worker.ts) whose kernels post each call here and block in Atomics.wait; this
// thread runs the call on its asynchronous kernels, posts the reply on a MessagePort, raises a flag in shared
// memory and notifies. Errors cross as the same class and message (NotSupportedError, TinyseekError). Tasks run
// one at a time. An idle bridge keeps no event-loop handle, so a process that forgets close() still exits; close()
// terminates the worker, failing the task in flight (if any) instead of leaving anyone waiting.

import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { AsyncKernels, SyncTask } from "../src/backend.ts";
import { TinyseekError } from "../src/errors.ts";
import {
  fromWire, kernelOps, READY, toWire, unpackArgs,
  type BridgeWorkerData, type CallMessage, type Reply, type Shared, type TaskMessage, type WorkerMessage,
} from "./sync-bridge-wire.ts";

interface Running {
  id: number;
  what: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  onEvent?: (event: unknown) => void;
}

export class SyncBridge {
  private running: Running | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private closed: Error | undefined;
  /** The main thread's copy of each weight the worker sent, by id. */
  private readonly weights = new Map<number, unknown>();

  private constructor(
    private readonly kernels: AsyncKernels,
    private readonly worker: Worker,
    private readonly calls: MessagePort,
    private readonly signal: Int32Array,
  ) {
    worker.on("message", (m: WorkerMessage) => this.onWorkerMessage(m));
    worker.on("error", (error) => this.fail(new TinyseekError(`sync bridge: the worker failed: ${error.message}`)));
    worker.on("exit", (code) => this.fail(new TinyseekError(`sync bridge: the worker exited (code ${code})`)));
    calls.on("message", (m: CallMessage) => void this.serve(m));
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
    let onMessage = () => {}, onError = (_: Error) => {}, onExit = (_: number) => {};
    try {
      await new Promise<void>((resolve, reject) => {
        onMessage = () => resolve();
        onError = (error) => reject(new TinyseekError(`sync bridge: the worker did not start: ${error.message}`));
        onExit = (code) => reject(new TinyseekError(`sync bridge: the worker exited while starting (code ${code})`));
        worker.once("message", onMessage).once("error", onError).once("exit", onExit);
      });
    } catch (error) {
      await worker.terminate();
      port1.close();
      throw error;
    } finally {
      // One by one: removeAllListeners would also drop the Worker's own, which keep its messages flowing.
      worker.off("message", onMessage).off("error", onError).off("exit", onExit);
    }
    return new SyncBridge(kernels, worker, port1, signal);
  }

  /**
   * Runs `task.module`'s export `task.export(kernels, args, emit)` in the worker with synchronous kernels; resolves
   * with its result (args and result cross by structured clone). `onEvent` receives what the task emits.
   */
  run<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R> {
    const started = this.queue.then(() => this.start<R>(task, args, onEvent));
    this.queue = started.catch(() => {});
    return started;
  }

  private start<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.running = { id, what: `${task.export} (${task.module})`, resolve: resolve as (v: unknown) => void, reject, onEvent };
      this.worker.ref(); // a task in flight keeps the process alive; an idle bridge does not
      this.worker.postMessage({ id, module: task.module, export: task.export, args } satisfies TaskMessage);
    }).finally(() => {
      this.running = undefined;
      if (!this.closed) this.worker.unref();
    });
  }

  /** Terminates the worker; a task still running fails with a message naming it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.fail(new TinyseekError("sync bridge: closed"));
    this.calls.close();
    await this.worker.terminate();
    this.weights.clear();
  }

  private fail(error: TinyseekError): void {
    this.closed ??= error;
    const running = this.running;
    this.running = undefined;
    running?.reject(new TinyseekError(`${error.message} while running ${running.what}`));
  }

  private onWorkerMessage(m: WorkerMessage): void {
    const running = this.running;
    if (m.type === "ready" || !running || m.id !== running.id) return;
    if (m.type === "event") running.onEvent?.(m.event);
    else if (m.type === "done") running.resolve(m.result);
    else running.reject(fromWire(m.error));
  }

  /** One kernel call from the blocked worker: run it here, post the reply, then wake the worker. */
  private async serve({ op, args, released }: CallMessage): Promise<void> {
    for (const id of released) this.weights.delete(id);
    let reply: Reply;
    try {
      const kernel = (this.kernels as unknown as Record<string, (...a: unknown[]) => unknown>)[op];
      if (typeof kernel !== "function") throw new TinyseekError(`${this.kernels.name}: no kernel named "${op}"`);
      reply = { value: await kernel(...unpackArgs(op, args, (s) => this.lookup(s))) };
    } catch (error) {
      reply = { error: toWire(error) };
    }
    if (this.closed) return; // the worker is gone or going; nobody waits
    try {
      this.calls.postMessage(reply);
    } catch (error) {
      this.calls.postMessage({ error: toWire(error) } satisfies Reply); // a value that cannot be cloned
    }
    Atomics.store(this.signal, 0, READY);
    Atomics.notify(this.signal, 0);
  }

  private lookup({ shared, value }: Shared): unknown {
    if (value !== undefined) this.weights.set(shared, value);
    const known = this.weights.get(shared);
    if (known === undefined) throw new TinyseekError(`sync bridge: weight #${shared} was never sent`);
    return known;
  }
}
