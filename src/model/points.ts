// Hook points: every named intermediate of the forward (the trace names of spec/model.md and spec/research.md:
// embed, layers.L.in, layers.L.attn.heads, layers.L.mlp.router.logits, norm, logits, …) is a point where a caller
// may read the value or return a replacement of the same shape, which then flows on as if computed
// (TransformerLens's HookPoint). A trace records what flowed. A point nobody listens to costs nothing: the value
// is read back to the host only when a hook's pattern or the trace matches its name.

import { argError, TinyseekError } from "../errors.ts";
import { globToRegExp } from "../glob.ts";
import type { Value } from "../device/kernels.ts";
import { read, settled, type Reading } from "../device/drive.ts";
import type { Ops } from "../device/ops.ts";
import { shapeString, type Tensor } from "../tensor.ts";
import { record, wants, type Trace, type TracedTensor } from "../trace.ts";

/** What a hook is told about the point it runs at. */
export interface HookContext {
  /** The point's name, e.g. "layers.2.attn.out". */
  readonly name: string;
  /** The layer it belongs to, when it belongs to one. */
  readonly layer?: number;
  /** The absolute position in the sequence of each token along the value's token axis. */
  readonly positions: Int32Array;
}

/** Reads a value (return nothing) or replaces it (return a tensor of the same shape). */
export type Hook = (value: Tensor, context: HookContext) => Tensor | void;

/**
 * Hooks by glob pattern over the point names (`*` any run of characters, `?` one): { "layers.*.attn.out": hook },
 * or a list of [pattern, hook] pairs when several hooks share a pattern (they run in order, each on what the
 * previous one let flow).
 */
export type Hooks = Readonly<Record<string, Hook>> | readonly (readonly [string, Hook])[];

/** The hooks and the trace of one forward, matched against point names. */
export interface Listeners {
  readonly trace?: Trace;
  readonly hooks: readonly { readonly pattern: string; readonly matcher: RegExp; readonly hook: Hook }[];
}

export function listeners(trace: Trace | undefined, ...hookSets: (Hooks | undefined)[]): Listeners {
  const list = hookSets.flatMap((hooks) => {
    if (hooks === undefined) return [];
    if (typeof hooks !== "object" || hooks === null) {
      throw new TinyseekError(`hooks: expected an object of { pattern: hook function } or a list of [pattern, hook] pairs, got ${String(hooks)}`);
    }
    const pairs: (readonly [string, Hook])[] = Array.isArray(hooks) ? [...hooks] : Object.entries(hooks);
    return pairs.map((pair, i) => {
      const [pattern, hook] = Array.isArray(pair) ? pair : [undefined, undefined];
      if (typeof pattern !== "string" || pattern === "") throw argError(`hooks[${i}]`, "a [pattern, hook] pair with a non-empty glob pattern", Array.isArray(pair) ? typeof pattern : typeof pair);
      if (typeof hook !== "function") throw argError(`hooks["${pattern}"]`, "a function (value, context) => replacement or nothing", typeof hook);
      return { pattern, matcher: globToRegExp(pattern), hook };
    });
  });
  return { trace, hooks: list };
}

/** Each hook pattern must name at least one of the model's points: a typo would otherwise listen to nothing. */
export function checkPatterns(l: Listeners, points: readonly string[], layers: number): void {
  for (const { pattern, matcher } of l.hooks) {
    if (points.some((p) => matcher.test(p))) continue;
    throw new TinyseekError(`hooks: "${pattern}" matches no hook point of this model (layers 0–${layers - 1}; names as in spec/research.md, e.g. "layers.0.attn.heads")`);
  }
}

/** Whether anyone listens at `name`: then the value is worth reading back. */
export const listened = (l: Listeners, name: string): boolean => wants(l.trace, name) || hooked(l, name);

/** Whether a hook (not only the trace) listens at `name`. A plain loop: a decode step asks this ~50 times. */
export function hooked(l: Listeners, name: string): boolean {
  for (let i = 0; i < l.hooks.length; i++) if (l.hooks[i]!.matcher.test(name)) return true;
  return false;
}

/**
 * Runs the hooks listening at `name` on the host tensor `value`; returns what flows on, recorded in the trace. At a
 * read-only point (`writable` false: a value computed beside the forward, such as the pre-softmax scores) a hook
 * may only read.
 */
export function hookHost(l: Listeners, name: string, value: Tensor, where: { layer?: number; positions: Int32Array }, writable = true): Tensor {
  let flowing = value;
  const context: HookContext = where.layer === undefined ? { name, positions: where.positions } : { name, layer: where.layer, positions: where.positions };
  for (const { matcher, hook } of l.hooks) {
    if (!matcher.test(name)) continue;
    const replaced = hook(flowing, context);
    if (replaced === undefined || replaced === flowing) continue;
    if (!writable && replaced?.data?.length === flowing.data.length && replaced.data.every((v, i) => Object.is(v, flowing.data[i]))) continue;
    if (!writable) throw new TinyseekError(`hook at ${name}: this point can only be read (it is computed beside the forward; see spec/research.md for the point to replace)`);
    if (!replaced || !(replaced.data instanceof Float32Array) || replaced.shape?.length !== value.shape.length
      || replaced.shape.some((d, i) => d !== value.shape[i]) || replaced.data.length !== value.data.length) {
      throw argError(`hook at ${name}`, `a tensor of shape ${shapeString(value.shape)} with Float32Array data, or nothing`, replaced?.shape ? shapeString(replaced.shape) : replaced);
    }
    flowing = replaced;
  }
  record(l.trace, name, flowing);
  return flowing;
}

/**
 * A read-only point (integer indices, flags, values computed beside the forward): hooks read a float copy and may
 * not replace it; the trace records the value with its own dtype.
 */
export function readOnly(l: Listeners, name: string, value: TracedTensor, where: { layer?: number; positions: Int32Array }): void {
  if (hooked(l, name)) hookHost({ hooks: l.hooks }, name, { shape: value.shape, data: Float32Array.from(value.data) }, where, false);
  record(l.trace, name, value);
}

/** The hook point `name` on a device value: unread unless someone listens; a replacement is uploaded. */
export function point<X extends Value>(ops: Ops<X>, l: Listeners, name: string, x: X, where: { layer?: number; positions: Int32Array }): Reading<X> {
  return listened(l, name) ? listenedPoint(ops, l, name, x, where) : settled(x);
}

function* listenedPoint<X extends Value>(ops: Ops<X>, l: Listeners, name: string, x: X, where: { layer?: number; positions: Int32Array }): Reading<X> {
  const value = { shape: x.shape, data: yield* read(ops, x) };
  const flowing = hookHost(l, name, value, where);
  return flowing === value ? x : ops.upload(flowing);
}
