// generate's decode speed in headless Chromium (Debian's chromium, web/chromium.ts) next to Node's, in one run:
// the shipped checkpoint on WASM (1 and 2 threads, the SIMD128 and the relaxed-SIMD builds), WebGPU (Dawn over
// lavapipe in Node; Chromium's own adapter in the browser) and the reference, each measured the same way on both
// sides (web/bench/measure.ts). Prints a markdown table (bench/README.md, "generate in the browser").
//
//   npx tsx bench/web.ts [--rounds 5] [--tokens 64] [--passes 3] [--backends reference,wasm,webgpu] [--no-build]
//
// A pass measures a setting in Node, then in Chromium (each: one untimed round, then `rounds` timed ones, the
// median kept); the table gives the median over passes of each side and the median of the passes' ratios.

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { BACKENDS, loadBackend, type BackendName } from "../src/backend.ts";
import { numberArg, parse, positionals, UsageError } from "../src/cli/io.ts";
import { loadModel } from "../src/model/weights.ts";
import { CHROMIUM, openBrowser } from "../web/chromium.ts";
import { measureGenerate, type GenerateMeasure } from "../web/bench/measure.ts";
import { buildSite, DIST, serveSite } from "../web/site.ts";
import { allowRelaxedSimd } from "../wasm/backend.ts";

interface Setting {
  backend: BackendName;
  threads?: number;
  relaxed?: boolean;
}

const SETTINGS: Setting[] = [
  { backend: "reference" },
  { backend: "wasm", threads: 1, relaxed: false },
  { backend: "wasm", threads: 1, relaxed: true },
  { backend: "wasm", threads: 2, relaxed: false },
  { backend: "wasm", threads: 2, relaxed: true },
  { backend: "webgpu" },
];

const { values, positionals: given } = parse(process.argv.slice(2), {
  rounds: { type: "string" }, tokens: { type: "string" }, passes: { type: "string" }, backends: { type: "string" }, "no-build": { type: "boolean" },
});
positionals(given, [], "npx tsx bench/web.ts [--rounds N] [--tokens N] [--passes N] [--backends reference,wasm,webgpu] [--no-build]");
const chosen = (values.backends ?? BACKENDS.join(",")).split(",").map((b) => b.trim());
const unknown = chosen.filter((b) => !(BACKENDS as readonly string[]).includes(b));
if (unknown.length > 0) throw new UsageError(`--backends: expected names from ${BACKENDS.join(", ")}, got ${JSON.stringify(values.backends)}`);
const rounds = numberArg("--rounds", values.rounds, 5, { integer: true, min: 1, max: 1000 });
const tokens = numberArg("--tokens", values.tokens, 64, { integer: true, min: 2, max: 500 });
const passes = numberArg("--passes", values.passes, 3, { integer: true, min: 1, max: 100 });

// Node 20 validates relaxed SIMD only behind a V8 flag (allowRelaxedSimd); Chromium validates it as it is.
allowRelaxedSimd();

if (!values["no-build"]) await buildSite();
else if (!existsSync(join(DIST, "bench.html"))) throw new Error("--no-build: web/dist has no bench.html; run once without --no-build");
const site = await serveSite(DIST, 0);
const browser = await openBrowser();
const page = await browser.newPage();
await page.goto(`${site.url}bench.html`);
await page.waitForFunction("typeof window.tinyseekBench === 'function'");

const model = await loadModel(join(import.meta.dirname, "../data/tiny-alice.safetensors"));
const loadBefore = loadavg()[0]!;
const rows: string[] = [];
type Measured = GenerateMeasure & { description: string };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function inNode(s: Setting): Promise<Measured> {
  const backend = await loadBackend(s.backend, { threads: s.threads, ...(s.relaxed === undefined ? {} : { relaxed: s.relaxed }) } as never);
  try {
    return { ...(await measureGenerate(model, backend, { rounds, tokens })), description: backend.description };
  } finally {
    await backend.dispose();
  }
}

const inChromium = async (s: Setting) =>
  (await page.evaluate(`window.tinyseekBench(${JSON.stringify(s.backend)}, ${JSON.stringify({ threads: s.threads, relaxed: s.relaxed, rounds, tokens })})`)) as Measured;

for (const s of SETTINGS.filter((setting) => chosen.includes(setting.backend))) {
  // Passes alternate Node and Chromium, so that a change in the machine's load falls on both sides.
  const node: Measured[] = [], web: Measured[] = [];
  let problem = "";
  for (let pass = 0; pass < passes && !problem; pass++) {
    try {
      node.push(await inNode(s));
      web.push(await inChromium(s));
    } catch (error) {
      problem = (error as Error).message.split("\n")[0]!;
    }
  }
  if (problem) {
    rows.push(`| ${s.backend} | ${s.threads ?? ""} | — (${problem}) | | | |`);
  } else {
    const ratios = node.map((n, i) => web[i]!.tokensPerSecond / n.tokensPerSecond);
    const rate = (ms: Measured[]) => median(ms.map((m) => m.tokensPerSecond)).toFixed(1);
    rows.push(`| ${s.backend} | ${node[0]!.description} | ${rate(node)} | ${web[0]!.description} | ${rate(web)} | ${median(ratios).toFixed(2)}× |`);
  }
  console.error(rows.at(-1));
}
const loadAfter = loadavg()[0]!;
await browser.close();
await site.close();

const chromiumVersion = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
console.log(`${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, Node ${process.version}, ${chromiumVersion}; ` +
  `load average (1 min) ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after; ${passes} passes, each ${rounds} rounds of ${tokens - 1} decoded tokens after an untimed one\n`);
console.log("| backend | Node: as loaded | Node tokens/s | Chromium: as loaded | Chromium tokens/s | Chromium ÷ Node (median of passes) |");
console.log("|---|---|---:|---|---:|---:|");
for (const row of rows) console.log(row);
