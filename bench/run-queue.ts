// How long this process's threads have waited for a CPU (Linux's /proc/self/task/*/schedstat, second field): the
// benches that compare one thread with two count a round as quiet only when this did not grow during it.

import { readdirSync, readFileSync } from "node:fs";

/** Milliseconds our threads have waited on a run queue so far. */
export function queued(): number {
  let ns = 0;
  for (const task of readdirSync("/proc/self/task")) {
    try {
      ns += Number(readFileSync(`/proc/self/task/${task}/schedstat`, "utf8").split(" ")[1]);
    } catch {} // a thread that just ended
  }
  return ns / 1e6;
}
