// Small helpers the unit tests share.
import fc from "fast-check";
import { expect } from "vitest";
import { TinyseekError } from "../src/errors.ts";

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

/** A PRNG seed for fast-check properties. */
export const seed = fc.integer({ min: 0, max: 2 ** 32 - 1 });
