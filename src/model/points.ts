// Hook points: every named intermediate of the forward (the trace names of spec/model.md: embed,
// layers.L.attn.in, layers.L.mlp.router.logits, norm, logits, …) is a point where a caller may read the value or
// return a replacement of the same shape, which then flows on as if computed (TransformerLens's HookPoint). A trace
// records what flowed. A point nobody listens to costs nothing: the value is read back to the host only when a
// hook's pattern or the trace matches its name.

import { argError, TinyseekError } from "../errors.ts";
import { globToRegExp } from "../glob.ts";
import { type Value } from "../device/kernels.ts";
import { read, type Reading } from "../device/drive.ts";
import { type Ops } from "../device/ops.ts";
import { shapeString, type Tensor } from "../tensor.ts";
import { record, wants, type Trace } from "../trace.ts";

/** What a hook is told about the point it runs at. */
export interface HookContext {
  /** The point's name, e.g. "layers.2.attn.out". */
  readonly name: string;
  /** The layer it belongs to, when it belongs to one. */
  readonly layer?: number;
}

/** Reads a value (return nothing) or replaces it (return a tensor of the same shape). */
export type Hook = (value: Tensor, context: HookContext) => Tensor | void;

/** Hooks by glob pattern over the point names (`*` any run of characters, `?` one): "layers.*.attn.out". */
export type Hooks = Readonly<Record<string, Hook>>;

/** The hooks and the trace of one forward, matched against point names. */
export interface Listeners {
  readonly trace?: Trace;
  readonly hooks: readonly { readonly matcher: RegExp; readonly hook: Hook }[];
}

export function listeners(trace: Trace | undefined, hooks: Hooks | undefined): Listeners {
  if (hooks !== undefined && (typeof hooks !== "object" || hooks === null || Array.isArray(hooks))) {
    throw new TinyseekError(`hooks: expected an object of { pattern: hook function }, got ${Array.isArray(hooks) ? "an array" : String(hooks)}`);
  }
  const list = Object.entries(hooks ?? {}).map(([pattern, hook]) => {
    if (typeof hook !== "function") throw argError(`hooks["${pattern}"]`, "a function (value, context) => replacement or nothing", typeof hook);
    return { matcher: globToRegExp(pattern), hook };
  });
  return { trace, hooks: list };
}

/** Whether anyone listens at `name`: then the value is worth reading back. */
export const listened = (l: Listeners, name: string): boolean => wants(l.trace, name) || l.hooks.some((h) => h.matcher.test(name));

/** Runs the hooks listening at `name` on the host tensor `value`; returns what flows on, recorded in the trace. */
export function hookHost(l: Listeners, name: string, value: Tensor, layer?: number): Tensor {
  let flowing = value;
  for (const { matcher, hook } of l.hooks) {
    if (!matcher.test(name)) continue;
    const replaced = hook(flowing, layer === undefined ? { name } : { name, layer });
    if (replaced === undefined) continue;
    if (!replaced || !(replaced.data instanceof Float32Array) || replaced.shape?.length !== value.shape.length
      || replaced.shape.some((d, i) => d !== value.shape[i]) || replaced.data.length !== value.data.length) {
      throw argError(`hook at ${name}`, `a tensor of shape ${shapeString(value.shape)} with Float32Array data, or nothing`, replaced?.shape ? shapeString(replaced.shape) : replaced);
    }
    flowing = replaced;
  }
  record(l.trace, name, flowing);
  return flowing;
}

/** The hook point `name` on a device value: unread unless someone listens; a replacement is uploaded. */
export function* point<X extends Value>(ops: Ops<X>, l: Listeners, name: string, x: X, layer?: number): Reading<X> {
  if (!listened(l, name)) return x;
  const value = { shape: x.shape, data: yield* read(ops, x) };
  const flowing = hookHost(l, name, value, layer);
  return flowing === value ? x : ops.upload(flowing);
}
