// Threads: worker_threads, each with its own instance of the module over the one shared memory. A job is an
// export name and its arguments; every thread calls the export with (…arguments, part, parts) and computes only
// its share, the calling thread taking part 0. The Kernels interface is synchronous, so the caller blocks in
// Atomics.wait until the workers have counted themselves done. Workers are unref'd: a forgotten dispose() still
// lets the process exit.

import { Worker } from "node:worker_threads";
import { TinyseekError } from "../src/errors.ts";
import { type WasmMemory, type WasmModule } from "./webassembly.ts";

const MAX_ARGS = 32;
// Control words: job generation, workers done, export index (-1: quit), argument count, error flag.
const GENERATION = 0, DONE = 1, EXPORT = 2, COUNT = 3, FAILED = 4;

const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const { module, memory, control, args, names, part, parts } = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error("abort"); } } });
const c = new Int32Array(control), a = new Float64Array(args);
parentPort.postMessage("ready");
let seen = 0;
for (;;) {
  Atomics.wait(c, ${GENERATION}, seen);
  seen = Atomics.load(c, ${GENERATION});
  const index = c[${EXPORT}];
  if (index < 0) break;
  const list = Array.from(a.subarray(0, c[${COUNT}]));
  try { instance.exports[names[index]](...list, part, parts); } catch { Atomics.store(c, ${FAILED}, 1); }
  Atomics.add(c, ${DONE}, 1);
  Atomics.notify(c, ${DONE});
}
`;

export class Pool {
  private constructor(
    private workers: Worker[],
    private control: Int32Array,
    private args: Float64Array,
    private names: string[],
  ) {}

  /** Starts threads - 1 workers (the caller is the first thread). */
  static async create(module: WasmModule, memory: WasmMemory, threads: number, names: string[]): Promise<Pool> {
    const control = new Int32Array(new SharedArrayBuffer(64));
    const args = new Float64Array(new SharedArrayBuffer(MAX_ARGS * 8));
    const workers: Worker[] = [];
    await Promise.all(
      Array.from({ length: threads - 1 }, (_, i) => {
        const workerData = { module, memory, control: control.buffer, args: args.buffer, names, part: i + 1, parts: threads };
        // execArgv: [] so that the parent's flags (--input-type=module, loaders) never change how this script parses.
        const worker = new Worker(workerSource, { eval: true, workerData, execArgv: [] });
        workers.push(worker);
        return new Promise<void>((resolve, reject) => {
          worker.once("message", () => resolve());
          worker.once("error", reject);
        });
      }),
    );
    for (const w of workers) w.unref();
    return new Pool(workers, control, args, names);
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  /** Runs `exports[name](...args, part, threads)` on every thread; `local` is the caller's own export. */
  run(name: string, args: number[], local: (...args: number[]) => void): void {
    if (this.workers.length === 0) throw new TinyseekError("wasm: the thread pool has been disposed");
    const index = this.names.indexOf(name);
    if (index < 0 || args.length > MAX_ARGS) throw new TinyseekError(`wasm: ${name} cannot run on the pool`);
    const c = this.control;
    this.args.set(args);
    c[EXPORT] = index;
    c[COUNT] = args.length;
    Atomics.store(c, DONE, 0);
    Atomics.store(c, FAILED, 0);
    Atomics.add(c, GENERATION, 1);
    Atomics.notify(c, GENERATION);
    let failure: unknown;
    try {
      local(...args, 0, this.threads);
    } catch (error) {
      failure = error;
    }
    for (let done = Atomics.load(c, DONE); done < this.workers.length; done = Atomics.load(c, DONE)) {
      Atomics.wait(c, DONE, done);
    }
    if (failure) throw failure;
    if (Atomics.load(c, FAILED)) throw new TinyseekError(`wasm ${name}: a worker thread trapped`);
  }

  async dispose(): Promise<void> {
    const c = this.control;
    c[EXPORT] = -1;
    Atomics.add(c, GENERATION, 1);
    Atomics.notify(c, GENERATION);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }
}
