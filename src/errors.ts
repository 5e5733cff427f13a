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
  if (Array.isArray(value)) return value.length <= 16 && value.every((v) => !Array.isArray(v) && typeof v !== "object") ? `[${value.map(describe).join(", ")}]` : excerpt(value, 120);
  return String(value);
}

/**
 * A short excerpt of an untrusted value (a file's header, a config) for a message: at most a few elements, two levels deep and about
 * 60 characters. Never JSON.stringify of the value itself: one nested 100,000 deep overflows the stack, and a
 * 20-million-entry shape would make a 40 MB line. Strings are JSON-quoted, so control characters show escaped.
 */
export function excerpt(value: unknown, max = 60): string {
  const text = brief(value, 2);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function brief(value: unknown, depth: number): string {
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value !== "object" || value === null) return String(value);
  if (Array.isArray(value)) {
    if (depth === 0 || value.length === 0) return value.length === 0 ? "[]" : "[…]";
    const shown = value.slice(0, 4).map((v) => brief(v, depth - 1));
    return `[${shown.join(", ")}${value.length > 4 ? `, … (${value.length} items)` : ""}]`;
  }
  const keys = Object.keys(value);
  if (depth === 0 || keys.length === 0) return keys.length === 0 ? "{}" : "{…}";
  const shown = keys.slice(0, 3).map((k) => `${brief(k, 0)}: ${brief((value as Record<string, unknown>)[k], depth - 1)}`);
  return `{${shown.join(", ")}${keys.length > 3 ? `, … (${keys.length} keys)` : ""}}`;
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
