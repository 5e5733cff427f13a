// The WASM backend in a browser: the module fetched from the build's assets (the relaxed-SIMD build where
// WebAssembly.validate accepts it, else SIMD128), assembled by wasm/instance.ts as in Node, its pool's workers
// Web Workers (web/platform/wasm-pool.ts). Threads need SharedArrayBuffer, which a browser gives only to a
// cross-origin isolated page (the COOP/COEP headers web/serve.ts sends): elsewhere one thread is the most.

import { TinyseekError } from "../../src/errors.ts";
import { instantiateBackend, type WasmBackend } from "../../wasm/instance.ts";
import { chooseSimdBuild } from "../../wasm/simd-build.ts";
import { WebAssemblyApi } from "../../wasm/webassembly.ts";
import type { BrowserBackendOptions } from "./backends.ts";
import { fetchBytes } from "./model.ts";
import { spawnBrowserWorker, workerChunks } from "./wasm-pool.ts";

const simdUrl = new URL("../../wasm/build/tinyseek.wasm", import.meta.url);
const relaxedUrl = new URL("../../wasm/build/tinyseek.relaxed.wasm", import.meta.url);

const isolated = () => (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;

/** Threads by default: the browser's cores up to 4 when isolated (a page shares the machine), else 1. */
export function defaultThreads(): number {
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
  return isolated() ? Math.max(1, Math.min(4, cores)) : 1;
}

export async function createBrowserWasm(options: BrowserBackendOptions = {}): Promise<WasmBackend> {
  const threads = options.threads ?? defaultThreads();
  if (threads > 1 && !isolated()) {
    throw new TinyseekError(`threads: expected 1 on a page that is not cross-origin isolated (threads need the COOP/COEP headers of spec/web.md), got ${threads}`);
  }
  const requested = options.relaxed ?? true;
  const candidate = requested ? await fetchBytes(relaxedUrl, "wasm (relaxed SIMD)") : undefined;
  const { relaxed, simd } = chooseSimdBuild(requested, () => WebAssemblyApi.validate(candidate!));
  const bytes = relaxed ? candidate! : await fetchBytes(simdUrl, "wasm");
  if (!WebAssemblyApi.validate(bytes)) throw new TinyseekError("wasm: this browser does not validate the SIMD128 module (WebAssembly SIMD is needed)");
  const module = await WebAssemblyApi.compile(bytes);
  return instantiateBackend({ module, relaxed, simd, threads, check: false, spawn: spawnBrowserWorker });
}

/** Pool chunks that this page's workers (not the page itself) have run so far: proof that threads work. */
export { workerChunks };
