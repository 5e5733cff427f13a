// Why the model bench's WASM rows ran slower than the same decode alone (bench/README.md, "DSA's indexer and NSA's
// window on the device"): `npx tsx bench/neighbours.ts [none|reference|tfjs-wasm|tfjs-cpu] [kind] [--gap MS]
// [--young fixed|default]` forks the bench's own worker (bench/model-worker.ts) for 1-thread WASM and one for the
// neighbour, then runs 15 rounds as the bench does: a 16-step WASM session (timed), then a neighbour session, then an
// idle gap. Printed per round: WASM's median µs a step, its minor/major page faults during the session
// (/proc/PID/stat), and the neighbour's CPU use meanwhile. `--young default` starts the workers with V8's own young
// generation instead of the bench's fixed one (bench/model.ts, FIXED_YOUNG_GENERATION): behind a slow neighbour the
// WASM worker's then shrinks, and its sessions fault it back in.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ATTENTION_KINDS, type AttentionKind } from "../src/model/config.ts";
import type { ImplName } from "./kernels.ts";
import { FIXED_YOUNG_GENERATION, median, spawn } from "./model.ts";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { gap: { type: "string", default: "0" }, young: { type: "string", default: "fixed" } } });
const [neighbour = "none", kind = "mha"] = positionals;
const gapMs = Number(values.gap);
const NEIGHBOURS = ["none", "reference", "wasm", "wasm-relaxed", "tfjs-wasm", "tfjs-cpu"];
const refuse = (what: string) => {
  console.error(what);
  process.exit(2);
};
if (!NEIGHBOURS.includes(neighbour)) refuse(`neighbour: expected one of ${NEIGHBOURS.join(", ")}, got "${neighbour}"`);
if (!(ATTENTION_KINDS as readonly string[]).includes(kind)) refuse(`kind: expected one of ${ATTENTION_KINDS.join(", ")}, got "${kind}"`);
if (!(gapMs >= 0)) refuse(`--gap: expected milliseconds ≥ 0, got "${values.gap}"`);
if (values.young !== "fixed" && values.young !== "default") refuse(`--young: expected fixed or default, got "${values.young}"`);
// "fixed": the bench's workers (FIXED_YOUNG_GENERATION); "default": V8's own young generation, which shrinks.
const v8Flags = values.young === "fixed" ? FIXED_YOUNG_GENERATION : [];

/** Fields of /proc/PID/stat after the command name: minor faults, major faults, and user + system CPU in ms. */
function procStat(pid: number): { minor: number; major: number; cpuMs: number } {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { minor: Number(f[7]), major: Number(f[9]), cpuMs: (Number(f[11]) + Number(f[12])) * 10 };
}

const prompt = Array.from({ length: 32 }, (_, i) => (i * 7) % 200);
const wasm = await spawn({ impl: "wasm", threads: 1, capacity: 48 }, v8Flags);
const other = neighbour === "none" ? null : await spawn({ impl: neighbour as ImplName, threads: 1, capacity: 48 }, v8Flags);
for (const w of [wasm, other]) {
  if (!w) continue;
  await w.ask({ op: "model", name: "tiny", kind: kind as AttentionKind });
  await w.ask({ op: "warm", prompt, ms: 1500 });
}
console.log(`tiny ${kind}: WASM with neighbour ${neighbour}, gap ${gapMs} ms, ${values.young} young generation`);
for (let round = 0; round < 15; round++) {
  const [before, theirs, started] = [procStat(wasm.pid), other ? procStat(other.pid).cpuMs : 0, performance.now()];
  const steps = await wasm.ask<number[]>({ op: "session", prompt, steps: 16 });
  const [after, busy] = [procStat(wasm.pid), other ? (procStat(other.pid).cpuMs - theirs) / (performance.now() - started) : 0];
  console.log(`round ${round + 1}: ${(median(steps) * 1000).toFixed(0)} µs a step, faults ${after.minor - before.minor} minor / ${after.major - before.major} major, neighbour busy ${(100 * busy).toFixed(0)} %`);
  if (other) await other.ask({ op: "session", prompt, steps: 16 });
  if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
}
await Promise.all([wasm.close(), other?.close()]);
