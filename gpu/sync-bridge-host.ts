// The main thread's side of the synchronous bridge, written once for Node (gpu/sync-bridge.ts) and the browser
// (web/platform/sync-bridge.ts): tasks one at a time, the worker's messages routed to the task in flight, each
// kernel call run on the asynchronous kernels and answered, and failures that end the task in flight. What differs
// per platform (how a task reaches the worker, where a reply goes, keeping a Node process alive) is a HostLink.
// Nothing here imports Node: the browser's pages bundle it.

import type { AsyncKernels, SyncTask } from "../src/backend.ts";
import { TinyseekError } from "../src/errors.ts";
import { fromWire, READY, unpackArgs, type CallMessage, type Shared, type TaskMessage, type WorkerMessage } from "./sync-bridge-wire.ts";

/** A kernel call's outcome before it crosses: the link turns the error into what its channel carries. */
export type HostReply = { value: unknown } | { error: unknown };

/** The platform's part. */
export interface HostLink {
  /** Sends a task to the worker. */
  postTask(message: TaskMessage): void;
  /** Puts a kernel call's reply where the worker, blocked until the flag is raised, will read it. */
  answer(reply: HostReply): void;
  /** A task started (true) or ended (false) while the bridge is open: Node refs its worker meanwhile. */
  busy?(busy: boolean): void;
}

/**
 * Waits for the worker's first message, which says it is ready. `listen` subscribes `ready` and `failed` (why it did
 * not start) and returns how to unsubscribe; on a failure `stop` ends the worker before the error is thrown.
 */
export async function untilReady(listen: (ready: () => void, failed: (why: string) => void) => (() => void) | void, stop: () => unknown): Promise<void> {
  let unlisten: (() => void) | void = undefined;
  try {
    let ready = () => {}, failed = (_: string) => {};
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = (why) => reject(new TinyseekError(`sync bridge: the worker ${why}`));
    });
    unlisten = listen(ready, failed);
    await started;
  } catch (error) {
    await stop();
    throw error;
  } finally {
    unlisten?.();
  }
}

interface Running {
  id: number;
  what: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  onEvent?: (event: unknown) => void;
}

export class BridgeHost {
  private running: Running | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  /** Set once the bridge closed or its worker failed; every later task is rejected with it. */
  closed: TinyseekError | undefined;
  /** This side's copy of each weight the worker sent, by id. */
  private readonly weights = new Map<number, unknown>();

  constructor(
    private readonly kernels: AsyncKernels,
    private readonly signal: Int32Array,
    private readonly link: HostLink,
  ) {}

  /** Runs `task` in the worker once every task before it settled; `onEvent` receives what it emits. */
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
      this.link.busy?.(true);
      this.link.postTask({ id, module: task.module, export: task.export, args });
    }).finally(() => {
      this.running = undefined;
      if (!this.closed) this.link.busy?.(false);
    });
  }

  /** Ends the bridge: the task in flight fails naming itself, later ones with `error`. The first error stays. */
  fail(error: TinyseekError): void {
    this.closed ??= error;
    const running = this.running;
    this.running = undefined;
    running?.reject(new TinyseekError(`${error.message} while running ${running.what}`));
  }

  /** Fails as "closed" and drops the weights; the link then stops its worker. */
  close(): void {
    this.fail(new TinyseekError("sync bridge: closed"));
    this.weights.clear();
  }

  /** A message about a task: routed to the task in flight, if it is that task's. */
  onWorkerMessage(m: WorkerMessage): void {
    const running = this.running;
    if (m.type === "ready" || !running || m.id !== running.id) return;
    if (m.type === "event") running.onEvent?.(m.event);
    else if (m.type === "done") running.resolve(m.result);
    else running.reject(fromWire(m.error));
  }

  /**
   * One kernel call from the blocked worker: run it here, answer, then wake the worker. The worker posts its next
   * call only after this wake-up, so calls never overlap.
   */
  async onCall({ op, args, released }: CallMessage): Promise<void> {
    for (const id of released) this.weights.delete(id);
    let reply: HostReply;
    try {
      const kernel = (this.kernels as unknown as Record<string, (...a: unknown[]) => unknown>)[op];
      if (typeof kernel !== "function") throw new TinyseekError(`${this.kernels.name}: no kernel named "${op}"`);
      reply = { value: await kernel(...unpackArgs(op, args, (s) => this.lookup(s))) };
    } catch (error) {
      reply = { error };
    }
    if (this.closed) return; // the worker is gone or going; nobody waits
    this.link.answer(reply);
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
