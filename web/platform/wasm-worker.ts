// One WASM pool worker in a browser (web/platform/wasm-pool.ts): says it is ready, then serves jobs until the
// pool ends them (serveJobs, wasm/pool.ts), counting the chunks it runs.

import { serveJobs, type PoolWorkerData } from "../../wasm/pool.ts";

const scope = globalThis as unknown as { onmessage: ((event: MessageEvent) => void) | null; postMessage(message: unknown): void };

scope.onmessage = (event) => {
  const data = event.data as PoolWorkerData & { counter: SharedArrayBuffer };
  const counter = new Int32Array(data.counter);
  scope.onmessage = null;
  scope.postMessage("ready");
  serveJobs(data, () => Atomics.add(counter, 0, 1));
};
