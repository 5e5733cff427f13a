// Building the static site (web/vite.config.ts) and serving a folder of it on localhost with the headers that
// make a page cross-origin isolated (COOP same-origin, COEP require-corp: SharedArrayBuffer, so WASM threads).
// Shared by `npm run web` (web/serve.ts), `npm run web:check` (web/check.ts) and the browser tests (test/browser.ts).

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { TinyseekError } from "../src/errors.ts";
import { ISOLATION_HEADERS } from "./vite.config.ts";

export const WEB_ROOT = fileURLToPath(new URL(".", import.meta.url));
export const DIST = join(WEB_ROOT, "dist");

/** Builds web/ into `outDir` (default web/dist; a few seconds); throws with the bundler's message on failure. */
export async function buildSite(outDir: string = DIST): Promise<string> {
  const { build } = await import("vite");
  await build({ configFile: join(WEB_ROOT, "vite.config.ts"), logLevel: "warn", build: { outDir, emptyOutDir: true } });
  return outDir;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

export interface Site {
  /** http://localhost:PORT/ */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `dir` on localhost (port 0: any free port) with the isolation headers; GET and HEAD only. */
export async function serveSite(dir: string = DIST, port = 0): Promise<Site> {
  const root = normalize(dir + sep);
  const server: Server = createServer((request, response) => {
    const headers: Record<string, string> = { ...ISOLATION_HEADERS, "Cache-Control": "no-store" };
    const fail = (status: number, text: string) => {
      response.writeHead(status, { ...headers, "Content-Type": "text/plain; charset=utf-8" });
      response.end(`${text}\n`);
    };
    if (request.method !== "GET" && request.method !== "HEAD") return fail(405, "only GET and HEAD");
    let path: string;
    try {
      path = decodeURIComponent(new URL(request.url ?? "/", "http://localhost").pathname);
    } catch {
      return fail(400, "bad URL");
    }
    const file = normalize(join(root, path.endsWith("/") ? `${path}index.html` : path));
    if (!file.startsWith(root) || file.includes("\0")) return fail(404, "not found");
    stat(file).then(
      (s) => {
        if (!s.isFile()) return fail(404, "not found");
        response.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Content-Length": String(s.size) });
        if (request.method === "HEAD") return response.end();
        createReadStream(file).on("error", () => response.destroy()).pipe(response);
      },
      () => fail(404, "not found"),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(new TinyseekError(error.code === "EADDRINUSE" ? `--port: ${port} is in use; choose another (or 0 for any free port)` : `server: ${error.message}`)),
    );
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  return {
    url: `http://localhost:${bound}/`,
    port: bound,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
