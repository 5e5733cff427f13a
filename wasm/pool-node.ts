// The thread pool's workers in Node (wasm/pool.ts): worker_threads running the job loop from source, each with
// its own instance of the module over the one shared memory. Unref'd: a forgotten dispose() still lets the
// process exit.

import { Worker } from "node:worker_threads";
import { CHUNKS, COUNT, EXPORT, FAILED, FINISHED, GENERATION, SPIN_MS, TICKET, type PoolWorker, type PoolWorkerData } from "./pool.ts";

// serveJobs() and work() of wasm/pool.ts, as source (a literal copy: Function.prototype.toString of transpiled
// code is not reliable, and a worker started from source needs no TypeScript loader).
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const { module, memory, control, args, names } = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error("abort"); } } });
const c = new Int32Array(control), a = new Float64Array(args);
const [GENERATION, TICKET, FINISHED, EXPORT, COUNT, CHUNKS, FAILED] = [${[GENERATION, TICKET, FINISHED, EXPORT, COUNT, CHUNKS, FAILED]}];
function work(c, gen, chunks, call) {
  for (;;) {
    const ticket = Atomics.load(c, TICKET);
    if (ticket >>> 16 !== (gen & 0xffff) || (ticket & 0xffff) >= chunks) return;
    if (Atomics.compareExchange(c, TICKET, ticket, ticket + 1) !== ticket) continue;
    try { call(ticket & 0xffff); } catch { Atomics.store(c, FAILED, 1); }
    Atomics.add(c, FINISHED, 1);
    Atomics.notify(c, FINISHED);
  }
}
parentPort.postMessage("ready");
let seen = 0;
for (;;) {
  for (const until = performance.now() + ${SPIN_MS}; Atomics.load(c, GENERATION) === seen && performance.now() < until;);
  Atomics.wait(c, GENERATION, seen);
  seen = Atomics.load(c, GENERATION);
  const index = c[EXPORT];
  if (index < 0) break;
  const fn = instance.exports[names[index]];
  const list = Array.from(a.subarray(0, c[COUNT]));
  const chunks = c[CHUNKS];
  work(c, seen, chunks, (chunk) => fn(...list, chunk, chunks));
}
`;

/** Pool.create's spawn in Node. */
export function spawnNodeWorker(workerData: PoolWorkerData): Promise<PoolWorker> {
  // execArgv: [] so that the parent's flags (--input-type=module, loaders) never change how this script parses.
  const worker = new Worker(workerSource, { eval: true, workerData, execArgv: [] });
  return new Promise<PoolWorker>((resolve, reject) => {
    worker.once("message", () => {
      worker.unref();
      resolve(worker);
    });
    worker.once("error", reject);
  });
}
