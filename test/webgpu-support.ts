// Shared by the WebGPU tests: one backend per test file, the CI rule (with CI=true a missing adapter fails, never
// skips), and a comparison that reports the worst element like a failing kernel check should.

import { createBackend, type WebGpuBackend } from "../gpu/backend.ts";
import type { Tensor } from "../src/tensor.ts";

/** The backend, or the one-line reason there is none (outside CI only). */
export async function webgpuOrReason(): Promise<{ backend?: WebGpuBackend; reason?: string }> {
  try {
    return { backend: await createBackend() };
  } catch (error) {
    if (process.env.CI === "true") throw error;
    return { reason: (error as Error).message.split("\n")[0] };
  }
}

export interface Errors {
  maxAbs: number;
  maxRel: number;
  nmse: number;
  /** Elements over atol + rtol·|ref|, and where the first one is. */
  bad: number;
  first?: string;
}

export function compare(out: Tensor, ref: Tensor, rtol: number, atol: number): Errors {
  if (out.shape.join() !== ref.shape.join()) throw new Error(`shape [${out.shape}] vs reference [${ref.shape}]`);
  let maxAbs = 0, maxRel = 0, num = 0, den = 0, bad = 0;
  let first: string | undefined;
  for (let i = 0; i < ref.data.length; i++) {
    const o = out.data[i]!, r = ref.data[i]!;
    const err = Math.abs(o - r);
    if (!(err <= atol + rtol * Math.abs(r))) {
      bad++;
      first ??= `element ${i}: ${o} vs ${r}`;
    }
    if (Number.isNaN(err)) continue;
    maxAbs = Math.max(maxAbs, err);
    if (r !== 0) maxRel = Math.max(maxRel, err / Math.abs(r));
    num += err * err;
    den += r * r;
  }
  return { maxAbs, maxRel, nmse: den === 0 ? num : num / den, bad, first };
}
