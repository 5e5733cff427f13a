// A tensor is a shape and a row-major Float32Array: `{ shape: [B, T, D], data }`. Nothing more, on purpose:
// the reference computes in float64 inside each op and rounds once when it stores into `data`.

import { argError, TinyseekError } from "./errors.ts";

export interface Tensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** The number of elements a shape holds. */
export function numel(shape: readonly number[]): number {
  // An index loop: shapes come as arrays of several element kinds, and for-of over them allocated an iterator result
  // per dimension (a fifth of a decode step's garbage, this one loop).
  let n = 1;
  for (let i = 0; i < shape.length; i++) n *= shape[i]!;
  return n;
}

export function tensor(shape: readonly number[], data?: ArrayLike<number>): Tensor {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw argError("shape", "non-negative integer dimensions", [...shape]);
  }
  const n = numel(shape);
  if (data !== undefined && data.length !== n) {
    throw new TinyseekError(`data: expected ${n} values for shape [${shape.join(", ")}], got ${data.length}`);
  }
  return { shape: [...shape], data: data === undefined ? new Float32Array(n) : Float32Array.from(data) };
}

export const zeros = (shape: readonly number[]): Tensor => tensor(shape);

/** A tensor with the same data and a new shape of the same size. */
export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  if (numel(shape) !== t.data.length) {
    throw argError("shape", `a shape of ${t.data.length} elements`, [...shape]);
  }
  return { shape: [...shape], data: t.data };
}

export const shapeString = (shape: readonly number[]): string => `[${shape.join(", ")}]`;

/**
 * Checks `t` against a pattern such as `["B", "T", 64]`: numbers must match, equal names must agree with each
 * other and with `known`. Returns the named sizes, so callers read `const { B, T, D } = expectShape(...)`.
 */
export function expectShape(
  argument: string,
  t: Tensor | undefined,
  pattern: readonly (string | number)[],
  known: Record<string, number> = {},
): Record<string, number> {
  // Called on every kernel call: plain loops, and the error messages built only when thrown.
  if (t === undefined || t === null || !Array.isArray(t.shape) || !(t.data instanceof Float32Array)) {
    throw argError(argument, `a tensor of shape [${pattern.join(", ")}]`, t === undefined ? "undefined" : typeof t);
  }
  if (t.data.length !== numel(t.shape)) {
    throw argError(argument, `${numel(t.shape)} values for its shape ${shapeString(t.shape)}`, t.data.length);
  }
  const sizes: Record<string, number> = { ...known };
  if (t.shape.length !== pattern.length) throw argError(argument, describePattern(pattern, sizes), shapeString(t.shape));
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const d = t.shape[i]!;
    if (typeof p === "number" ? d !== p : sizes[p] !== undefined && sizes[p] !== d) {
      throw argError(argument, describePattern(pattern, sizes), shapeString(t.shape));
    }
    if (typeof p === "string") sizes[p] = d;
  }
  return sizes;
}

function describePattern(pattern: readonly (string | number)[], sizes: Record<string, number>): string {
  const dims = pattern.map((p) => (typeof p === "string" && sizes[p] !== undefined ? `${p}=${sizes[p]}` : String(p)));
  return `shape [${dims.join(", ")}]`;
}

/** Element-wise sum of two tensors of one shape (the residual connection). */
export function add(a: Tensor, b: Tensor): Tensor {
  expectShape("b", b, a.shape.map((_, i) => `d${i}`), Object.fromEntries(a.shape.map((d, i) => [`d${i}`, d])));
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i]! + b.data[i]!;
  return { shape: [...a.shape], data: out };
}

/** Rows `[start, end)` of the first axis, as a copy. */
export function sliceRows(t: Tensor, start: number, end: number): Tensor {
  const rows = t.shape[0]!;
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= rows)) {
    throw argError("rows", `0 <= start <= end <= ${rows}`, `[${start}, ${end})`);
  }
  const row = rows === 0 ? 0 : t.data.length / rows;
  return { shape: [end - start, ...t.shape.slice(1)], data: t.data.slice(start * row, end * row) };
}

/** Stacks tensors of one shape along a new or the first axis: concatRows([a [2, D], b [3, D]]) is [5, D]. */
export function concatRows(parts: readonly Tensor[]): Tensor {
  if (parts.length === 0) throw argError("parts", "at least one tensor", 0);
  const rest = parts[0]!.shape.slice(1);
  let rows = 0;
  parts.forEach((p, i) => {
    expectShape(`parts[${i}]`, p, ["rows", ...rest]);
    rows += p.shape[0]!;
  });
  const data = new Float32Array(rows * numel(rest));
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.length;
  }
  return { shape: [rows, ...rest], data };
}

/** Data that its maker promises never to change in place (weights derived once, such as MLA's absorbed W_uk): a
 *  backend may pack it once and keep it resident. A plain activation is never marked, so it is never cached. */
const constants = new WeakSet<Float32Array>();

export function markConstant<T extends Tensor>(t: T): T {
  constants.add(t.data);
  return t;
}

export const isConstant = (data: Float32Array): boolean => constants.has(data);
