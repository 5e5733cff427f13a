// Comparing an output against its reference, with a failure message modelled on PyTorch's assert_close: how many
// elements mismatch of how many, the worst absolute and relative error with its multi-dimensional index, a few
// values side by side, and where NaN or Inf appeared. Float outputs: |out - ref| <= atol + rtol·|ref| per element
// and NMSE = ||out - ref||² / ||ref||² <= nmse. Integer and boolean outputs, and exact tolerances: identical.
// NaN and Inf pass only where the reference has the same value at the same place.

/** Per output: |out - ref| <= atol + rtol·|ref| element-wise, and ||out - ref||² / ||ref||² <= nmse. */
export interface Tolerance {
  rtol: number;
  atol: number;
  nmse: number;
  /** Integer and boolean outputs match exactly unless near-tie handling is declared by the case. */
  exact?: boolean;
}

export type CompareData = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface ComparedTensor {
  readonly shape: readonly number[];
  readonly data: CompareData;
}

export interface Comparison {
  readonly name: string;
  readonly pass: boolean;
  readonly elements: number;
  readonly mismatches: number;
  readonly maxAbsError: number;
  /** Over elements whose reference is nonzero (where it is zero, the absolute error is the measure). */
  readonly maxRelError: number;
  /** ||out - ref|| / ||ref|| over finite elements (sqrt of the NMSE). */
  readonly normalisedError: number;
  readonly nmse: number;
  readonly tolerance: Tolerance;
  /** Empty when the comparison passes; the assert_close-style report otherwise. */
  readonly message: string;
}

/** Bit-exact: what the reference must meet against itself. */
export const EXACT: Tolerance = { rtol: 0, atol: 0, nmse: 0, exact: true };

const isFloat = (d: CompareData) => d instanceof Float32Array || d instanceof Float64Array;

/** Multi-dimensional index of flat position i in a row-major shape: "[1, 4, 2]". */
export function unravel(i: number, shape: readonly number[]): string {
  const index: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = shape[d]!;
    index.unshift(size === 0 ? 0 : i % size);
    i = size === 0 ? 0 : Math.floor(i / size);
  }
  return `[${index.join(", ")}]`;
}

const fmt = (v: number) => (Number.isInteger(v) && Math.abs(v) < 1e9 ? String(v) : v.toPrecision(6));
const sci = (v: number) => (v === 0 ? "0" : Number.isFinite(v) ? v.toExponential(2) : String(v));

/** The comparison of an output the backend did not produce at all. */
export function missingOutput(name: string, ref: ComparedTensor, tolerance: Tolerance): Comparison {
  const n = ref.data.length;
  return { name, tolerance, elements: n, pass: false, mismatches: n, maxAbsError: NaN, maxRelError: NaN, normalisedError: NaN, nmse: NaN, message: `${name}: missing from the backend's outputs` };
}

export function compareTensors(name: string, ref: ComparedTensor, out: ComparedTensor, tolerance: Tolerance): Comparison {
  const base = { name, tolerance, elements: ref.data.length };
  const refusal = (message: string): Comparison => ({
    ...base, pass: false, mismatches: ref.data.length, maxAbsError: NaN, maxRelError: NaN, normalisedError: NaN, nmse: NaN, message,
  });
  if (ref.shape.length !== out.shape.length || ref.shape.some((d, i) => d !== out.shape[i])) {
    return refusal(`${name}: shape [${out.shape.join(", ")}] differs from the reference's [${ref.shape.join(", ")}]`);
  }
  if (out.data.length !== ref.data.length) return refusal(`${name}: ${out.data.length} values, the reference has ${ref.data.length}`);
  if (isFloat(ref.data) !== isFloat(out.data)) {
    return refusal(`${name}: ${isFloat(out.data) ? "float" : "integer"} output where the reference is ${isFloat(ref.data) ? "float" : "integer"}`);
  }
  const exact = tolerance.exact === true || !isFloat(ref.data);
  const { rtol, atol } = exact ? EXACT : tolerance;

  let mismatches = 0;
  let maxAbs = 0, maxAbsAt = -1, maxRel = 0, maxRelAt = -1;
  let diffSquares = 0, refSquares = 0;
  const mismatchAt: number[] = [];
  const nonFiniteOut: number[] = [];
  let nonFiniteOutCount = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const r = ref.data[i]!;
    const o = out.data[i]!;
    if (!Number.isFinite(o)) {
      nonFiniteOutCount++;
      if (nonFiniteOut.length < 5) nonFiniteOut.push(i);
    }
    let ok: boolean;
    if (!Number.isFinite(r) || !Number.isFinite(o)) {
      ok = Object.is(r, o) || (Number.isNaN(r) && Number.isNaN(o)); // same NaN or same-signed Inf at the same place
    } else {
      const abs = Math.abs(o - r);
      const rel = r === 0 ? 0 : abs / Math.abs(r); // over nonzero references: at zero only atol means anything
      diffSquares += abs * abs;
      refSquares += r * r;
      if (abs > maxAbs) [maxAbs, maxAbsAt] = [abs, i];
      if (rel > maxRel) [maxRel, maxRelAt] = [rel, i];
      ok = exact ? Object.is(o, r) : abs <= atol + rtol * Math.abs(r);
    }
    if (!ok) {
      mismatches++;
      if (mismatchAt.length < 5) mismatchAt.push(i);
    }
  }
  const nmse = refSquares === 0 ? (diffSquares === 0 ? 0 : Infinity) : diffSquares / refSquares;
  const nmseOk = exact || nmse <= tolerance.nmse;
  const pass = mismatches === 0 && nmseOk;
  const result = {
    ...base, pass, mismatches, maxAbsError: maxAbs, maxRelError: maxRel, normalisedError: Math.sqrt(nmse), nmse, message: "",
  };
  if (pass) return result;

  const n = ref.data.length;
  const rule = exact ? "exact equality" : `|out - ref| <= ${atol} + ${rtol}·|ref|`;
  const lines = [`${name}: ${mismatches} of ${n} elements mismatch (${((100 * mismatches) / Math.max(n, 1)).toPrecision(3)}%) under ${rule}`];
  const pair = (i: number) => `out ${fmt(out.data[i]!)} ref ${fmt(ref.data[i]!)}`;
  if (maxAbsAt >= 0) lines.push(`  worst absolute error ${sci(maxAbs)} at ${unravel(maxAbsAt, ref.shape)} (${pair(maxAbsAt)})`);
  if (maxRelAt >= 0) lines.push(`  worst relative error ${sci(maxRel)} at ${unravel(maxRelAt, ref.shape)} (${pair(maxRelAt)})`);
  if (!exact) {
    lines.push(`  normalised error ${sci(Math.sqrt(nmse))} (NMSE ${sci(nmse)}, allowed ${sci(tolerance.nmse)}${nmseOk ? "" : ": too large"})`);
  }
  if (mismatchAt.length > 0) lines.push(`  first mismatches: ${mismatchAt.map((i) => `${unravel(i, ref.shape)} ${pair(i)}`).join("; ")}`);
  if (nonFiniteOutCount > 0) {
    lines.push(`  NaN/Inf in output: ${nonFiniteOutCount} element(s), first at ${nonFiniteOut.map((i) => `${unravel(i, ref.shape)} ${pair(i)}`).join("; ")}`);
  }
  return { ...result, message: lines.join("\n") };
}

