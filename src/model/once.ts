// What a forward derives from the config (rotary frequencies, softmax scales, a kind's resolved config), made the
// first time a layer asks. A checked config is frozen (resolveConfig), so what depends on it alone is kept with it,
// made once for every forward through it: each decode step would otherwise remake them. What also depends on the
// forward's own tokens is kept in the forward's Run.derived (src/model/layers.ts), dropped when it ends.

const byConfig = new WeakMap<object, Map<string, unknown>>();

/** `make()` once per forward under `key`. */
export function once<T>(run: { readonly derived: Map<string, unknown> }, key: string, make: () => T): T {
  return cached(run.derived, key, make);
}

/** `make()` once per config under `key` (once per forward for a config that is not frozen, and could change). */
export function oncePerConfig<T>(run: { readonly config: object; readonly derived: Map<string, unknown> }, key: string, make: () => T): T {
  if (!Object.isFrozen(run.config)) return once(run, key, make);
  let derived = byConfig.get(run.config);
  if (!derived) byConfig.set(run.config, (derived = new Map()));
  return cached(derived, key, make);
}

function cached<T>(derived: Map<string, unknown>, key: string, make: () => T): T {
  let value = derived.get(key) as T | undefined;
  if (value === undefined) derived.set(key, (value = make()));
  return value;
}
