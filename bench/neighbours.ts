// Why the model bench's WASM rows run slower than the same decode alone (bench/README.md, "The step's own JavaScript
// cut"): `npx tsx bench/neighbours.ts [none|reference|tfjs-wasm|tfjs-cpu] [kind] [--gap MS]` forks the bench's own
// worker (bench/model-worker.ts) for 1-thread WASM and one for the neighbour, then runs 15 rounds as the bench does:
// a 16-step WASM session (timed), then a neighbour session, then an idle gap. Printed per round: WASM's median µs a
// step, its minor/major page faults during the session (/proc/PID/stat), and the neighbour's CPU use meanwhile.

import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { gap: { type: "string", default: "0" } } });
const [neighbour = "none", kind = "mha"] = positionals;
const gapMs = Number(values.gap);

/** A worker process of the model bench, asked one request at a time. */
function worker(impl: string) {
  const entry = fileURLToPath(new URL("./model-worker.ts", import.meta.url));
  const child = fork(entry, [JSON.stringify({ impl, threads: 1, capacity: 48 })], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiting = new Map<number, (value: unknown) => void>();
  let next = 1;
  child.on("message", (m: { id: number; result?: unknown; error?: string }) => {
    waiting.get(m.id)?.(m.error ?? m.result);
    waiting.delete(m.id);
  });
  const ready = new Promise((resolve) => waiting.set(0, resolve));
  const ask = <T>(request: object) => new Promise<T>((resolve) => {
    const id = next++;
    waiting.set(id, resolve as (value: unknown) => void);
    child.send({ ...request, id });
  });
  return { pid: child.pid!, ready, ask, kill: () => child.kill() };
}

/** Fields of /proc/PID/stat after the command name: minor faults, major faults, and user + system CPU in ms. */
function procStat(pid: number): { minor: number; major: number; cpuMs: number } {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { minor: Number(f[7]), major: Number(f[9]), cpuMs: (Number(f[11]) + Number(f[12])) * 10 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const prompt = Array.from({ length: 32 }, (_, i) => (i * 7) % 200);
const wasm = worker("wasm");
const other = neighbour === "none" ? null : worker(neighbour);
for (const w of [wasm, other]) {
  if (!w) continue;
  await w.ready;
  await w.ask({ op: "model", name: "tiny", kind });
  await w.ask({ op: "warm", prompt, ms: 1500 });
}
console.log(`tiny ${kind}: WASM with neighbour ${neighbour}, gap ${gapMs} ms`);
for (let round = 0; round < 15; round++) {
  const [before, theirs, started] = [procStat(wasm.pid), other ? procStat(other.pid).cpuMs : 0, performance.now()];
  const steps = await wasm.ask<number[]>({ op: "session", prompt, steps: 16 });
  const [after, busy] = [procStat(wasm.pid), other ? (procStat(other.pid).cpuMs - theirs) / (performance.now() - started) : 0];
  console.log(`round ${round + 1}: ${(median(steps) * 1000).toFixed(0)} µs a step, faults ${after.minor - before.minor} minor / ${after.major - before.major} major, neighbour busy ${(100 * busy).toFixed(0)} %`);
  if (other) await other.ask({ op: "session", prompt, steps: 16 });
  if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
}
wasm.kill();
other?.kill();
