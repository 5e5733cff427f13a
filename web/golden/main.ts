// The golden page (web/golden.html): runs the suite on the chosen backends (web/golden/run.ts) when the page
// opens and on "Run", shows each backend's table, and leaves the outcome on `window.tinyseekGolden` for
// `npm run web:check` (web/check.ts). URL parameters: backends=wasm,webgpu, threads=N, relaxed=0, only=GLOB (cases
// whose name matches, as `golden check --only`). `window.tinyseekThreads(n)` shows that WASM's workers run.

import { BACKENDS, referenceBackend, type BackendName } from "../../src/backend.ts";
import { loadBrowserBackend } from "../platform/backends.ts";
import { runGoldenOn, type BackendReport } from "./run.ts";
import type { GoldenPageState } from "./state.ts";


const form = document.querySelector<HTMLFormElement>("#controls")!;
const status = document.querySelector<HTMLElement>("#status")!;
const out = document.querySelector<HTMLElement>("#reports")!;
const params = new URLSearchParams(location.search);

function choose(): { backends: BackendName[]; threads: number; relaxed: boolean } {
  const boxes = [...form.querySelectorAll<HTMLInputElement>("input[name=backend]")];
  const fromUrl = params.get("backends")?.split(",").map((b) => b.trim());
  if (fromUrl) boxes.forEach((box) => (box.checked = fromUrl.includes(box.value)));
  const threadsBox = form.querySelector<HTMLInputElement>("input[name=threads]")!;
  if (params.has("threads")) threadsBox.value = params.get("threads")!;
  const unknown = fromUrl?.filter((b) => !(BACKENDS as readonly string[]).includes(b)) ?? [];
  if (unknown.length > 0) throw new Error(`backends: expected names from ${BACKENDS.join(", ")}, got ${unknown.join(", ")}`);
  const threads = Number(threadsBox.value);
  return {
    backends: boxes.filter((b) => b.checked).map((b) => b.value as BackendName),
    threads: crossOriginIsolated ? threads : 1,
    relaxed: params.get("relaxed") !== "0",
  };
}

async function run(): Promise<void> {
  const page: GoldenPageState = { state: "running", reports: [], isolated: crossOriginIsolated };
  (window as unknown as { tinyseekGolden: GoldenPageState }).tinyseekGolden = page;
  out.replaceChildren();
  let chosen;
  try {
    chosen = choose();
  } catch (error) {
    status.textContent = (error as Error).message;
    Object.assign(page, { state: "done", exitCode: 2 });
    return;
  }
  for (const name of chosen.backends) {
    let report: BackendReport;
    try {
      report = await runGoldenOn(name, { threads: chosen.threads, relaxed: chosen.relaxed }, (text) => (status.textContent = `checking ${text}`), params.get("only") ?? undefined);
    } catch (error) {
      const text = `the suite did not run: ${(error as Error).message}`;
      report = { backend: name, description: "", exitCode: 1, text, counts: { ok: 0, fail: 0, notSupported: 0 }, inWorker: [] };
    }
    page.reports.push(report);
    const section = document.createElement("section");
    const heading = document.createElement("h2");
    const verdict = document.createElement("span");
    verdict.className = report.exitCode === 0 ? "ok" : "fail";
    verdict.textContent = report.exitCode === 0 ? "pass" : "FAIL";
    heading.append(`${name}: `, verdict);
    const pre = document.createElement("pre");
    pre.textContent = report.text;
    section.append(heading, pre);
    out.append(section);
  }
  const exitCode = chosen.backends.length === 0 ? 2 : Math.max(0, ...page.reports.map((r) => r.exitCode));
  status.textContent = chosen.backends.length === 0 ? "Choose a backend." : exitCode === 0 ? "Every file passed on every backend." : "Some files failed: see the tables.";
  Object.assign(page, { state: "done", exitCode });
}

export interface ThreadsProbe {
  isolated: boolean;
  description: string;
  /** Pool chunks the workers (not the page) ran during one matmul large enough to be split. */
  workerChunks: number;
  /** The matmul's largest difference from the reference. */
  maxError: number;
}

/** Loads WASM with `threads` threads, runs one 192×192×192 matmul on it, and says how much of it the workers ran. */
async function threadsProbe(threads: number): Promise<ThreadsProbe> {
  const { workerChunks } = await import("../platform/wasm.ts");
  const backend = await loadBrowserBackend("wasm", { threads });
  try {
    const n = 192;
    const a = { shape: [n, n], data: Float32Array.from({ length: n * n }, (_, i) => Math.sin(i)) };
    const b = { shape: [n, n], data: Float32Array.from({ length: n * n }, (_, i) => Math.cos(i)) };
    const before = workerChunks();
    const out = backend.kernels!.matmul(a, b);
    const ran = workerChunks() - before;
    const ref = referenceBackend.kernels!.matmul(a, b);
    const maxError = out.data.reduce((m, v, i) => Math.max(m, Math.abs(v - ref.data[i]!)), 0);
    return { isolated: crossOriginIsolated, description: backend.description, workerChunks: ran, maxError };
  } finally {
    await backend.dispose();
  }
}
(window as unknown as { tinyseekThreads: typeof threadsProbe }).tinyseekThreads = threadsProbe;

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void run();
});
void run();
