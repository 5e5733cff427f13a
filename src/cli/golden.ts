// `tinyseek golden write|check|compare|list|support`: the golden files of spec/golden.md from the command line.

import { readdir, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { BACKENDS, loadBackend, type Backend } from "../backend.ts";
import { TinyseekError } from "../errors.ts";
import type { GoldenCase } from "../golden/case.ts";
import { goldenSuite, matchesGlob } from "../golden/suite.ts";
import { checkGoldenFile, checkSupport, compareGolden, decodeGolden, goldenFilesIn, writeGoldenCase, type CheckResult } from "../io/golden.ts";
import { readSafetensors, readSafetensorsBytes } from "../io/safetensors.ts";
import { numberArg, parse, threadsArg, positionals, processIo, UsageError, type Io } from "./io.ts";
import { goldenReport } from "./golden-report.ts";
import { printTable, type Row } from "./table.ts";

export const help = `usage:
  tinyseek golden write DIR [--only GLOB] [--clean]    run every case on the reference, write DIR/<case>.safetensors
  tinyseek golden check PATH... --backend NAME           recompute files (or all in a directory) on a backend
                        [--only GLOB] [--threads N]      NAME: reference (must be bit-exact), wasm, webgpu
                        [--verbose]                      each file's name and time on stderr as it runs
  tinyseek golden compare A B [--exact]                  compare B's output.* tensors with golden file A's
                        [--outputs y[,z]]                only these outputs (the others are named as skipped)
  tinyseek golden list [--only GLOB]                     the cases of the suite
  tinyseek golden support [--backends LIST] [--only GLOB]
                                                         case × backend matrix: ok, fail, not supported

options:
  --only GLOB   only cases whose name matches (* and ?, several separated by commas)
  --clean       also delete DIR/*.safetensors whose case no longer exists
  --json        print JSON instead of a table
Exit codes: 0 all ok (or not supported), 1 a mismatch or a bad file, 2 usage or unavailable backend.`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "write": return write(rest, io);
    case "check": return check(rest, io);
    case "compare": return compare(rest, io);
    case "list": return list(rest, io);
    case "support": return support(rest, io);
    default:
      throw new UsageError(`${sub === undefined ? "expected a subcommand" : `unknown subcommand ${JSON.stringify(sub)}`}: write, check, compare, list or support`);
  }
}

function selectCases(only: string | undefined): GoldenCase[] {
  const cases = goldenSuite();
  if (only === undefined) return cases;
  const selected = cases.filter((c) => matchesGlob(c.name, only));
  if (selected.length === 0) throw new TinyseekError(`no case matches ${JSON.stringify(only)} (see npx tinyseek golden list)`);
  return selected;
}

async function write(args: string[], io: Io): Promise<number> {
  const { values, positionals: given } = parse(args, { only: { type: "string" }, clean: { type: "boolean" }, json: { type: "boolean" } });
  const [dir] = positionals(given, ["DIR"], "tinyseek golden write DIR [--only GLOB] [--clean]");
  const cases = selectCases(values.only);
  if (cases.length === 0) throw new TinyseekError("the golden suite has no cases yet");
  const rows: Row[] = [];
  for (const c of cases) {
    const { path, bytes } = await writeGoldenCase(dir!, c);
    rows.push({ file: basename(path), component: c.component, bytes });
  }
  if (values.clean) {
    const names = new Set(goldenSuite().map((c) => `${c.name}.safetensors`));
    for (const file of await readdir(dir!)) {
      if (file.endsWith(".safetensors") && !names.has(file)) {
        await rm(join(dir!, file));
        rows.push({ file, component: "(removed: no such case)", bytes: 0 });
      }
    }
  }
  printTable(io, rows, { json: values.json });
  if (!values.json) io.out(`wrote ${cases.length} file(s), ${rows.reduce((s, r) => s + Number(r.bytes), 0)} bytes, to ${dir}`);
  return 0;
}

async function check(args: string[], io: Io): Promise<number> {
  const { values, positionals: paths } = parse(args, {
    backend: { type: "string" }, only: { type: "string" }, threads: { type: "string" }, json: { type: "boolean" }, verbose: { type: "boolean" },
  });
  if (paths.length === 0) throw new UsageError("expected a directory or golden files to check");
  if (values.backend === undefined) throw new UsageError("--backend is required: reference, wasm or webgpu");
  const threads = threadsArg(values.threads, io);
  let backend: Backend;
  try {
    backend = await loadBackend(values.backend, threads === undefined ? {} : { threads });
  } catch (error) {
    if (error instanceof TinyseekError) throw new UsageError(error.message);
    throw error;
  }
  try {
    const files = (await Promise.all(paths.map(goldenFilesIn))).flat();
    const selected = values.only === undefined ? files : files.filter((f) => matchesGlob(basename(f, ".safetensors"), values.only!));
    if (selected.length === 0) throw new TinyseekError(`no golden file matches ${JSON.stringify(values.only)}`);
    const suite = goldenSuite();
    const results: CheckResult[] = [];
    for (const file of selected) {
      if (values.verbose) io.err(`checking ${basename(file)} on ${backend.name}`); // before: a crash names its file
      const start = performance.now();
      results.push(await checkGoldenFile(file, suite, backend));
      if (values.verbose) io.err(`  ${results.at(-1)!.outcome} in ${(performance.now() - start).toFixed(1)} ms`);
    }
    return goldenReport(io, results, values.json, `backend ${backend.name}: ${backend.description}`, (file) => basename(file));
  } finally {
    await backend.dispose();
  }
}

async function compare(args: string[], io: Io): Promise<number> {
  const { values, positionals: given } = parse(args, { exact: { type: "boolean" }, json: { type: "boolean" }, outputs: { type: "string" } });
  const [a, b] = positionals(given, ["A", "B"], "tinyseek golden compare A B [--exact] [--outputs y[,z]]");
  const outputs = values.outputs?.split(",").map((name) => name.trim().replace(/^output\./, ""));
  if (outputs && outputs.some((name) => name === "")) throw new UsageError(`--outputs: expected output names separated by commas, got ${JSON.stringify(values.outputs)}`);
  const golden = decodeGolden(await readSafetensorsBytes(a!), a);
  const other = readSafetensors(await readSafetensorsBytes(b!));
  const result = await compareGolden(golden, other, { exact: values.exact, outputs, suite: goldenSuite() }, b);
  if (values.json) {
    printTable(io, [], { json: true, value: result });
    return result.outcome === "fail" ? 1 : 0;
  }
  // A comparison that failed before comparing anything (a missing output, other inputs) prints no empty table.
  if (result.comparisons.length > 0) {
    printTable(io, result.comparisons.map((c) => ({
      output: c.name, elements: c.elements, mismatches: c.mismatches, "max abs err": c.maxAbsError,
      "max rel err": c.maxRelError, "norm err": c.normalisedError, verdict: c.pass ? "ok" : "fail",
    })));
    io.out("");
  }
  if (result.outcome !== "ok") io.out(`${result.message}\n`);
  if (result.skipped) io.out(`skipped ${result.skipped.join(", ")} (not in --outputs)`);
  if (result.toleranceSource) io.out(`tolerance: ${result.toleranceSource}`);
  io.out(`${result.outcome === "ok" ? "ok" : "FAIL"}: ${b} against ${a} (case ${golden.name})`);
  return result.outcome === "fail" ? 1 : 0;
}

async function list(args: string[], io: Io): Promise<number> {
  const { values, positionals: given } = parse(args, { only: { type: "string" }, json: { type: "boolean" } });
  positionals(given, [], "tinyseek golden list [--only GLOB]");
  const cases = selectCases(values.only);
  const short = (text: string) => (text.length > 80 ? `${text.slice(0, 79)}…` : text); // --json has it whole
  const rows = cases.map((c) => ({ case: c.name, component: c.component, seed: c.seed, config: short(JSON.stringify(c.config)) }));
  printTable(io, rows, { json: values.json, value: cases.map((c) => ({ name: c.name, component: c.component, seed: c.seed, config: c.config })) });
  if (!values.json) io.out(`${cases.length} case(s)`);
  return 0;
}

/** Every case on every backend asked for, from the reference's outputs in memory (no files). */
async function support(args: string[], io: Io): Promise<number> {
  const { values, positionals: given } = parse(args, { backends: { type: "string" }, only: { type: "string" }, json: { type: "boolean" } });
  positionals(given, [], "tinyseek golden support [--backends LIST] [--only GLOB]");
  const names = (values.backends ?? BACKENDS.join(",")).split(",").map((b) => b.trim());
  for (const name of names) {
    if (!(BACKENDS as readonly string[]).includes(name)) throw new UsageError(`--backends: expected names from ${BACKENDS.join(", ")}, got ${JSON.stringify(name)}`);
  }
  const cases = selectCases(values.only);
  const rows: Row[] = cases.map((c) => ({ case: c.name }));
  const details: { backend: string; case?: string; outcome: string; message: string }[] = [];
  let failures = 0;
  for (const name of names) {
    let backend: Backend;
    try {
      backend = await loadBackend(name);
    } catch (error) {
      if (!(error instanceof TinyseekError)) throw error;
      rows.forEach((r) => (r[name] = "unavailable"));
      details.push({ backend: name, outcome: "unavailable", message: error.message });
      continue;
    }
    try {
      for (const [i, c] of cases.entries()) {
        const result = await checkSupport(c, backend);
        rows[i]![name] = result.outcome;
        if (result.outcome === "fail") failures++;
        if (result.outcome !== "ok") details.push({ backend: name, case: c.name, outcome: result.outcome, message: result.message });
      }
    } finally {
      await backend.dispose();
    }
  }
  printTable(io, rows, { json: values.json, value: { cases: rows, details } });
  if (!values.json) {
    for (const d of details) io.out(`\n${d.backend}${d.case ? ` on ${d.case}` : ""}: ${d.outcome}\n${d.message}`);
    io.out(`\n${cases.length} case(s) × ${names.length} backend(s), ${failures} failure(s)`);
  }
  return failures > 0 ? 1 : 0;
}
