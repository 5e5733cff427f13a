// `npm run web [-- --port N] [-- --no-build]`: builds the static site (web/vite.config.ts) and serves web/dist on
// localhost with the COOP/COEP headers that WASM threads need (web/site.ts); prints the URL and serves until
// interrupted. Any static host can serve web/dist instead (README: the two headers).

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TinyseekError } from "../src/errors.ts";
import { numberArg, parse, positionals, UsageError } from "../src/cli/io.ts";
import { buildSite, DIST, serveSite } from "./site.ts";

export const usage = "usage: npm run web -- [--port N] [--no-build]   (N: 0 to 65535; 0 picks a free port; default 8173)";

export async function main(args: string[]): Promise<number> {
  const { values, positionals: given } = parse(args, { port: { type: "string" }, "no-build": { type: "boolean" }, help: { type: "boolean" } });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  positionals(given, [], usage);
  const port = numberArg("--port", values.port, 8173, { integer: true, min: 0, max: 65535 });
  if (values["no-build"]) {
    if (!existsSync(join(DIST, "index.html"))) throw new TinyseekError(`--no-build: ${DIST} has no build yet; run npm run web once without --no-build`);
  } else {
    console.log("building web/ into web/dist …");
    await buildSite();
  }
  const site = await serveSite(DIST, port);
  console.log(`serving web/dist at ${site.url} (golden suite: ${site.url}golden.html); Ctrl-C stops`);
  process.once("SIGINT", () => void site.close().then(() => process.exit(0)));
  process.once("SIGTERM", () => void site.close().then(() => process.exit(0)));
  return -1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exit(code);
    },
    (error: unknown) => {
      if (error instanceof TinyseekError) {
        console.error(error.message);
        process.exit(error instanceof UsageError ? 2 : 1);
      }
      throw error;
    },
  );
}
