// The layout kernels (src/device/kernels.ts) for every backend whose values are flat memory: each is one or a few
// block copies (BlockCopy), so the reference, WASM and WebGPU split, merge, concatenate and write caches the same
// way, and each backend implements only copyBlocks.

import { numel } from "../tensor.ts";
import type { BlockCopy, DeviceKernels, Value } from "./kernels.ts";

export type LayoutKernels<X extends Value> = Pick<DeviceKernels<X>, "splitHeads" | "mergeHeads" | "concatLast" | "sliceRows" | "concatRows" | "writeRows">;

/** The layout kernels over a backend's `empty` and `copyBlocks`. */
export function copyLayout<X extends Value>(empty: (shape: readonly number[]) => X, copyBlocks: (src: X, dst: X, b: BlockCopy) => void): LayoutKernels<X> {
  return {
    splitHeads(x, H, widths) {
      const T = x.shape[0]!;
      const per = x.shape[1]! / H;
      let at = 0;
      return widths.map((w) => {
        const out = empty([H, T, w]);
        copyBlocks(x, out, { batches: H, rows: T, width: w, srcOff: at, srcBatch: per, srcRow: H * per, dstBatch: T * w, dstRow: w });
        at += w;
        return out;
      });
    },
    mergeHeads(x) {
      const [H, T, d] = x.shape as [number, number, number];
      const out = empty([T, H * d]);
      copyBlocks(x, out, { batches: H, rows: T, width: d, srcBatch: T * d, srcRow: d, dstBatch: d, dstRow: H * d });
      return out;
    },
    concatLast(parts) {
      const A = Math.max(...parts.map((p) => p.shape[0]!));
      const T = parts[0]!.shape[1]!;
      const width = parts.reduce((sum, p) => sum + p.shape[2]!, 0);
      const out = empty([A, T, width]);
      let at = 0;
      for (const p of parts) {
        const w = p.shape[2]!;
        // A part with one plane is repeated: its batch stride is 0.
        copyBlocks(p, out, { batches: A, rows: T, width: w, srcBatch: p.shape[0] === 1 ? 0 : T * w, srcRow: w, dstOff: at, dstBatch: T * width, dstRow: width });
        at += w;
      }
      return out;
    },
    sliceRows(x, start, count) {
      const D = x.shape[1]!;
      const out = empty([count, D]);
      copyBlocks(x, out, { rows: 1, width: count * D, srcOff: start * D, srcRow: 0, dstRow: 0 });
      return out;
    },
    concatRows(parts) {
      const D = parts[0]!.shape[1]!;
      const out = empty([parts.reduce((n, p) => n + p.shape[0]!, 0), D]);
      let at = 0;
      for (const p of parts) {
        const n = numel(p.shape);
        if (n > 0) copyBlocks(p, out, { rows: 1, width: n, srcRow: 0, dstOff: at, dstRow: 0 });
        at += n;
      }
      return out;
    },
    writeRows(dst, src, at) {
      const [A, T, w] = src.shape as [number, number, number];
      const rows = dst.shape[1]!;
      copyBlocks(src, dst, { batches: A, rows: T, width: w, srcBatch: T * w, srcRow: w, dstOff: at * w, dstBatch: rows * w, dstRow: w });
    },
  };
}
