// `npm run web:check [-- --backends wasm,webgpu] [-- --threads N] [-- --no-build]`: builds the site, serves it,
// opens the golden page (web/golden.html) in headless Chromium (web/chromium.ts), and prints the table that
// `golden check` prints for each backend. Exit 0 when every file passed on every backend, 1 when one failed or
// could not run, 2 for usage, a missing browser or a backend that did not load.

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { BACKENDS } from "../src/backend.ts";
import { numberArg, parse, positionals, UsageError } from "../src/cli/io.ts";
import { TinyseekError } from "../src/errors.ts";
import { openBrowser, watchErrors } from "./chromium.ts";
import type { GoldenPageState } from "./golden/state.ts";
import { buildSite, DIST, serveSite } from "./site.ts";

export const usage = "usage: npm run web:check -- [--backends wasm,webgpu] [--threads N] [--timeout SECONDS] [--no-build]";

export interface BrowserCheck {
  exitCode: number;
  /** The tables and verdicts, as printed. */
  text: string;
  state: GoldenPageState;
  /** Console errors and uncaught exceptions of the page. */
  errors: string[];
}

/** Opens `siteUrl`golden.html in a new page and waits for the suite to finish (`only`: cases matching a glob). */
export async function checkInBrowser(
  newPage: () => Promise<Page>, siteUrl: string, options: { backends: string[]; threads: number; timeoutMs: number; only?: string },
): Promise<BrowserCheck> {
  const page = await newPage();
  const errors = watchErrors(page);
  try {
    const query = new URLSearchParams({ backends: options.backends.join(","), threads: String(options.threads), ...(options.only ? { only: options.only } : {}) });
    await page.goto(`${siteUrl}golden.html?${query}`);
    await page.waitForFunction("window.tinyseekGolden && window.tinyseekGolden.state === 'done'", null, { timeout: options.timeoutMs, polling: 500 });
    const state = (await page.evaluate("window.tinyseekGolden")) as GoldenPageState;
    const lines = [`cross-origin isolated: ${state.isolated}`];
    for (const r of state.reports) lines.push("", `## ${r.backend}`, r.text);
    if (errors.length > 0) lines.push("", "page errors:", ...errors);
    return { exitCode: state.exitCode ?? 2, text: lines.join("\n"), state, errors };
  } finally {
    await page.close();
  }
}

export async function main(args: string[]): Promise<number> {
  const { values, positionals: given } = parse(args, {
    backends: { type: "string" }, threads: { type: "string" }, timeout: { type: "string" }, "no-build": { type: "boolean" },
  });
  positionals(given, [], usage);
  const backends = (values.backends ?? "wasm,webgpu").split(",").map((b) => b.trim());
  const unknown = backends.filter((b) => !(BACKENDS as readonly string[]).includes(b));
  if (unknown.length > 0 || backends.length === 0) throw new UsageError(`--backends: expected names from ${BACKENDS.join(", ")} separated by commas, got ${JSON.stringify(values.backends)}`);
  const threads = numberArg("--threads", values.threads, 2, { integer: true, min: 1, max: 16 });
  const timeout = numberArg("--timeout", values.timeout, 600, { min: 1, max: 86_400 });
  if (values["no-build"]) {
    if (!existsSync(join(DIST, "golden.html"))) throw new TinyseekError(`--no-build: ${DIST} has no build yet; run npm run web:check once without --no-build`);
  } else {
    await buildSite();
  }
  const site = await serveSite(DIST, 0);
  let browser;
  try {
    browser = await openBrowser();
  } catch (error) {
    await site.close();
    throw new UsageError((error as Error).message.split("\n")[0]!);
  }
  try {
    const result = await checkInBrowser(() => browser.newPage(), site.url, { backends, threads, timeoutMs: timeout * 1000 });
    console.log(result.text);
    console.log(`\nweb:check: ${result.exitCode === 0 ? "every golden file passed" : "FAILED"} in Chromium (${backends.join(", ")}); exit ${result.exitCode}`);
    return result.exitCode;
  } finally {
    await browser.close();
    await site.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      if (error instanceof TinyseekError) {
        console.error(error.message);
        process.exit(error instanceof UsageError ? 2 : 1);
      }
      console.error(error);
      process.exit(1);
    },
  );
}
