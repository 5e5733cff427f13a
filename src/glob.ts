// Name patterns for traces and golden cases: `*` matches any run of characters, `?` one, all else is literal.

/** A glob as an anchored regular expression. */
export function globToRegExp(pattern: string): RegExp {
  const body = [...pattern].map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&"))).join("");
  return new RegExp(`^${body}$`);
}

/** Whether `name` matches any of the comma-separated globs in `globs`. */
export function matchesGlob(name: string, globs: string): boolean {
  return globs.split(",").some((pattern) => globToRegExp(pattern.trim()).test(name));
}
