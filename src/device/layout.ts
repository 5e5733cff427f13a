// The layout kernels (src/device/kernels.ts) for every backend whose values are flat memory: each is one or a few
// block copies (BlockCopy), so the reference, WASM and WebGPU split, merge, concatenate and write caches the same
// way, and each backend implements only copyBlocks.

import { numel } from "../tensor.ts";
import type { BlockCopy, DeviceKernels, Value } from "./kernels.ts";

export type LayoutKernels<X extends Value> = Pick<DeviceKernels<X>, "splitHeads" | "mergeHeads" | "concatLast" | "sliceRows" | "reshape" | "concatRows" | "writeRows">;

// Every copy below names every field of BlockCopy, in one order: the kernels then see one object shape (copies with
// only the fields they needed made V8's copy loops megamorphic, several times slower on a decode step's short rows).

/** The layout kernels over a backend's `empty` and `copyBlocks`. */
export function copyLayout<X extends Value>(empty: (shape: readonly number[]) => X, copyBlocks: (src: X, dst: X, b: BlockCopy) => void): LayoutKernels<X> {
  return {
    splitHeads(x, H, widths) {
      const T = x.shape[0]!;
      const per = x.shape[1]! / H;
      let at = 0;
      return widths.map((w) => {
        const out = empty([H, T, w]);
        copyBlocks(x, out, { batches: H, rows: T, width: w, srcOff: at, srcRow: H * per, srcBatch: per, dstOff: 0, dstRow: w, dstBatch: T * w });
        at += w;
        return out;
      });
    },
    mergeHeads(x) {
      const [H, T, d] = x.shape as [number, number, number];
      const out = empty([T, H * d]);
      copyBlocks(x, out, { batches: H, rows: T, width: d, srcOff: 0, srcRow: d, srcBatch: T * d, dstOff: 0, dstRow: H * d, dstBatch: d });
      return out;
    },
    concatLast(parts) {
      let A = 1, width = 0;
      for (const p of parts) {
        A = Math.max(A, p.shape[0]!);
        width += p.shape[2]!;
      }
      const T = parts[0]!.shape[1]!;
      const out = empty([A, T, width]);
      let at = 0;
      for (const p of parts) {
        const w = p.shape[2]!;
        // A part with one plane is repeated: its batch stride is 0.
        copyBlocks(p, out, { batches: A, rows: T, width: w, srcOff: 0, srcRow: w, srcBatch: p.shape[0] === 1 ? 0 : T * w, dstOff: at, dstRow: width, dstBatch: T * width });
        at += w;
      }
      return out;
    },
    sliceRows(x, start, count) {
      const D = x.shape[1]!;
      const out = empty([count, D]);
      copyBlocks(x, out, { batches: 1, rows: 1, width: count * D, srcOff: start * D, srcRow: 0, srcBatch: 0, dstOff: 0, dstRow: 0, dstBatch: 0 });
      return out;
    },
    reshape(x, shape) {
      const out = empty(shape), n = numel(shape);
      if (n > 0) copyBlocks(x, out, { batches: 1, rows: 1, width: n, srcOff: 0, srcRow: 0, srcBatch: 0, dstOff: 0, dstRow: 0, dstBatch: 0 });
      return out;
    },
    concatRows(parts) {
      const D = parts[0]!.shape[1]!;
      const out = empty([parts.reduce((n, p) => n + p.shape[0]!, 0), D]);
      let at = 0;
      for (const p of parts) {
        const n = numel(p.shape);
        if (n > 0) copyBlocks(p, out, { batches: 1, rows: 1, width: n, srcOff: 0, srcRow: 0, srcBatch: 0, dstOff: at, dstRow: 0, dstBatch: 0 });
        at += n;
      }
      return out;
    },
    writeRows(dst, src, at) {
      const [A, T, w] = src.shape as [number, number, number];
      const rows = dst.shape[1]!;
      copyBlocks(src, dst, { batches: A, rows: T, width: w, srcOff: 0, srcRow: w, srcBatch: T * w, dstOff: at * w, dstRow: w, dstBatch: rows * w });
    },
  };
}
