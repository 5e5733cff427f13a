// Synchronous kernels over WebGPU's asynchronous ones, in a browser: the twin of Node's gpu/sync-bridge.ts, for
// the golden component cases that call Kernels synchronously. The case runs in a module Web Worker
// (web/platform/sync-bridge-worker.ts) whose kernels post each call to the page and block in Atomics.wait; the
// page runs the call on its asynchronous WebGPU kernels (the same device the model uses), writes the reply into
// shared memory (web/platform/sync-bridge-wire.ts), raises the flag and notifies. Tasks run one at a time. A
// worker cannot import a module by URL the way Node's does, so it runs the tasks it bundles, found by export
// name: runCaseTask (src/golden/worker-task.ts); any other task fails naming itself.

import type { AsyncKernels, SyncTask } from "../../src/backend.ts";
import { TinyseekError } from "../../src/errors.ts";
import type { Bridge } from "../../gpu/backend.ts";
import { fromWire, kernelOps, READY, unpackArgs, type CallMessage, type Shared, type WireError } from "../../gpu/sync-bridge-wire.ts";
import { REPLY_BYTES, writeReply } from "./sync-bridge-wire.ts";
import { workerClass, type BrowserWorker } from "./worker.ts";

/** Page → worker. */
export type PageMessage =
  | { type: "start"; name: string; ops: string[]; signal: SharedArrayBuffer; reply: SharedArrayBuffer }
  | { type: "task"; id: number; module: string; export: string; args: unknown };

/** Worker → page. */
export type BridgeWorkerMessage =
  | { type: "ready" }
  | ({ type: "call" } & CallMessage)
  | { type: "event"; id: number; event: unknown }
  | { type: "done"; id: number; result: unknown }
  | { type: "failed"; id: number; error: WireError };

interface Running {
  id: number;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  onEvent?: (event: unknown) => void;
}

export class BrowserBridge implements Bridge {
  private running: Running | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private closed: Error | undefined;
  private readonly weights = new Map<number, unknown>();
  private serving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly kernels: AsyncKernels,
    private readonly worker: BrowserWorker,
    private readonly signal: Int32Array,
    private readonly reply: SharedArrayBuffer,
  ) {
    worker.onmessage = (event) => this.onMessage(event.data as BridgeWorkerMessage);
    worker.onerror = (event) => this.fail(new TinyseekError(`sync bridge: the worker failed: ${event.message || "no message"}`));
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
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (event) => reject(new TinyseekError(`sync bridge: the worker did not start: ${event.message || "no message"}`));
      worker.postMessage({ type: "start", name: kernels.name, ops: kernelOps(kernels), signal: signal.buffer as SharedArrayBuffer, reply } satisfies PageMessage);
    }).catch((error: unknown) => {
      worker.terminate();
      throw error;
    });
    return new BrowserBridge(kernels, worker, signal, reply);
  }

  run<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R> {
    const started = this.queue.then(() => this.start<R>(task, args, onEvent));
    this.queue = started.catch(() => {});
    return started;
  }

  private start<R>(task: SyncTask, args: unknown, onEvent?: (event: unknown) => void): Promise<R> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.running = { id, resolve: resolve as (v: unknown) => void, reject, onEvent };
      this.worker.postMessage({ type: "task", id, module: task.module, export: task.export, args } satisfies PageMessage);
    }).finally(() => {
      this.running = undefined;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.fail(new TinyseekError("sync bridge: closed"));
    this.worker.terminate();
    this.weights.clear();
  }

  private fail(error: Error): void {
    this.closed ??= error;
    const running = this.running;
    this.running = undefined;
    running?.reject(error);
  }

  private onMessage(m: BridgeWorkerMessage): void {
    if (m.type === "call") {
      this.serving = this.serving.then(() => this.serve(m));
      return;
    }
    const running = this.running;
    if (m.type === "ready" || !running || m.id !== running.id) return;
    if (m.type === "event") running.onEvent?.(m.event);
    else if (m.type === "done") running.resolve(m.result);
    else running.reject(fromWire(m.error));
  }

  /** One kernel call from the blocked worker: run it here, write the reply, then wake the worker. */
  private async serve({ op, args, released }: CallMessage): Promise<void> {
    for (const id of released) this.weights.delete(id);
    let reply: { value: unknown } | { error: unknown };
    try {
      const kernel = (this.kernels as unknown as Record<string, (...a: unknown[]) => unknown>)[op];
      if (typeof kernel !== "function") throw new TinyseekError(`${this.kernels.name}: no kernel named "${op}"`);
      reply = { value: await kernel(...unpackArgs(op, args, (s) => this.lookup(s))) };
    } catch (error) {
      reply = { error };
    }
    if (this.closed) return;
    writeReply(this.reply, reply);
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
