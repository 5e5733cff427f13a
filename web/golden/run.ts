// The golden suite on one backend inside the page: every committed golden file (spec/golden/, bundled as assets
// by the build) fetched, decoded and checked by the same code as `tinyseek golden check` (checkGolden,
// src/io/golden.ts), the table written by the same report (src/cli/golden-report.ts). Cases that need
// synchronous kernels on WebGPU run in the bridge's worker (web/platform/sync-bridge.ts) and are named as such.

import type { Backend, BackendName } from "../../src/backend.ts";
import { goldenReport } from "../../src/cli/golden-report.ts";
import { TinyseekError } from "../../src/errors.ts";
import { goldenSuite, matchesGlob } from "../../src/golden/suite.ts";
import { checkGolden, decodeGolden, type CheckResult } from "../../src/io/golden.ts";
import { loadBrowserBackend, type BrowserBackendOptions } from "../platform/backends.ts";
import { fetchBytes } from "../platform/model.ts";
import type { BackendReport } from "./state.ts";

export type { BackendReport } from "./state.ts";

/** spec/golden/NAME.safetensors → its URL in the build, sorted by name as `golden check` sorts a directory. */
const urls = import.meta.glob("../../spec/golden/*.safetensors", { query: "?url", import: "default", eager: true }) as Record<string, string>;
export const GOLDEN_FILES: readonly { file: string; url: string }[] = Object.entries(urls)
  .map(([path, url]) => ({ file: `spec/golden/${path.split("/").pop()}`, url }))
  .sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));


const baseName = (file: string) => file.slice(file.lastIndexOf("/") + 1);

/** Checks every golden file (or those whose case matches `only`, as `golden check --only`) on `name`; `progress` hears each file as it starts. */
export async function runGoldenOn(
  name: BackendName, options: BrowserBackendOptions, progress: (text: string) => void = () => {}, only?: string,
): Promise<BackendReport> {
  let backend: Backend;
  try {
    backend = await loadBrowserBackend(name, options);
  } catch (error) {
    const text = `backend ${name} is not available here: ${(error as Error).message}`;
    return { backend: name, description: "unavailable", exitCode: 2, text, counts: { ok: 0, fail: 0, notSupported: 0 }, inWorker: [] };
  }
  const inWorker: string[] = [];
  let current = "";
  const recorded: Backend = backend.runSynchronously
    ? { ...backend, runSynchronously: (task, args, onEvent) => (inWorker.push(current), backend.runSynchronously!(task, args, onEvent)) }
    : backend;
  const suite = goldenSuite();
  const results: CheckResult[] = [];
  try {
    const files = only === undefined ? GOLDEN_FILES : GOLDEN_FILES.filter(({ file }) => matchesGlob(baseName(file).replace(/\.safetensors$/, ""), only));
    if (files.length === 0) throw new TinyseekError(`only: no golden file matches ${JSON.stringify(only)}`);
    for (const { file, url } of files) {
      current = file;
      progress(`${name}: ${baseName(file)}`);
      results.push(await checkFile(file, url, recorded, suite));
    }
  } finally {
    await backend.dispose();
  }
  const lines: string[] = [];
  const io = { out: (text: string) => lines.push(text), err: (text: string) => lines.push(text) };
  if (results.length === 0) results.push({ file: "spec/golden", outcome: "fail", comparisons: [], message: "the build holds no golden files" });
  let exitCode = goldenReport(io, results, false, `backend ${backend.name}: ${backend.description}`, baseName);
  const notSupported = results.filter((r) => r.outcome === "not supported").length;
  // In the browser a case that cannot run is a failure of the check, not a pass (spec/web.md).
  if (notSupported > 0) {
    lines.push(`${notSupported} case(s) could not run in this browser: the check fails`);
    exitCode = 1;
  }
  if (inWorker.length > 0) lines.push(`run in the synchronous bridge's worker: ${inWorker.map(baseName).join(", ")}`);
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  return {
    backend: name, description: backend.description, exitCode, text: lines.join("\n"),
    counts: { ok: count("ok"), fail: count("fail"), notSupported }, inWorker,
  };
}

/** One file: fetched, decoded and checked; a file that cannot be fetched or read fails naming itself. */
async function checkFile(file: string, url: string, backend: Backend, suite: ReturnType<typeof goldenSuite>): Promise<CheckResult> {
  let decoded;
  try {
    decoded = decodeGolden(await fetchBytes(url, file), file);
  } catch (error) {
    if (error instanceof TinyseekError) return { file, outcome: "fail", comparisons: [], message: error.message };
    throw error;
  }
  return checkGolden(decoded, suite, backend, {}, file);
}
