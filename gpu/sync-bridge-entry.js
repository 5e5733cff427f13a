// The synchronous bridge's worker thread starts here. A worker inherits neither the CLI's tsx registration
// (bin/tinyseek.js) nor vitest's transform, so it registers tsx itself before importing any TypeScript.
import { register } from "tsx/esm/api";

register();
await import("./sync-bridge-worker.ts");
