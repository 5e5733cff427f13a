// `npm run bench [-- --quick] [--filter REGEX] [--impl a,b] [--json FILE] [--webgpu]`: times every kernel case on
// reference, wasm (1 and 2 threads; wasm-relaxed, 1 thread, when named), tfjs-wasm, tfjs-cpu, ort-wasm (and webgpu
// when asked), prints a markdown table with ratios against tfjs-wasm and writes the rows as JSON. bench/model.ts, when it exports `runModelBench`, adds
// its whole-model rows to the same table and file.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { loadBackend } from "../src/backend.ts";
import { kernelCases, kernelsImpl, markdownTable, ortImpl, referenceImpl, runBench, tfjsImpl, wasmImpl, type BenchRow, type Impl } from "./kernels.ts";
import { allowRelaxedSimd } from "../wasm/backend.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    filter: { type: "string" },
    impl: { type: "string" },
    json: { type: "string" },
    webgpu: { type: "boolean", default: false },
    time: { type: "string" },
  },
});

const filter = values.filter ? new RegExp(values.filter) : undefined;
const wanted = values.impl?.split(",");
const want = (name: string) => !wanted || wanted.includes(name);

if (wanted?.includes("wasm-relaxed")) allowRelaxedSimd(); // before anything compiles WebAssembly
const impls: Impl[] = [];
if (want("reference")) impls.push(referenceImpl());
if (want("wasm")) impls.push(await wasmImpl(1), await wasmImpl(Math.max(2, Math.min(availableParallelism(), 2))));
if (wanted?.includes("wasm-relaxed")) { // only when named: it sets a V8 flag (allowRelaxedSimd)
  try {
    impls.push(await wasmImpl(1, "wasm-relaxed"));
  } catch (error) {
    console.error(`wasm-relaxed: not available: ${(error as Error).message.split("\n")[0]}`);
  }
}
for (const which of ["wasm", "cpu"] as const) {
  if (!want(`tfjs-${which}`)) continue;
  try {
    impls.push(await tfjsImpl(which));
  } catch (error) {
    console.error(`tfjs-${which}: not available: ${(error as Error).message.split("\n")[0]}`);
  }
}
if (want("ort-wasm")) {
  try {
    impls.push(await ortImpl());
  } catch (error) {
    console.error(`ort-wasm: not available: ${(error as Error).message.split("\n")[0]}`);
  }
}
if (values.webgpu || wanted?.includes("webgpu")) {
  const backend = await loadBackend("webgpu");
  impls.push(kernelsImpl("webgpu", 1, backend.asyncKernels, () => backend.dispose()));
}

const cases = kernelCases(values.quick).filter((c) => !filter || filter.test(`${c.op} ${c.shape}`));
console.log(`${cpus()[0]?.model ?? "unknown CPU"}, ${availableParallelism()} cores, Node ${process.version}`);
console.log(`${cases.length} cases × ${impls.length} implementations${values.quick ? " (quick)" : ""}`);
// Other processes' load moves every figure: the run says how loaded the machine was, at its start and end.
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(`${new Date().toISOString()}, load average ${load()}`);
for (const impl of impls) if (impl.description) console.log(`  ${impl.impl} ×${impl.threads}: ${impl.description}`);
console.log("");
const timeMs = Number(values.time ?? (values.quick ? 150 : 600));
const rows: BenchRow[] = await runBench(cases, impls, {
  timeMs,
  rounds: values.quick ? 3 : 7,
  onRow: (r) => console.error(`  ${r.op} ${r.shape} ${r.impl}×${r.threads}: ${r.medianMs.toFixed(3)} ms`),
});
for (const impl of impls) await impl.dispose();

if (existsSync(new URL("./model.ts", import.meta.url))) {
  const model = (await import(new URL("./model.ts", import.meta.url).href)) as {
    runModelBench?: (options: { quick: boolean; filter?: RegExp }) => Promise<BenchRow[]>;
  };
  if (model.runModelBench) rows.push(...(await model.runModelBench({ quick: values.quick, filter })));
}

console.log(markdownTable(rows));
console.log(`\n${new Date().toISOString()}, load average ${load()}`);
if (values.json) {
  mkdirSync(dirname(values.json), { recursive: true });
  writeFileSync(values.json, JSON.stringify(rows, null, 2) + "\n");
}
