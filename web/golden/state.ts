// What the golden page (web/golden/main.ts) leaves on `window.tinyseekGolden` for `npm run web:check`
// (web/check.ts) and the tests: plain data, no DOM, so that Node code can name it.

import type { BackendName } from "../../src/backend.ts";

export interface BackendReport {
  backend: BackendName;
  description: string;
  /** 0: every file ok; 1: a file failed or could not run; 2: the backend did not load. */
  exitCode: number;
  /** What `golden check` prints for these results. */
  text: string;
  counts: { ok: number; fail: number; notSupported: number };
  /** Files whose case ran in the synchronous bridge's worker (WebGPU's component cases). */
  inWorker: string[];
}

export interface GoldenPageState {
  state: "running" | "done";
  /** 0 when every backend passed every file; otherwise the largest backend exit code. */
  exitCode?: number;
  reports: BackendReport[];
  isolated: boolean;
}
