// Lesson 8: golden-testing a kernel. A kernel is checked the way any backend is: swap it into a copy of the
// reference kernels and recompute every committed golden file (spec/golden/*.safetensors) with it
// (src/io/golden.ts, src/golden/suite.ts).
import type { Backend, BackendName } from "../src/backend.ts";
import { goldenSuite, matchesGlob } from "../src/golden/suite.ts";
import { checkGoldenFile, goldenFilesIn } from "../src/io/golden.ts";
import { referenceOps } from "../src/device/ops.ts";
import { reference, type FusedAttentionOptions, type Kernels } from "../src/kernels.ts";
import { specVisible } from "../src/masks.ts";
import type { Tensor } from "../src/tensor.ts";

/** The committed golden files, wherever the caller runs from. */
export const GOLDEN_DIR = new URL("../spec/golden", import.meta.url).pathname;

/** A backend that is the reference with some kernels replaced (named, so reports say whose kernel it is). */
export function backendWith(overrides: Partial<Omit<Kernels, "name">>, name = "notebook"): Backend {
  const kernels: Kernels = { ...reference, ...overrides, name };
  // Component cases run on these kernels; the model cases run the one forward on the reference's operations.
  return { name: name as BackendName, description: `reference with ${Object.keys(overrides).join(", ")} replaced`, ops: referenceOps, kernels, asyncKernels: kernels, dispose: async () => {} };
}

export interface GoldenRow {
  case: string;
  /** "stale": the file no longer matches its case (config or seed changed), so it says nothing about the kernel. */
  outcome: "ok" | "fail" | "not supported" | "stale";
  mismatches: number;
  elements: number;
  maxAbsError: number;
  message: string;
}

/** Checks `backend` against every golden file whose case name matches `glob` ("*" for all). */
export async function checkBackend(backend: Backend, glob = "*"): Promise<GoldenRow[]> {
  const suite = goldenSuite();
  const files = (await goldenFilesIn(GOLDEN_DIR)).filter((f) => matchesGlob(f.split("/").pop()!.replace(/\.safetensors$/, ""), glob));
  const rows: GoldenRow[] = [];
  for (const file of files) {
    const r = await checkGoldenFile(file, suite, backend);
    const worst = r.comparisons.reduce((a, c) => ({ mismatches: a.mismatches + c.mismatches, elements: a.elements + c.elements, maxAbsError: Math.max(a.maxAbsError, c.maxAbsError) }), { mismatches: 0, elements: 0, maxAbsError: 0 });
    const stale = r.outcome === "fail" && r.message.includes("has changed its config or seed");
    rows.push({ case: file.split("/").pop()!.replace(/\.safetensors$/, ""), outcome: stale ? "stale" : r.outcome, ...worst, message: r.message });
  }
  return rows;
}

/** Count of outcomes per component (the part of the case name before its second dot). */
export function summarise(rows: readonly GoldenRow[]) {
  const by = new Map<string, { component: string; ok: number; fail: number; stale: number }>();
  for (const r of rows) {
    const component = r.case.split(".").slice(0, 2).join(".");
    const s = by.get(component) ?? { component, ok: 0, fail: 0, stale: 0 };
    if (r.outcome === "ok") s.ok++;
    else if (r.outcome === "fail") s.fail++;
    else if (r.outcome === "stale") s.stale++;
    by.set(component, s);
  }
  return [...by.values()];
}

/**
 * A naive attention kernel, as a reader would write it from the formula: for each query, scores against every
 * visible key, a softmax, a weighted sum of values. `bug` plants one of two classic mistakes.
 */
export function naiveAttention(bug: "none" | "off-by-one mask" | "no max subtraction" = "none"): Kernels["attention"] {
  return (q: Tensor, k: Tensor, v: Tensor, options: FusedAttentionOptions = {}): Tensor => {
    const [B, H, Tq, Dh] = q.shape as [number, number, number, number];
    const [, Hkv, Tk] = k.shape as [number, number, number, number];
    const Dv = v.shape[3]!;
    const scale = options.scale ?? 1 / Math.sqrt(Dh);
    const offset = options.mask?.offset ?? Tk - Tq;
    const visible = options.mask ? specVisible(options.mask, Tq, Tk) : () => true;
    const out = new Float32Array(B * H * Tq * Dv);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / Hkv)); // the kv head this query head reads
        for (let i = 0; i < Tq; i++) {
          const scores: number[] = [];
          for (let j = 0; j < Tk; j++) {
            const sees = bug === "off-by-one mask" ? visible(b, i, j) && j < offset + i : visible(b, i, j);
            if (!sees) { scores.push(-Infinity); continue; }
            let dot = 0;
            for (let d = 0; d < Dh; d++) dot += q.data[((b * H + h) * Tq + i) * Dh + d]! * k.data[((b * Hkv + g) * Tk + j) * Dh + d]!;
            const decay = options.logGammas ? (offset + i - j) * options.logGammas[h]! : 0;
            scores.push(dot * scale + decay);
          }
          const max = bug === "no max subtraction" ? 0 : Math.max(...scores);
          if (max === -Infinity) continue; // no visible key: the output row stays zero
          const weights = scores.map((s) => Math.exp(s - max));
          const sum = weights.reduce((a, w) => a + w, 0);
          for (let d = 0; d < Dv; d++) {
            let acc = 0;
            for (let j = 0; j < Tk; j++) acc += (weights[j]! / sum) * v.data[((b * Hkv + g) * Tk + j) * Dv + d]!;
            out[((b * H + h) * Tq + i) * Dv + d] = acc;
          }
        }
      }
    }
    return { shape: [B, H, Tq, Dv], data: out };
  };
}
