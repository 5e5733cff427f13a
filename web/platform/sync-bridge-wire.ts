// What crosses the browser's synchronous bridge (web/platform/sync-bridge.ts) besides gpu/sync-bridge-wire.ts's
// messages: the reply to a kernel call, written into shared memory. A Web Worker blocked in Atomics.wait cannot
// receive a message (there is no receiveMessageOnPort in a browser), so the page writes the reply into a shared
// buffer before it raises the flag: [kind, length, ...] with kind TENSOR (rank, dims, then float32 data) or
// ERROR (a WireError as UTF-8 JSON).

import { TinyseekError } from "../../src/errors.ts";
import type { Tensor } from "../../src/tensor.ts";
import { fromWire, toWire, type WireError } from "../../gpu/sync-bridge-wire.ts";

/** The reply buffer: a kernel result of a golden component case is kilobytes; this leaves room for far more. */
export const REPLY_BYTES = 64 * 2 ** 20;
const TENSOR = 1, ERROR = 2;
/** Int32 words before a tensor's dims: kind, rank, element count. */
const HEAD = 3;

/** Writes a kernel's result (a tensor) or an error into `buffer`. */
export function writeReply(buffer: SharedArrayBuffer, reply: { value: unknown } | { error: unknown }): void {
  const words = new Int32Array(buffer);
  if ("value" in reply) {
    const t = reply.value as Partial<Tensor> | undefined;
    if (t && Array.isArray(t.shape) && t.data instanceof Float32Array) {
      const at = HEAD + t.shape.length;
      if ((at + t.data.length) * 4 > buffer.byteLength) {
        return writeReply(buffer, { error: new TinyseekError(`sync bridge: a result of ${t.data.length} floats does not fit the reply buffer of ${buffer.byteLength} bytes`) });
      }
      words[0] = TENSOR;
      words[1] = t.shape.length;
      words[2] = t.data.length;
      words.set(t.shape, HEAD);
      new Float32Array(buffer, at * 4, t.data.length).set(t.data);
      return;
    }
    return writeReply(buffer, { error: new TinyseekError("sync bridge: a kernel returned something other than a float32 tensor") });
  }
  const json = new TextEncoder().encode(JSON.stringify(toWire(reply.error)).slice(0, 100_000));
  words[0] = ERROR;
  words[1] = json.length;
  new Uint8Array(buffer, 8, json.length).set(json);
}

/** The reply in `buffer`: the tensor, or the error rebuilt as the same class (thrown). */
export function readReply(buffer: SharedArrayBuffer): Tensor {
  const words = new Int32Array(buffer);
  if (words[0] === TENSOR) {
    const rank = words[1]!, n = words[2]!;
    const shape = Array.from(words.subarray(HEAD, HEAD + rank));
    return { shape, data: new Float32Array(buffer, (HEAD + rank) * 4, n).slice() };
  }
  if (words[0] === ERROR) {
    const bytes = new Uint8Array(buffer, 8, words[1]!).slice();
    throw fromWire(JSON.parse(new TextDecoder().decode(bytes)) as WireError);
  }
  throw new TinyseekError(`sync bridge: woke to a reply of unknown kind ${words[0]}`);
}
