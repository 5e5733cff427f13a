// The browser's half of the golden suite (spec/web.md) in headless Chromium: the golden page loads cross-origin
// isolated with no console error, WASM's workers really run (Web Workers over shared memory), every committed
// golden file passes on wasm and on webgpu inside the page as `npm run web:check` reports it, and a golden file
// served corrupted fails that check. Also, needing no browser: the server's headers and paths, the browser
// bridge's replies, and the argument checks of `npm run web`, `web:check` and loadBrowserBackend. One build and
// one browser for the file (test/browser.ts).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Route } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotSupportedError } from "../src/backend.ts";
import { loadBrowserBackend } from "../web/platform/backends.ts";
import { readReply, writeReply } from "../web/platform/sync-bridge-wire.ts";
import { checkInBrowser } from "../web/check.ts";
import { main as checkMain } from "../web/check.ts";
import { main as serveMain } from "../web/serve.ts";
import { serveSite as serveFolder, type Site } from "../web/site.ts";
import { browserSkipReason, openBrowser, serveSite, type TestBrowser } from "./browser.ts";

const skip = browserSkipReason();

describe("web: without a browser", () => {
  it("serves a folder with the isolation headers, and nothing outside it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tinyseek-site-"));
    writeFileSync(join(dir, "secret.txt"), "outside the site");
    mkdirSync(join(dir, "site", "assets"), { recursive: true });
    writeFileSync(join(dir, "site", "index.html"), "<!doctype html><title>x</title>");
    writeFileSync(join(dir, "site", "assets", "m.wasm"), new Uint8Array([0, 97, 115, 109]));
    const site = await serveFolder(join(dir, "site"), 0);
    try {
      const page = await fetch(site.url);
      expect(page.status).toBe(200);
      expect(page.headers.get("cross-origin-opener-policy")).toBe("same-origin");
      expect(page.headers.get("cross-origin-embedder-policy")).toBe("require-corp");
      expect(page.headers.get("content-type")).toMatch(/^text\/html/);
      expect((await fetch(`${site.url}assets/m.wasm`)).headers.get("content-type")).toBe("application/wasm");
      for (const path of ["..%2Fsecret.txt", "assets/..%2F..%2Fsecret.txt", "%2E%2E/secret.txt", "missing.js", "assets"]) {
        expect((await fetch(`${site.url}${path}`)).status, path).toBe(404);
      }
      expect((await fetch(site.url, { method: "POST" })).status).toBe(405);
    } finally {
      await site.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the browser's bridge replies cross shared memory: a tensor as it is, an error as its class, too large as an error", () => {
    const buffer = new SharedArrayBuffer(256);
    writeReply(buffer, { value: { shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-7, -0) } });
    const t = readReply(buffer);
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.data)).toEqual([1, -2, 3.5, 0, Math.fround(1e-7), -0]);
    writeReply(buffer, { error: new NotSupportedError("webgpu: no such kernel") });
    expect(() => readReply(buffer)).toThrow(NotSupportedError);
    writeReply(buffer, { value: { shape: [100], data: new Float32Array(100) } });
    expect(() => readReply(buffer)).toThrow(/^sync bridge: a result of 100 floats does not fit the reply buffer of 256 bytes$/);
  });

  it("npm run web refuses a bad --port and stray arguments in one line", async () => {
    await expect(serveMain(["--port", "http"])).rejects.toThrow(/^--port: expected an integer in \[0, 65535\], got "http"$/);
    await expect(serveMain(["--port", "70000"])).rejects.toThrow(/^--port: expected an integer in \[0, 65535\], got "70000"$/);
    await expect(serveMain(["dist"])).rejects.toThrow(/^expected no arguments, got dist/);
  });

  it("npm run web:check refuses an unknown backend or thread count", async () => {
    await expect(checkMain(["--backends", "wasm,cuda"])).rejects.toThrow(/^--backends: expected names from reference, wasm, webgpu separated by commas, got "wasm,cuda"$/);
    await expect(checkMain(["--threads", "0"])).rejects.toThrow(/^--threads: expected an integer in \[1, 16\], got "0"$/);
  });

  it("loadBrowserBackend names a bad backend, thread count or a page without isolation", async () => {
    await expect(loadBrowserBackend("cuda" as never)).rejects.toThrow(/^backend: expected one of reference, wasm, webgpu, got "cuda"$/);
    await expect(loadBrowserBackend("wasm", { threads: 0 })).rejects.toThrow(/^threads: expected an integer in \[1, 256\], got 0$/);
    await expect(loadBrowserBackend("wasm", { threads: 2 })).rejects.toThrow(/^threads: expected 1 on a page that is not cross-origin isolated/);
  });
});

describe.skipIf(skip !== undefined)(`the golden suite in Chromium${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let site: Site;
  let browser: TestBrowser;

  beforeAll(async () => {
    site = await serveSite();
    browser = await openBrowser();
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  it("the page is cross-origin isolated, and WASM's two threads both run a matmul's chunks", async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${site.url}golden.html?backends=`);
      await page.waitForFunction("window.tinyseekGolden && window.tinyseekGolden.state === 'done'");
      const probe = (await page.evaluate("window.tinyseekThreads(2)")) as { isolated: boolean; description: string; workerChunks: number; maxError: number };
      expect(probe.isolated).toBe(true);
      expect(probe.description).toMatch(/, 2 threads/);
      expect(probe.workerChunks).toBeGreaterThan(0); // the page's own thread could have taken every chunk
      expect(probe.maxError).toBeLessThan(1e-3);
    } finally {
      await page.close();
    }
  }, 120_000);

  it("every golden file passes on wasm and on webgpu in the page, with no console error", async () => {
    const result = await checkInBrowser(() => browser.newPage(), site.url, { backends: ["wasm", "webgpu"], threads: 2, timeoutMs: 600_000 });
    expect(result.errors).toEqual([]);
    expect(result.state.isolated).toBe(true);
    const [wasm, webgpu] = result.state.reports;
    expect(wasm!.text).toMatch(/backend wasm: WebAssembly .*2 threads/);
    expect(webgpu!.text).toMatch(/backend webgpu: WebGPU \(browser\)/);
    for (const report of [wasm!, webgpu!]) {
      expect(report.counts.fail, report.text).toBe(0);
      expect(report.counts.notSupported, report.text).toBe(0);
      expect(report.counts.ok).toBeGreaterThan(100);
    }
    expect(webgpu!.inWorker.length).toBeGreaterThan(0); // the component cases ran in the bridge's worker
    expect(result.exitCode).toBe(0);
  }, 900_000);

  it("fails when a golden file's output departs: one float of output.y changed in the bytes served", async () => {
    const handler = async (route: Route) => {
      const response = await route.fetch();
      const bytes = new Uint8Array(await response.body());
      const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, { data_offsets: [number, number] }>;
      const at = 8 + headerLength + header["output.y"]!.data_offsets[0];
      const view = new DataView(bytes.buffer, at, 4);
      view.setFloat32(0, view.getFloat32(0, true) + 0.5, true);
      await route.fulfill({ response, body: Buffer.from(bytes) });
    };
    await browser.context.route("**/core.linear.5x13x11-*.safetensors", handler);
    try {
      const result = await checkInBrowser(() => browser.newPage(), `${site.url}`, { backends: ["wasm"], threads: 1, timeoutMs: 120_000, only: "core.linear.*" });
      expect(result.exitCode).toBe(1);
      expect(result.text).toMatch(/core\.linear\.5x13x11\.safetensors +\| +1 \|.*\| fail/);
      expect(result.text).toMatch(/core\.linear\.1x1x1\.safetensors +\| +1 \|.*\| ok/);
      expect(result.text).toMatch(/\n\d+ ok, 1 failed, 0 not supported/);
    } finally {
      await browser.context.unroute("**/core.linear.5x13x11-*.safetensors", handler);
    }
  }, 180_000);
});
