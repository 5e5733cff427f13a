// The static site (spec/web.md): the pages in web/ (the stepper, web/index.html; the golden suite,
// web/golden.html; the benchmark page bench/web.ts drives, web/bench.html) bundled into web/dist with the shipped checkpoint, the WASM modules and the golden files as
// assets. `npm run web` builds and serves it (web/serve.ts); any static host can serve web/dist as it is, given
// the two headers below.

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

/** What threads need: SharedArrayBuffer exists only on a cross-origin isolated page. */
export const ISOLATION_HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
} as const;

/** Every page in web/ that exists. */
const pages = Object.fromEntries(
  ["index", "golden", "bench"].filter((name) => existsSync(`${root}${name}.html`)).map((name) => [name, `${root}${name}.html`]),
);

/**
 * Node's built-in modules in the browser's pages. The project's modules that also run in a browser load them on
 * use (`await import("node:fs/promises")` inside a function only the command line calls); the bundler replaces
 * such a module with one that throws on use, and says so in a warning per import, which is expected and dropped
 * here. A static import of one would break a page where it is used, so it fails the build, naming the importer.
 */
function nodeOnUse(): Plugin {
  const staticImport = /^\s*import\s[^;]*?from\s*["']node:[^"']+["']|^\s*import\s*["']node:[^"']+["']/m;
  return {
    name: "tinyseek-node-on-use",
    transform(code, id) {
      if (id.includes("/node_modules/") || !/\.(ts|js|mjs)$/.test(id)) return null;
      const found = staticImport.exec(code);
      if (found) this.error(`${id} imports a Node module statically (${found[0].trim()}): load it on use, or keep the module out of the pages`);
      return null;
    },
  };
}

const expectedWarning = (message: string) => /Module "node:[^"]+" has been externalized for browser compatibility/.test(message);

export default defineConfig({
  plugins: [nodeOnUse()],
  root,
  // Relative asset URLs: the folder works from any path on any host.
  base: "./",
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Never inline: the checkpoint and golden files stay files (fetched, cached, and replaceable in a test).
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      input: pages,
      onLog(level, log, handler) {
        if (level === "warn" && expectedWarning(log.message)) return;
        handler(level, log);
      },
    },
  },
  worker: { format: "es" },
  server: { headers: ISOLATION_HEADERS },
  preview: { headers: ISOLATION_HEADERS },
});
