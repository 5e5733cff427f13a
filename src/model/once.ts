// What a forward derives from the config (rotary frequencies, softmax scales, a kind's resolved config), made the
// first time a layer asks and kept in the forward's Run.derived (src/model/layers.ts) for the other layers.

/** `make()` once per forward under `key`. */
export function once<T>(run: { readonly derived: Map<string, unknown> }, key: string, make: () => T): T {
  let value = run.derived.get(key) as T | undefined;
  if (value === undefined) run.derived.set(key, (value = make()));
  return value;
}
