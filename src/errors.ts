// Every public function checks its inputs and throws a TinyseekError naming the argument, what it expected and
// what it got. The CLI prints `message` on one line and exits non-zero; anything else is a bug in tinyseek.

export class TinyseekError extends Error {
  override name = "TinyseekError";
}

/** A backend that cannot run a given operation says so with this error: a third outcome beside pass and fail. */
export class NotSupportedError extends TinyseekError {
  override name = "NotSupportedError";
}

/** `argument: expected …, got …` — the one shape every validation message takes. */
export function argError(argument: string, expected: string, actual: unknown): TinyseekError {
  return new TinyseekError(`${argument}: expected ${expected}, got ${describe(actual)}`);
}

export function describe(value: unknown): string {
  // Strings are quoted so that "" and " x" show; a shape or range already written as "[2, 3]" is shown as is.
  if (typeof value === "string") return /^[[(]/.test(value) ? value : JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(describe).join(", ")}]`;
  return String(value);
}

export function checkInteger(argument: string, value: number, min: number, max = Infinity): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw argError(argument, range, value);
  }
}

export function checkNumber(argument: string, value: number, min: number, max: number, note = ""): void {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw argError(argument, `a finite number in [${min}, ${max}]${note}`, value);
  }
}

export function checkOneOf<T extends string>(argument: string, value: T, allowed: readonly T[]): void {
  if (!allowed.includes(value)) throw argError(argument, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`, value);
}
