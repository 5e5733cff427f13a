// Golden files (spec/golden.md): one GoldenCase run on the reference, stored as safetensors with tensors
// `input.<name>`, `param.<name>`, `output.<name>` and string metadata (component, case, config, seed, generator,
// format, tolerance). `checkGolden` recomputes a file's outputs on a backend from the file's own inputs and params;
// `compareGolden` compares a golden file with another file's outputs (a kernel written elsewhere).

import { NotSupportedError, referenceBackend, type Backend, type SyncTask } from "../backend.ts";
import { TinyseekError } from "../errors.ts";
import { type GoldenCase, type GoldenTensor, type TensorMap } from "../golden/case.ts";
import { type CaseTaskArgs } from "../golden/worker-task.ts";
import { type Tensor } from "../tensor.ts";
import { compareTensors, EXACT, missingOutput, type Comparison, type ComparedTensor, type Tolerance } from "./compare.ts";
import { comparable } from "./diff.ts";
import { readBytes, readSafetensors, writeSafetensors, type SafeTensor, type Safetensors, type TensorToWrite } from "./safetensors.ts";

export class GoldenError extends TinyseekError {
  override name = "GoldenError";
}

/** Bumped whenever the file layout or metadata changes meaning; files of another version are refused. */
export const GOLDEN_FORMAT = "1";

/**
 * A float32 backend against the float64-accumulating reference, unless a case declares its own. Measured
 * (spec/golden.md): float32 sums of 16 to 4096 O(1) terms reach NMSE 5e-15 to 3e-13 and absolute errors up to
 * 2.3e-6, so NMSE 1e-10 leaves 300× or more for honest rounding while one element off by 1e-3 fails; atol covers
 * outputs that cancel to near zero, where relative error means nothing.
 */
export const DEFAULT_TOLERANCE: Tolerance = { rtol: 1e-4, atol: 1e-5, nmse: 1e-10 };

/** The version golden files name as their generator (test/golden.test.ts keeps it equal to package.json's). */
export const TINYSEEK_VERSION = "0.1.0";
export const tinyseekVersion = (): string => TINYSEEK_VERSION;

/** Everything a golden file holds, decoded. */
export interface GoldenFile {
  readonly name: string;
  readonly component: string;
  readonly config: Record<string, unknown>;
  readonly seed: number;
  readonly generator: string;
  readonly format: string;
  readonly tolerance: Record<string, Tolerance>;
  readonly inputs: TensorMap;
  readonly params: Record<string, Tensor>;
  readonly outputs: TensorMap;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The tolerance an output gets: the case's own, exact for integers and booleans, else the float32 default. */
export function toleranceFor(c: GoldenCase, output: string, t: GoldenTensor): Tolerance {
  return c.tolerance?.[output] ?? (t.data instanceof Float32Array ? DEFAULT_TOLERANCE : EXACT);
}

/** Runs a case on the reference (or a given backend) and gathers what its golden file stores. */
export async function runGoldenCase(c: GoldenCase, backend: Backend = referenceBackend): Promise<GoldenFile> {
  if (!NAME.test(c.name)) throw new GoldenError(`case name: expected letters, digits, ".", "_" or "-", got ${JSON.stringify(c.name)}`);
  const { inputs, params } = c.build();
  const outputs = await c.run(backend, copyMap(inputs), copyMap(params) as Record<string, Tensor>);
  const tolerance: Record<string, Tolerance> = {};
  for (const [name, t] of Object.entries(outputs)) tolerance[name] = toleranceFor(c, name, t);
  return {
    name: c.name, component: c.component, config: c.config, seed: c.seed,
    generator: `tinyseek ${tinyseekVersion()} reference`, format: GOLDEN_FORMAT, tolerance, inputs, params, outputs,
  };
}

/** The case's inputs are handed over as copies, so a backend that writes into them cannot change the file. */
function copyMap(map: TensorMap): TensorMap {
  return Object.fromEntries(Object.entries(map).map(([k, t]) => [k, { shape: [...t.shape], data: t.data.slice() }]));
}

function dtypeOf(where: string, t: GoldenTensor): "F32" | "I32" | "U8" {
  if (t.data instanceof Float32Array) return "F32";
  if (t.data instanceof Int32Array) return "I32";
  if (t.data instanceof Uint8Array) return "U8";
  throw new GoldenError(`${where}: expected Float32Array, Int32Array or Uint8Array data, got ${Object.prototype.toString.call(t.data)}`);
}

export function encodeGolden(file: GoldenFile): Uint8Array {
  const tensors = new Map<string, TensorToWrite>();
  const add = (prefix: string, map: TensorMap) => {
    for (const [name, t] of Object.entries(map)) {
      tensors.set(`${prefix}.${name}`, { dtype: dtypeOf(`${prefix}.${name}`, t), shape: t.shape, data: t.data });
    }
  };
  add("input", file.inputs);
  add("param", file.params);
  add("output", file.outputs);
  return writeSafetensors(tensors, {
    component: file.component,
    case: file.name,
    config: JSON.stringify(file.config),
    seed: String(file.seed),
    generator: file.generator,
    format: file.format,
    tolerance: JSON.stringify(file.tolerance),
  });
}

/** Reads a golden file; `source` (its path) names it in errors. */
export function decodeGolden(bytes: Uint8Array, source = "golden file"): GoldenFile {
  const file = readSafetensors(bytes);
  const meta = file.metadata;
  const fail = (message: string) => new GoldenError(`${source}: ${message}`);
  if (meta.format === undefined) throw fail(`no "format" in its metadata: not a tinyseek golden file`);
  if (meta.format !== GOLDEN_FORMAT) {
    throw fail(`golden format version ${meta.format} (${meta.generator ?? "unknown generator"}), this tinyseek reads version ${GOLDEN_FORMAT}: regenerate it with \`tinyseek golden write DIR\``);
  }
  for (const key of ["component", "case", "config", "seed", "generator", "tolerance"]) {
    if (meta[key] === undefined) throw fail(`metadata has no "${key}"`);
  }
  const json = (key: string): Record<string, unknown> => {
    let value: unknown;
    try {
      value = JSON.parse(meta[key]!);
    } catch {
      throw fail(`metadata "${key}" is not valid JSON`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail(`metadata "${key}" must be a JSON object`);
    return value as Record<string, unknown>;
  };
  const seed = Number(meta.seed);
  if (!Number.isInteger(seed)) throw fail(`metadata "seed" must be an integer, got ${JSON.stringify(meta.seed)}`);
  const maps: Record<string, TensorMap> = { input: {}, param: {}, output: {} };
  for (const [name, t] of file.tensors) {
    const dot = name.indexOf(".");
    const map = maps[name.slice(0, dot)];
    if (dot < 0 || !map) throw fail(`tensor ${JSON.stringify(name)} is not named input.*, param.* or output.*`);
    map[name.slice(dot + 1)] = goldenTensor(name, t, fail);
    if (name.startsWith("param.") && !(t.data instanceof Float32Array)) throw fail(`${name}: params must be F32, got ${t.dtype}`);
  }
  const tolerance = json("tolerance") as Record<string, Tolerance>;
  for (const name of Object.keys(maps.output!)) {
    const t = tolerance[name];
    const ok = t && typeof t === "object" && (t.exact === true || (["rtol", "atol", "nmse"] as const).every((k) => typeof t[k] === "number" && t[k] >= 0));
    if (!ok) throw fail(`metadata "tolerance" has no valid entry for output ${JSON.stringify(name)}`);
  }
  return {
    name: meta.case!, component: meta.component!, config: json("config"), seed, generator: meta.generator!,
    format: meta.format, tolerance, inputs: maps.input!, params: maps.param as Record<string, Tensor>, outputs: maps.output!,
  };
}

function goldenTensor(name: string, t: SafeTensor, fail: (m: string) => Error): GoldenTensor {
  if (t.dtype === "F32" || t.dtype === "I32" || t.dtype === "U8" || t.dtype === "BOOL") {
    return { shape: t.shape, data: t.data as Float32Array | Int32Array | Uint8Array };
  }
  throw fail(`${name}: golden tensors are F32, I32, U8 or BOOL, got ${t.dtype}`);
}

/** Writes `<dir>/<case name>.safetensors`; returns its path and size. */
export async function writeGoldenCase(dir: string, c: GoldenCase): Promise<{ path: string; bytes: number }> {
  const bytes = encodeGolden(await runGoldenCase(c));
  const { writeFile } = await import("node:fs/promises"); // loaded on use: the rest runs in a browser too
  await makeDirectory(dir);
  const path = `${dir.replace(/\/+$/, "")}/${c.name}.safetensors`;
  await writeFile(path, bytes);
  return { path, bytes: bytes.length };
}

/**
 * `mkdir -p`, one level at a time. Node's own recursive mkdir spins forever where mkdir answers ENOENT for a
 * parent that exists (inside /proc, for one); here that error reaches the caller with the path it names.
 */
async function makeDirectory(dir: string): Promise<void> {
  const { mkdir, stat } = await import("node:fs/promises");
  const { dirname } = await import("node:path");
  try {
    if ((await stat(dir)).isDirectory()) return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && dirname(dir) !== dir) await makeDirectory(dirname(dir));
  }
  await mkdir(dir); // EEXIST for a file in the way, ENOENT or EACCES where the system refuses: all name `dir`
}

export type Outcome = "ok" | "fail" | "not supported";

export interface CheckResult {
  /** The file (or case) checked. */
  readonly file: string;
  readonly outcome: Outcome;
  readonly comparisons: readonly Comparison[];
  /** Why it failed or is not supported; empty when ok. */
  readonly message: string;
}

const failed = (file: string, message: string, comparisons: Comparison[] = []): CheckResult => ({ file, outcome: "fail", comparisons, message });

function verdict(file: string, comparisons: Comparison[]): CheckResult {
  const bad = comparisons.filter((c) => !c.pass);
  return bad.length === 0 ? { file, outcome: "ok", comparisons, message: "" } : failed(file, bad.map((c) => c.message).join("\n"), comparisons);
}

export interface CheckOptions {
  /** Demand identical outputs (default: when the backend is the reference itself, which must reproduce its files bit for bit). */
  exact?: boolean;
}

/** Recomputes a golden file's outputs on `backend` and compares them with the file's. */
export async function checkGolden(
  file: GoldenFile, suite: readonly GoldenCase[], backend: Backend, options: CheckOptions = {}, source = file.name,
): Promise<CheckResult> {
  const c = suite.find((s) => s.name === file.name);
  if (!c) return failed(source, `no case named ${JSON.stringify(file.name)} in this tinyseek's suite (see \`tinyseek golden list\`)`);
  if (JSON.stringify(c.config) !== JSON.stringify(file.config) || c.seed !== file.seed) {
    return failed(source, `case ${JSON.stringify(c.name)} has changed its config or seed since the file was written: regenerate it with \`tinyseek golden write DIR\``);
  }
  let outputs: TensorMap;
  try {
    outputs = await runCase(c, backend, file.inputs, file.params);
  } catch (error) {
    if (error instanceof NotSupportedError) return { file: source, outcome: "not supported", comparisons: [], message: error.message };
    const e = error as Error;
    return failed(source, `${backend.name} threw ${e instanceof TinyseekError ? "" : `${e?.name ?? "an error"}: `}${e?.message ?? String(error)}`);
  }
  const exact = options.exact ?? backend === referenceBackend;
  return verdict(source, compareOutputs(file, outputs, exact));
}

/** Where a backend runs synchronous code in a worker (webgpu): a case that needs synchronous kernels, by name. */
const CASE_TASK: SyncTask = { module: new URL("../golden/worker-task.ts", import.meta.url).href, export: "runCaseTask" };

/**
 * The case's outputs on `backend`. A case that throws NotSupportedError because the backend has no synchronous
 * kernels runs again where the backend offers them in a worker (runSynchronously): the case is found there by
 * name, over the backend's own kernels, and what it throws there (NotSupportedError included) is the outcome.
 */
async function runCase(c: GoldenCase, backend: Backend, inputs: TensorMap, params: Record<string, Tensor>): Promise<TensorMap> {
  try {
    return await c.run(backend, copyMap(inputs), copyMap(params) as Record<string, Tensor>);
  } catch (error) {
    if (!(error instanceof NotSupportedError) || backend.kernels || !backend.runSynchronously) throw error;
  }
  const { name, description } = backend;
  return backend.runSynchronously<TensorMap>(CASE_TASK, { backend: { name, description }, case: c.name, inputs, params } satisfies CaseTaskArgs);
}

function compareOutputs(file: GoldenFile, outputs: Record<string, ComparedTensor>, exact: boolean): Comparison[] {
  return Object.entries(file.outputs).map(([name, ref]) => {
    const out = outputs[name];
    const tolerance = exact ? EXACT : file.tolerance[name]!;
    if (!out) return missingOutput(`output.${name}`, ref, tolerance);
    return compareTensors(`output.${name}`, ref, out, tolerance);
  });
}

/** Reads and checks one file; every problem with the file itself becomes a failed result naming it. */
export async function checkGoldenFile(path: string, suite: readonly GoldenCase[], backend: Backend, options: CheckOptions = {}): Promise<CheckResult> {
  let file: GoldenFile;
  try {
    file = decodeGolden(await readBytes(path), path);
  } catch (error) {
    if (error instanceof TinyseekError) return failed(path, error.message);
    throw error;
  }
  return checkGolden(file, suite, backend, options, path);
}

/** The *.safetensors files a path names: itself if it is a file, else those in the directory, sorted. */
export async function goldenFilesIn(path: string): Promise<string[]> {
  const { readdir, stat } = await import("node:fs/promises");
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch {
    throw new TinyseekError(`${path}: no such file or directory`);
  }
  if (!isDir) return [path];
  const files = (await readdir(path)).filter((f) => f.endsWith(".safetensors")).sort();
  if (files.length === 0) throw new TinyseekError(`${path}: no .safetensors files (write some with tinyseek golden write ${path})`);
  return files.map((f) => `${path.replace(/\/+$/, "")}/${f}`);
}

/** Whether `backend` runs case `c` within its tolerance, without any file: the reference's outputs in memory. */
export async function checkSupport(c: GoldenCase, backend: Backend): Promise<CheckResult> {
  return checkGolden(await runGoldenCase(c), [c], backend);
}

/**
 * A golden file `a` against another file `b` holding the same outputs (written by a kernel elsewhere, e.g. with
 * Python's safetensors): `b` needs only its `output.*` tensors, in any float or integer dtype; inputs it repeats
 * must equal `a`'s bit for bit, so both sides computed from the same data.
 */
export function compareGolden(a: GoldenFile, b: Safetensors, options: CheckOptions = {}, source = a.name): CheckResult {
  const otherCase = b.metadata.case;
  if (otherCase !== undefined && otherCase !== a.name) return failed(source, `the files are of different cases: ${JSON.stringify(a.name)} and ${JSON.stringify(otherCase)}`);
  for (const [name, t] of Object.entries(a.inputs)) {
    const other = b.tensors.get(`input.${name}`);
    if (!other) continue;
    const same = compareTensors(`input.${name}`, t, comparable(other), EXACT);
    if (!same.pass) return failed(source, `input.${name} differs between the two files, so their outputs are not comparable:\n${same.message}`);
  }
  const outputs: Record<string, ComparedTensor> = {};
  for (const [name, t] of b.tensors) if (name.startsWith("output.")) outputs[name.slice(7)] = comparable(t);
  const missing = Object.keys(a.outputs).filter((name) => !outputs[name]);
  if (missing.length > 0) return failed(source, `the second file has no ${missing.map((m) => `output.${m}`).join(", ")}`);
  return verdict(source, compareOutputs(a, outputs, options.exact ?? false));
}
