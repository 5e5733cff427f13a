// The browser tests' harness: Debian's Chromium driven by playwright-core (no browser download), and the static
// site built once per test run and served with the isolation headers (web/site.ts). With no Chromium and CI unset
// the browser tests skip with one line (browserSkipReason); under CI=true they run, and fail if it is missing.

import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM } from "../web/chromium.ts";
import { buildSite, serveSite as serveFolder, type Site } from "../web/site.ts";

export { CHROMIUM, CHROMIUM_ARGS, openBrowser, watchErrors, type TestBrowser } from "../web/chromium.ts";

/** Why the browser tests cannot run here (no Chromium, CI unset), else undefined: under CI=true they always run. */
export function browserSkipReason(): string | undefined {
  if (process.env.CI === "true" || existsSync(CHROMIUM)) return undefined;
  return `no Chromium at ${CHROMIUM} (apt-get install chromium; CI=true makes this a failure)`;
}

const root = fileURLToPath(new URL("..", import.meta.url));
/** What the build reads: a change to any of these makes the next test run build again. */
const SOURCES = ["web", "src", "gpu", "wasm/build", "wasm/instance.ts", "wasm/pool.ts", "wasm/kernels", "spec/golden", "data", "package-lock.json"];
const CACHE = join(root, "node_modules", ".cache", "tinyseek-web");

function newest(path: string): number {
  if (!existsSync(path)) return 0;
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let latest = s.mtimeMs;
  for (const entry of readdirSync(path)) {
    if (entry === "dist" || entry === "node_modules") continue;
    latest = Math.max(latest, newest(join(path, entry)));
  }
  return latest;
}

let built: Promise<string> | undefined;

/**
 * The site built once per test run: test files run in separate processes, so the build goes to a folder named by
 * the newest source's time, under a lock; a process that finds it built (or being built) uses it.
 */
function buildOnce(): Promise<string> {
  built ??= (async () => {
    const stamp = Math.floor(Math.max(...SOURCES.map((s) => newest(join(root, s)))));
    const dir = join(CACHE, String(stamp));
    const done = join(dir, ".built");
    const lock = `${dir}.lock`;
    mkdirSync(CACHE, { recursive: true });
    for (const deadline = Date.now() + 300_000; Date.now() < deadline;) {
      if (existsSync(done)) return dir;
      try {
        mkdirSync(lock);
      } catch {
        // Another test process is building; a lock older than 5 minutes belongs to one that died.
        if (existsSync(lock) && Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true });
        await new Promise((resolve) => setTimeout(resolve, 250));
        continue;
      }
      try {
        await buildSite(dir);
        writeFileSync(done, "");
        forgetOldBuilds(dir);
        return dir;
      } finally {
        rmSync(lock, { recursive: true, force: true });
      }
    }
    throw new Error(`web build: waited 5 minutes for ${lock}`);
  })();
  return built;
}

/** Builds other than `keep` finished more than an hour ago: no test run still serves them. */
function forgetOldBuilds(keep: string): void {
  for (const name of readdirSync(CACHE)) {
    const dir = join(CACHE, name);
    if (dir === keep || name.endsWith(".lock")) continue;
    const done = join(dir, ".built");
    const age = Date.now() - statSync(existsSync(done) ? done : dir).mtimeMs;
    if (!existsSync(`${dir}.lock`) && age > 3_600_000) rmSync(dir, { recursive: true, force: true });
  }
}

/** The site, built once per test run, served on a free localhost port with the isolation headers. */
export async function serveSite(): Promise<Site> {
  return serveFolder(await buildOnce(), 0);
}
