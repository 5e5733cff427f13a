// Backends in a browser, by name, as src/backend.ts loads them in Node: the reference as it is, WASM from the
// fetched module with Web Workers for threads (web/platform/wasm.ts), WebGPU over navigator.gpu
// (web/platform/webgpu.ts). Each is loaded only when asked for.

import { BACKENDS, referenceBackend, type Backend, type BackendName } from "../../src/backend.ts";
import { argError, checkInteger } from "../../src/errors.ts";

export type BrowserBackendName = BackendName;

export interface BrowserBackendOptions {
  /** WASM threads, the page's own included (default: up to 4 when the page is cross-origin isolated, else 1). */
  threads?: number;
  /** WASM: the relaxed-SIMD build where the browser validates it (default true). */
  relaxed?: boolean;
}

export async function loadBrowserBackend(name: BrowserBackendName, options: BrowserBackendOptions = {}): Promise<Backend> {
  if (!(BACKENDS as readonly string[]).includes(name)) throw argError("backend", `one of ${BACKENDS.join(", ")}`, name);
  if (options.threads !== undefined) checkInteger("threads", options.threads, 1, 256);
  if (options.relaxed !== undefined && typeof options.relaxed !== "boolean") throw argError("relaxed", "true or false", options.relaxed);
  switch (name) {
    case "reference":
      return referenceBackend;
    case "wasm":
      return (await import("./wasm.ts")).createBrowserWasm(options);
    case "webgpu":
      return (await import("./webgpu.ts")).createBrowserWebGpu();
  }
}
