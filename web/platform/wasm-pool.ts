// The WASM pool's workers in a browser (wasm/pool.ts): module Web Workers (web/platform/wasm-worker.ts) that
// instantiate the module over the shared memory and serve jobs. Every worker adds the chunks it runs to one
// shared counter, which a page or a test reads to see that the threads really work.

import { TinyseekError } from "../../src/errors.ts";
import type { PoolWorker, PoolWorkerData } from "../../wasm/pool.ts";
import { workerClass } from "./worker.ts";

/** Chunks run by workers, all pools of this page together (made with the first worker: a page that is not
 *  cross-origin isolated has no SharedArrayBuffer, and then no workers either). */
let counter: Int32Array | undefined;

export function workerChunks(): number {
  return counter ? Atomics.load(counter, 0) : 0;
}

/** Pool.create's spawn in a browser. */
export function spawnBrowserWorker(data: PoolWorkerData): Promise<PoolWorker> {
  const Worker = workerClass("wasm");
  const worker = new Worker(new URL("./wasm-worker.ts", import.meta.url), { type: "module", name: "tinyseek-wasm" });
  return new Promise<PoolWorker>((resolve, reject) => {
    worker.onmessage = () => resolve(worker);
    worker.onerror = (event) => {
      worker.terminate();
      reject(new TinyseekError(`wasm: a pool worker failed to start: ${event.message || "no message"}`));
    };
    counter ??= new Int32Array(new SharedArrayBuffer(4));
    worker.postMessage({ ...data, counter: counter.buffer });
  });
}
