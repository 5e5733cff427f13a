// The benchmark page (web/bench.html): `window.tinyseekBench(backend, options)` measures generate on the shipped
// checkpoint in this browser (web/bench/measure.ts) for bench/web.ts, which drives it in headless Chromium.

import { loadBrowserBackend, type BrowserBackendName, type BrowserBackendOptions } from "../platform/backends.ts";
import { loadBrowserModel } from "../platform/model.ts";
import { measureGenerate, type GenerateMeasure } from "./measure.ts";

const model = loadBrowserModel();

async function bench(name: BrowserBackendName, options: BrowserBackendOptions & { rounds: number; tokens: number }): Promise<GenerateMeasure & { description: string }> {
  const backend = await loadBrowserBackend(name, { threads: options.threads, relaxed: options.relaxed });
  try {
    return { ...(await measureGenerate((await model).model, backend, options)), description: backend.description };
  } finally {
    await backend.dispose();
  }
}

(window as unknown as { tinyseekBench: typeof bench }).tinyseekBench = bench;
document.querySelector("#status")!.textContent = `ready (cross-origin isolated: ${crossOriginIsolated})`;
