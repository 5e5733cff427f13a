// Tasks the sync-bridge tests run in the bridge's worker (gpu/sync-bridge.ts): each an export (kernels, args, emit).

import { TinyseekError } from "../src/errors.ts";
import type { Kernels } from "../src/kernels.ts";
import type { Tensor } from "../src/tensor.ts";

type Call = { op: keyof Kernels; args: unknown[] };

/** Each call on the worker's synchronous kernels, in order; their results. */
export function calls(kernels: Kernels, list: Call[]): unknown[] {
  return list.map(({ op, args }) => (kernels[op] as (...a: unknown[]) => unknown)(...args));
}

/** The same weight object twice: the main thread must see one object (weights cross once). */
export function linearTwice(kernels: Kernels, { x, w }: { x: Tensor; w: Tensor }): Tensor[] {
  return [kernels.linear(x, w), kernels.linear(x, w)];
}

/** A kernel error caught in the worker: its class and message as the worker sees them. */
export function caught(kernels: Kernels, call: Call): { name: string; message: string; tinyseek: boolean } {
  try {
    (kernels[call.op] as (...a: unknown[]) => unknown)(...call.args);
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message, tinyseek: error instanceof TinyseekError };
  }
  return { name: "none", message: "no error", tinyseek: false };
}

export function throwsTinyseek(): never {
  throw new TinyseekError("n: expected 3, got 4");
}

export function returnsFunction(): unknown {
  return () => 1;
}

export function counts(_: Kernels, { n }: { n: number }, emit: (event: unknown) => void): number {
  for (let i = 0; i < n; i++) emit(i);
  return n;
}

export function silu(kernels: Kernels, x: Tensor): Tensor {
  return kernels.silu(x);
}
