// Compiles wasm/assembly/*.ts (AssemblyScript) into wasm/build/tinyseek.wasm and tinyseek.relaxed.wasm with the
// options in asconfig.json (SIMD128, shared imported memory for threads, -O3). Runs on `npm install`
// (postinstall) and `npm run build:wasm`; skips the compile when the binaries are newer than every source.
// `--force` rebuilds, `--debug` also builds the unoptimised target with a .wat listing.

import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const output = join(root, "wasm/build/tinyseek.wasm");
const relaxedOutput = join(root, "wasm/build/tinyseek.relaxed.wasm");
const sources = [join(root, "asconfig.json"), fileURLToPath(import.meta.url),
  ...readdirSync(join(root, "wasm/assembly")).map((f) => join(root, "wasm/assembly", f))];

const force = process.argv.includes("--force");
const upToDate = [output, relaxedOutput].every((out) => existsSync(out) && sources.every((f) => statSync(f).mtimeMs <= statSync(out).mtimeMs));
if (upToDate && !force && !process.argv.includes("--debug")) process.exit(0);

let asc;
try {
  asc = (await import("assemblyscript/asc")).default;
} catch {
  // An install without devDependencies (a consumer of the package) has no compiler: the wasm backend then
  // reports itself unavailable instead of failing the install.
  console.warn("tinyseek: assemblyscript is not installed, skipping the WASM build");
  process.exit(0);
}

process.chdir(root);
mkdirSync("wasm/build", { recursive: true });
// release: SIMD128, what every engine runs; relaxed: the same with relaxed SIMD's FMA, loaded where the engine
// validates it (Node 22+; Node 20 only with --experimental-wasm-relaxed-simd).
const targets = ["release", "relaxed", ...(process.argv.includes("--debug") ? ["debug"] : [])];
const outputs = { release: output, relaxed: join(root, "wasm/build/tinyseek.relaxed.wasm"), debug: join(root, "wasm/build/tinyseek.debug.wasm") };
for (const target of targets) {
  // Compiled under a private name and renamed into place: test processes that start together and find no binary
  // each build it, and none may read another's half-written file.
  const outFile = outputs[target];
  const temporary = `${outFile}.${process.pid}.tmp`;
  const { error, stderr } = await asc.main(["--config", "asconfig.json", "--target", target, "--outFile", temporary]);
  if (error) {
    console.error(stderr.toString());
    console.error(`tinyseek: WASM build failed: ${error.message}`);
    process.exit(1);
  }
  renameSync(temporary, outFile);
}
