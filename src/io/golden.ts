// Golden files (spec/golden.md): one GoldenCase run on the reference, stored as safetensors with tensors
// `input.<name>`, `param.<name>`, `output.<name>` and string metadata (component, case, config, seed, generator,
// format, tolerance). `checkGolden` recomputes a file's outputs on a backend from the file's own inputs and params
// and compares every output the case defines, under the case's registered tolerance (a file may only tighten it);
// `compareGolden` compares a golden file with another file's outputs (a kernel written elsewhere). A file is read
// as untrusted: tensor names must be safe keys, the seed decimal, each stated tolerance finite and at most 1.

import { NotSupportedError, referenceBackend, type Backend, type SyncTask } from "../backend.ts";
import { TinyseekError } from "../errors.ts";
import type { GoldenCase, GoldenTensor, TensorMap } from "../golden/case.ts";
import type { CaseTaskArgs } from "../golden/worker-task.ts";
import type { Tensor } from "../tensor.ts";
import { compareTensors, EXACT, missingOutput, type Comparison, type ComparedTensor, type Tolerance } from "./compare.ts";
import { comparable } from "./diff.ts";
import { excerpt, readSafetensors, readSafetensorsBytes, writeSafetensors, type SafeTensor, type Safetensors, type TensorToWrite } from "./safetensors.ts";

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

/**
 * A tensor's name: its kind, a dot, then dot-separated parts of letters, digits and "_" (the first not starting
 * with a digit). Parts that name what every JavaScript object inherits are refused, so that no name can reach
 * Object.prototype through a map of tensors.
 */
const TENSOR_NAME = /^(input|param|output)\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)$/;
const INHERITED = new Set(["__proto__", "constructor", "prototype"]);
const NAME_RULE = `input.*, param.* or output.* followed by parts of letters, digits and "_" joined by dots, none of them __proto__, constructor or prototype`;

/** A name for an error message: quoted, and cut short (a hostile file may hold a name of megabytes). */
const quoted = (name: string) => (name.length > 80 ? `${JSON.stringify(name.slice(0, 80))}…` : JSON.stringify(name));

/** The part of a tensor name after its kind when the name is safe to use as a key, else undefined. */
export function goldenTensorName(name: string): { kind: "input" | "param" | "output"; name: string } | undefined {
  const match = TENSOR_NAME.exec(name);
  if (!match || match[2]!.split(".").some((part) => INHERITED.has(part))) return undefined;
  return { kind: match[1] as "input" | "param" | "output", name: match[2]! };
}

/**
 * The loosest bound a file may state: rtol 1 or NMSE 1 already accept an output that is all error, so anything
 * looser (or non-finite) is not a tolerance but a way to pass every check.
 */
export const TOLERANCE_LIMIT = 1;

/** A tolerance as a file states it, checked: rtol, atol and nmse finite in [0, TOLERANCE_LIMIT], exact a boolean. */
function checkTolerance(value: unknown, where: string, fail: (m: string) => Error): Tolerance {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail(`${where}: expected {rtol, atol, nmse}, got ${excerpt(value)}`);
  const t = value as Record<string, unknown>;
  for (const key of ["rtol", "atol", "nmse"] as const) {
    const v = Object.hasOwn(t, key) ? t[key] : undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > TOLERANCE_LIMIT) {
      throw fail(`${where}: ${key} must be a finite number in [0, ${TOLERANCE_LIMIT}], got ${v === undefined ? "nothing" : excerpt(v)}`);
    }
  }
  const exact = Object.hasOwn(t, "exact") ? t.exact : undefined;
  if (exact !== undefined && typeof exact !== "boolean") throw fail(`${where}: exact must be true or false, got ${excerpt(exact)}`);
  return { rtol: t.rtol as number, atol: t.atol as number, nmse: t.nmse as number, ...(exact ? { exact: true } : {}) };
}

/** Reads a golden file; `source` (its path) names it in errors. */
export function decodeGolden(bytes: Uint8Array, source = "golden file"): GoldenFile {
  const file = readSafetensors(bytes);
  const meta = file.metadata;
  const fail = (message: string) => new GoldenError(`${source}: ${message}`);
  const has = (key: string) => Object.hasOwn(meta, key);
  if (!has("format")) throw fail(`no "format" in its metadata: not a tinyseek golden file`);
  if (meta.format !== GOLDEN_FORMAT) {
    throw fail(`golden format version ${meta.format!.slice(0, 20)} (${has("generator") ? meta.generator!.slice(0, 80) : "unknown generator"}), this tinyseek reads version ${GOLDEN_FORMAT}: regenerate it with \`tinyseek golden write DIR\``);
  }
  for (const key of ["component", "case", "config", "seed", "generator", "tolerance"]) {
    if (!has(key)) throw fail(`metadata has no "${key}"`);
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
  // Decimal only: Number() would also read "0x12c" as 300, "1e3" as 1000 and " 7" as 7.
  if (!/^-?(0|[1-9][0-9]*)$/.test(meta.seed!) || !Number.isSafeInteger(Number(meta.seed))) {
    throw fail(`metadata "seed": expected a decimal integer, got ${quoted(meta.seed!)}`);
  }
  const seed = Number(meta.seed);
  // Maps without a prototype: a tensor's name is a key here and must never reach Object.prototype.
  const maps = { input: Object.create(null) as TensorMap, param: Object.create(null) as TensorMap, output: Object.create(null) as TensorMap };
  for (const [name, t] of file.tensors) {
    const parsed = goldenTensorName(name);
    if (!parsed) throw fail(`tensor ${quoted(name)} is not named input.*, param.* or output.*: expected ${NAME_RULE}`);
    if (parsed.kind === "param" && !(t.data instanceof Float32Array)) throw fail(`tensor ${quoted(name)}: params must be F32, got ${t.dtype}`);
    maps[parsed.kind][parsed.name] = goldenTensor(name, t, fail);
  }
  const stated = json("tolerance");
  const tolerance: Record<string, Tolerance> = Object.create(null);
  for (const name of Object.keys(maps.output)) {
    const where = `metadata "tolerance" for output ${JSON.stringify(name)}`;
    if (!Object.hasOwn(stated, name)) throw fail(`${where}: missing`);
    tolerance[name] = checkTolerance(stated[name], where, fail);
  }
  return {
    name: meta.case!, component: meta.component!, config: json("config"), seed, generator: meta.generator!,
    format: meta.format!, tolerance, inputs: maps.input, params: maps.param as Record<string, Tensor>, outputs: maps.output,
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
  /** Which tolerance the comparisons used, and where it came from (absent when nothing was compared). */
  readonly toleranceSource?: string;
  /** Outputs defined but left out on request (`golden compare --outputs`), as `output.<name>`. */
  readonly skipped?: readonly string[];
}

const failed = (file: string, message: string, comparisons: Comparison[] = []): CheckResult => ({ file, outcome: "fail", comparisons, message });

function verdict(file: string, comparisons: Comparison[], toleranceSource: string, skipped: string[] = []): CheckResult {
  const bad = comparisons.filter((c) => !c.pass);
  const extra = { toleranceSource, ...(skipped.length > 0 ? { skipped } : {}) };
  if (comparisons.length === 0) return { ...failed(file, "no output was compared"), ...extra };
  return bad.length === 0 ? { file, outcome: "ok", comparisons, message: "", ...extra } : { ...failed(file, bad.map((c) => c.message).join("\n"), comparisons), ...extra };
}

export interface CheckOptions {
  /** Demand identical outputs (default: when the backend is the reference itself, which must reproduce its files bit for bit). */
  exact?: boolean;
}

/** Per bound the smaller of two tolerances, exact if either is: a file may tighten its case's bar, never loosen it. */
export function stricter(bar: Tolerance, stated: Tolerance | undefined): Tolerance {
  if (!stated) return bar;
  const exact = bar.exact === true || stated.exact === true;
  return { rtol: Math.min(bar.rtol, stated.rtol), atol: Math.min(bar.atol, stated.atol), nmse: Math.min(bar.nmse, stated.nmse), ...(exact ? { exact: true } : {}) };
}

const EXACT_SOURCE = "exact equality: the reference reproduces its own files bit for bit";
const caseSource = (c: GoldenCase) => `case ${JSON.stringify(c.name)}'s registered tolerance (a file may tighten it, never loosen it)`;

/** The suite's case for a file, or why the file cannot be checked against it. */
function caseOf(file: GoldenFile, suite: readonly GoldenCase[]): { case: GoldenCase } | { problem: string } | undefined {
  const c = suite.find((s) => s.name === file.name);
  if (!c) return undefined;
  if (file.component !== c.component) {
    return { problem: `component ${quoted(file.component)} is not case ${JSON.stringify(c.name)}'s ${JSON.stringify(c.component)}` };
  }
  if (JSON.stringify(c.config) !== JSON.stringify(file.config) || c.seed !== file.seed) {
    return { problem: `case ${JSON.stringify(c.name)} has changed its config or seed since the file was written: regenerate it with \`tinyseek golden write DIR\`` };
  }
  return { case: c };
}

/** Recomputes a golden file's outputs on `backend` and compares every output the case defines with the file's. */
export async function checkGolden(
  file: GoldenFile, suite: readonly GoldenCase[], backend: Backend, options: CheckOptions = {}, source = file.name,
): Promise<CheckResult> {
  const found = caseOf(file, suite);
  if (!found) return failed(source, `no case named ${quoted(file.name)} in this tinyseek's suite (see \`tinyseek golden list\`)`);
  if ("problem" in found) return failed(source, found.problem);
  const c = found.case;
  let outputs: TensorMap;
  try {
    outputs = await runCase(c, backend, file.inputs, file.params);
  } catch (error) {
    if (error instanceof NotSupportedError) return { file: source, outcome: "not supported", comparisons: [], message: error.message };
    const e = error as Error;
    return failed(source, `${backend.name} threw ${e instanceof TinyseekError ? "" : `${e?.name ?? "an error"}: `}${e?.message ?? String(error)}`);
  }
  const exact = options.exact ?? backend === referenceBackend;
  // What the case defines is what it returned; a name only one side has fails on its own line below.
  const names = [...new Set([...Object.keys(file.outputs), ...Object.keys(outputs)])];
  const comparisons = names.map((name) => {
    const ref = file.outputs[name];
    const out = Object.hasOwn(outputs, name) ? outputs[name] : undefined;
    const tolerance = exact ? EXACT : stricter(toleranceFor(c, name, (ref ?? out)!), file.tolerance[name]);
    if (!ref) return absentFromFile(`output.${name}`, out!, tolerance, `case ${JSON.stringify(c.name)} defines it`);
    if (!out) return missingOutput(`output.${name}`, ref, tolerance);
    return compareTensors(`output.${name}`, ref, out, tolerance);
  });
  return verdict(source, comparisons, exact ? EXACT_SOURCE : caseSource(c));
}

/** An output that should be in the golden file and is not: a file stripped of its outputs proves nothing. */
function absentFromFile(name: string, expected: ComparedTensor, tolerance: Tolerance, why: string): Comparison {
  const n = expected.data.length;
  return {
    name, tolerance, elements: n, pass: false, mismatches: n, maxAbsError: NaN, maxRelError: NaN, normalisedError: NaN, nmse: NaN,
    message: `${name}: not in the golden file, although ${why}`,
  };
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

/** Reads and checks one file; every problem with the file itself becomes a failed result naming it. */
export async function checkGoldenFile(path: string, suite: readonly GoldenCase[], backend: Backend, options: CheckOptions = {}): Promise<CheckResult> {
  let file: GoldenFile;
  try {
    file = decodeGolden(await readSafetensorsBytes(path), path);
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

export interface CompareOptions extends CheckOptions {
  /** Compare only these outputs (names without `output.`); the others the case defines are reported as skipped. */
  outputs?: readonly string[];
  /** Where `a`'s case is looked up: what it defines and its registered tolerance (default: none, `a` alone). */
  suite?: readonly GoldenCase[];
}

/**
 * A golden file `a` against another file `b` holding the same outputs (written by a kernel elsewhere, e.g. with
 * Python): `b` needs only its `output.*` tensors, in any float or integer dtype; inputs it repeats must equal
 * `a`'s bit for bit, so both sides computed from the same data. When `a`'s case is in `options.suite`, the case
 * decides which outputs exist (it runs once on the reference from `a`'s inputs and params; `a` must hold all of
 * them) and its registered tolerance is the bar (`a`'s own may only tighten it). Otherwise `a`'s outputs and
 * tolerances are taken as they stand, and the result says so.
 */
export async function compareGolden(a: GoldenFile, b: Safetensors, options: CompareOptions = {}, source = a.name): Promise<CheckResult> {
  const otherCase = Object.hasOwn(b.metadata, "case") ? b.metadata.case : undefined;
  if (otherCase !== undefined && otherCase !== a.name) return failed(source, `the files are of different cases: ${quoted(a.name)} and ${quoted(otherCase)}`);
  for (const [name, t] of Object.entries(a.inputs)) {
    const other = b.tensors.get(`input.${name}`);
    if (!other) continue;
    const same = compareTensors(`input.${name}`, t, comparable(other), EXACT);
    if (!same.pass) return failed(source, `input.${name} differs between the two files, so their outputs are not comparable:\n${same.message}`);
  }
  const outputs = new Map<string, ComparedTensor>();
  for (const [name, t] of b.tensors) {
    if (!name.startsWith("output.")) continue;
    const parsed = goldenTensorName(name);
    if (!parsed) return failed(source, `the second file's tensor ${quoted(name)} is not a valid output name: expected ${NAME_RULE}`);
    outputs.set(parsed.name, comparable(t));
  }

  // Which outputs exist, and whose tolerance is the bar.
  const found = options.suite ? caseOf(a, options.suite) : undefined;
  if (found && "problem" in found) return failed(source, found.problem);
  const c = found?.case;
  let defined: string[];
  let bar: (name: string) => Tolerance;
  let toleranceSource: string;
  if (c) {
    try {
      defined = Object.keys(await c.run(referenceBackend, copyMap(a.inputs), copyMap(a.params) as Record<string, Tensor>));
    } catch (error) {
      return failed(source, `case ${JSON.stringify(c.name)} cannot run on the golden file's inputs and params: ${(error as Error)?.message ?? String(error)}`);
    }
    const strippedOf = defined.filter((name) => !a.outputs[name]);
    if (strippedOf.length > 0) {
      return failed(source, `the golden file has no ${strippedOf.map((n) => `output.${n}`).join(", ")}, which case ${JSON.stringify(c.name)} defines: a golden file holds every output of its case`);
    }
    const foreign = Object.keys(a.outputs).filter((name) => !defined.includes(name));
    if (foreign.length > 0) return failed(source, `the golden file has ${foreign.map((n) => `output.${n}`).join(", ")}, which case ${JSON.stringify(c.name)} does not define`);
    bar = (name) => stricter(toleranceFor(c, name, a.outputs[name]!), a.tolerance[name]);
    toleranceSource = caseSource(c);
  } else {
    defined = Object.keys(a.outputs);
    if (defined.length === 0) return failed(source, "the golden file holds no output.* tensors: there is nothing to compare against");
    bar = (name) => a.tolerance[name]!;
    toleranceSource = options.suite
      ? `the golden file's own metadata (its case ${quoted(a.name)} is not in this tinyseek's suite)`
      : "the golden file's own metadata";
  }
  const unknown = [...outputs.keys()].filter((name) => !defined.includes(name));
  if (unknown.length > 0) {
    return failed(source, `the second file has ${unknown.map((n) => `output.${n}`).join(", ")}, which the golden file has no reference for (its outputs: ${defined.join(", ")})`);
  }

  const chosen = options.outputs ?? defined;
  const notDefined = chosen.filter((name) => !defined.includes(name));
  if (notDefined.length > 0) return failed(source, `--outputs: expected names from ${defined.join(", ")}, got ${notDefined.map((n) => JSON.stringify(n)).join(", ")}`);
  const missing = chosen.filter((name) => !outputs.has(name));
  if (missing.length > 0) {
    const hint = options.outputs ? "" : ` (compare some outputs only with --outputs ${[...outputs.keys()].join(",") || "NAME"})`;
    return failed(source, `the second file has no ${missing.map((m) => `output.${m}`).join(", ")}${hint}`);
  }
  const exact = options.exact ?? false;
  const comparisons = chosen.map((name) => compareTensors(`output.${name}`, a.outputs[name]!, outputs.get(name)!, exact ? EXACT : bar(name)));
  const skipped = defined.filter((name) => !chosen.includes(name)).map((n) => `output.${n}`);
  return verdict(source, comparisons, exact ? "exact equality (--exact)" : toleranceSource, skipped);
}
