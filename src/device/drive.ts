// Running code that reads device values back, written once for synchronous and asynchronous backends. Such code
// is a generator: where it needs a value on the host it writes `const data = yield* read(ops, x)`, which yields
// what the backend's read returned (the elements, or a promise of them) and is resumed with the elements.
//   runSync   resumes at once; a backend whose read answers with a promise is refused (use runAsync)
//   runAsync  awaits each read
// The reference, WASM and tfjs read synchronously, so their forwards run synchronously; WebGPU's reads are
// asynchronous in Node and in the browser alike, and the same generator runs under runAsync.

import { TinyseekError } from "../errors.ts";
import type { Value } from "./kernels.ts";

export type Pending = Float32Array | Promise<Float32Array>;

/** A computation that may read device values: it yields pending reads and is resumed with their elements. */
export type Reading<R> = Generator<Pending, R, Float32Array>;

/** The elements of x on the host. */
export function* read<X extends Value>(ops: { read(x: X): Pending }, x: X): Reading<Float32Array> {
  return yield ops.read(x);
}

/**
 * A computation that reads nothing and is already over: `yield* settled(x)` is x. The forward's optional steps (a
 * hook point nobody listens to, a sublayer with no adapter) return it, so that they cost no generator object: those
 * were about a fifth of a decode step's garbage. One shared object serves every call: `yield*` consumes it at once.
 */
export function settled<R>(value: R): Reading<R> {
  SETTLED_RESULT.value = value;
  return SETTLED as Reading<R>;
}

const SETTLED_RESULT: IteratorReturnResult<unknown> = { done: true, value: undefined };
const SETTLED: Reading<unknown> = {
  next: () => SETTLED_RESULT,
  return: (value) => ({ done: true, value }),
  throw: (error) => {
    throw error;
  },
  [Symbol.iterator]() {
    return this;
  },
};

/** Runs `run` to its end on a backend whose reads are synchronous. */
export function runSync<R>(run: Reading<R>, backend: string): R {
  let next = run.next();
  while (!next.done) {
    const pending = next.value;
    if (pending instanceof Promise) {
      pending.catch(() => {}); // nobody will wait for it
      const error = new TinyseekError(`backend "${backend}" reads its values asynchronously: use the asynchronous form (forwardAsync, generateAsync)`);
      run.throw(error); // runs the generator's finally blocks (its values go back), then throws
      throw error;
    }
    next = run.next(pending);
  }
  return next.value;
}

/** Runs `run` to its end, awaiting each read. */
export async function runAsync<R>(run: Reading<R>): Promise<R> {
  let next = run.next();
  while (!next.done) {
    let data: Float32Array;
    try {
      data = await next.value;
    } catch (error) {
      next = run.throw(error); // the generator may clean up; it rethrows
      continue;
    }
    next = run.next(data);
  }
  return next.value;
}
