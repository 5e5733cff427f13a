// Threads: workers (Node's worker_threads, wasm/pool-node.ts; Web Workers in a browser, web/platform/wasm-pool.ts),
// each with its own instance of the module over the one shared memory. A job is an
// export name, its arguments and a number of chunks; every thread claims chunks one at a time and calls
// export(...arguments, chunk, chunks), the calling thread included. Claiming (not a fixed share per thread) means
// a worker that the OS has not scheduled yet costs nothing: the caller takes its chunks. The Kernels interface is
// synchronous, so the caller then blocks in Atomics.wait until every claimed chunk is finished (a browser's main
// thread may not block: there it spins until then). Node's workers are unref'd: a forgotten dispose() still lets
// the process exit.
// Both sides spin for a bounded SPIN_MS before Atomics.wait: waking a sleeping thread costs tens of microseconds
// on a VM (a futex and a halted vCPU to rouse), paid twice per job, while jobs often come back to back (bmm's
// batches, a model's consecutive linears) and a job's last chunks finish close together.

import { TinyseekError } from "../src/errors.ts";
import type { WasmMemory, WasmModule } from "./webassembly.ts";

export const MAX_ARGS = 32;
/** Milliseconds a thread polls for new work (worker) or for the last chunks (caller) before it sleeps. */
export const SPIN_MS = 0.2;
// Control words. TICKET packs the job's generation (high 16 bits) with the next unclaimed chunk (low 16), so a
// worker that wakes late can never claim a chunk of a newer job with the older job's arguments.
export const GENERATION = 0, TICKET = 1, FINISHED = 2, EXPORT = 3, COUNT = 4, CHUNKS = 5, FAILED = 6;

/** Claims and runs chunks of job `gen` until none is left (shared by the caller and the workers). */
export function work(c: Int32Array, gen: number, chunks: number, call: (chunk: number) => void): void {
  for (;;) {
    const ticket = Atomics.load(c, TICKET);
    if (ticket >>> 16 !== (gen & 0xffff) || (ticket & 0xffff) >= chunks) return;
    if (Atomics.compareExchange(c, TICKET, ticket, ticket + 1) !== ticket) continue;
    try {
      call(ticket & 0xffff);
    } catch {
      Atomics.store(c, FAILED, 1);
    }
    Atomics.add(c, FINISHED, 1);
    Atomics.notify(c, FINISHED);
  }
}

/** What a worker receives: the module, the memory, the two control buffers and the exports' names by index. */
export interface PoolWorkerData {
  module: WasmModule;
  memory: WasmMemory;
  control: SharedArrayBuffer;
  args: SharedArrayBuffer;
  names: string[];
}

/** A started worker, ready for jobs. */
export interface PoolWorker {
  terminate(): unknown;
}

/** Starts one worker that serves jobs (serveJobs below, or Node's copy of it) and resolves once it is ready. */
export type SpawnWorker = (data: PoolWorkerData) => Promise<PoolWorker>;

/** A worker's loop: waits for each job and claims its chunks, until a job with export -1 ends it; `ran` after each chunk. */
export function serveJobs(data: PoolWorkerData, ran: () => void = () => {}): void {
  const { module, memory, control, args, names } = data;
  const api = (globalThis as unknown as { WebAssembly: { Instance: new (m: WasmModule, imports: object) => { exports: Record<string, unknown> } } }).WebAssembly;
  const instance = new api.Instance(module, { env: { memory, abort() { throw new Error("abort"); } } });
  const c = new Int32Array(control), a = new Float64Array(args);
  let seen = 0;
  for (;;) {
    for (const until = performance.now() + SPIN_MS; Atomics.load(c, GENERATION) === seen && performance.now() < until;);
    Atomics.wait(c, GENERATION, seen);
    seen = Atomics.load(c, GENERATION);
    const index = c[EXPORT]!;
    if (index < 0) break;
    const fn = instance.exports[names[index]!] as (...args: number[]) => void;
    const list = Array.from(a.subarray(0, c[COUNT]));
    const chunks = c[CHUNKS]!;
    work(c, seen, chunks, (chunk) => {
      fn(...list, chunk, chunks);
      ran();
    });
  }
}

/** Whether this thread may block in Atomics.wait (a browser's main thread may not). */
function mayBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

export class Pool {
  private generation = 0;

  private constructor(
    private workers: PoolWorker[],
    private control: Int32Array,
    private args: Float64Array,
    private names: string[],
    private blocks: boolean,
  ) {}

  /** Starts threads - 1 workers with `spawn` (the caller is the first thread). */
  static async create(module: WasmModule, memory: WasmMemory, threads: number, names: string[], spawn: SpawnWorker): Promise<Pool> {
    const control = new Int32Array(new SharedArrayBuffer(64));
    const args = new Float64Array(new SharedArrayBuffer(MAX_ARGS * 8));
    const data = { module, memory, control: control.buffer as SharedArrayBuffer, args: args.buffer as SharedArrayBuffer, names };
    const started = await Promise.allSettled(Array.from({ length: threads - 1 }, () => spawn(data)));
    const workers = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    const failure = started.find((s) => s.status === "rejected");
    if (failure) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw failure.reason;
    }
    return new Pool(workers, control, args, names, mayBlock());
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Runs `local(...args, chunk, chunks)` for every chunk, spread over all threads; `local` is the caller's export.
   * `meanwhile`, if given, runs on the caller after the workers have started and before it takes chunks: JS work
   * that does not touch the job's memory (allocating the output) overlaps the job instead of adding to it.
   */
  run(name: string, args: number[], local: (...args: number[]) => void, chunks = this.threads, meanwhile?: () => void): void {
    if (this.workers.length === 0) throw new TinyseekError("wasm: the thread pool has been disposed");
    const index = this.names.indexOf(name);
    if (index < 0 || args.length > MAX_ARGS || chunks > 0xffff) throw new TinyseekError(`wasm: ${name} cannot run on the pool`);
    const c = this.control;
    const gen = ++this.generation;
    this.args.set(args);
    c[EXPORT] = index;
    c[COUNT] = args.length;
    c[CHUNKS] = chunks;
    Atomics.store(c, FINISHED, 0);
    Atomics.store(c, FAILED, 0);
    Atomics.store(c, TICKET, (gen & 0xffff) << 16);
    Atomics.store(c, GENERATION, gen);
    Atomics.notify(c, GENERATION);
    try {
      meanwhile?.();
    } finally { // never return (or throw) while a worker may still write the job's memory
      work(c, gen, chunks, (chunk) => local(...args, chunk, chunks));
      const until = performance.now() + SPIN_MS;
      for (let done = Atomics.load(c, FINISHED); done < chunks; done = Atomics.load(c, FINISHED)) {
        if (this.blocks && performance.now() >= until) Atomics.wait(c, FINISHED, done);
      }
    }
    if (Atomics.load(c, FAILED)) throw new TinyseekError(`wasm ${name}: a kernel trapped on the thread pool`);
  }

  async dispose(): Promise<void> {
    const c = this.control;
    c[EXPORT] = -1;
    Atomics.store(c, GENERATION, ++this.generation);
    Atomics.notify(c, GENERATION);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }
}
