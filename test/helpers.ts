// Small helpers the unit tests share.
import fc from "fast-check";
import { expect } from "vitest";
import type { Io } from "../src/cli/io.ts";
import { main } from "../src/cli/main.ts";
import type { DeviceKernels, Value } from "../src/device/kernels.ts";
import { TinyseekError } from "../src/errors.ts";
import { SafetensorsError } from "../src/io/safetensors.ts";
import { argmax } from "../src/ops.ts";
import type { Tensor } from "../src/tensor.ts";

/** The message of the TinyseekError that `f` throws; fails the test if it throws nothing or something else. */
export function thrown(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TinyseekError);
    return (e as Error).message;
  }
  throw new Error("expected a TinyseekError, nothing was thrown");
}

/** |a - b| <= atol + rtol·|b| element-wise: float32 roundings in a different order, nothing more. */
export const close = (a: Tensor, b: Tensor, rtol = 1e-5, atol = 1e-6) => {
  expect(a.shape).toEqual(b.shape);
  let worst = 0;
  a.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b.data[i]!) - rtol * Math.abs(b.data[i]!))));
  expect(worst).toBeLessThanOrEqual(atol);
};

/** An Io that keeps what a command prints, line by line: run commands in-process and read their output. */
export function capture() {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (t) => void out.push(t), err: (t) => void err.push(t) };
  return { io, out, err, text: () => out.join("\n") };
}

/** `tinyseek ...argv` in-process: the exit code and what it printed on stdout and stderr. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = capture();
  const code = await main(argv, c.io);
  return { code, out: c.out.join("\n"), err: c.err.join("\n") };
}

/** A PRNG seed for fast-check properties. */
export const seed = fc.integer({ min: 0, max: 2 ** 32 - 1 });

/** Normalised squared error ||out - ref||² / ||ref||², spec/golden.md's whole-tensor measure. */
export function nmse(out: { data: ArrayLike<number> }, ref: { data: ArrayLike<number> }): number {
  let num = 0, den = 0;
  for (let i = 0; i < ref.data.length; i++) {
    num += (out.data[i]! - ref.data[i]!) ** 2;
    den += ref.data[i]! ** 2;
  }
  return num / den;
}

/** sqrt of nmse on plain arrays: the relative (Frobenius) error of `out` against `ref`. */
export const relativeError = (out: ArrayLike<number>, ref: ArrayLike<number>): number => Math.sqrt(nmse({ data: out }, { data: ref }));

/** The largest entry of each row of logits [T, V] (ties to the lower index): the greedy tokens. */
export const argmaxRows = (t: Tensor): number[] =>
  Array.from({ length: t.shape[0]! }, (_, r) => argmax(t.data.subarray(r * t.shape[1]!, (r + 1) * t.shape[1]!)));

/** One computation on device kernels: `run` uploads its inputs through `up`; the result is read back, and every value made is released. */
export async function runUploaded<X extends Value>(k: DeviceKernels<X>, run: (k: DeviceKernels<X>, up: (t: Tensor) => X) => X): Promise<Tensor> {
  const made: X[] = [];
  const up = (t: Tensor) => {
    const x = k.upload(t);
    made.push(x);
    return x;
  };
  const out = run(k, up);
  const data = await k.read(out);
  k.release(out, ...made);
  return { shape: [...out.shape], data };
}

/** The SafetensorsError that `f` throws (the test fails if it throws nothing, or something else). */
export function safetensorsErrorOf(f: () => unknown): SafetensorsError {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(SafetensorsError);
    return error as SafetensorsError;
  }
  throw new Error("expected a SafetensorsError, nothing was thrown");
}
