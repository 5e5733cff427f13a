// Run as a child process by test/sync-bridge.test.ts: the process must exit however the bridge is left.
//   close   run a task, close the bridge
//   forget  run a task, never close (an idle bridge holds no event-loop handle)
//   crash   the main thread throws while the worker waits for a kernel that never answers
import { SyncBridge } from "../gpu/sync-bridge.ts";
import { reference } from "../src/kernels.ts";

const mode = process.argv[2];
const never = new Promise<never>(() => {});
const bridge = await SyncBridge.open({ ...reference, silu: (x) => (mode === "crash" ? never : reference.silu(x)) });
const task = { module: new URL("./bridge-tasks.ts", import.meta.url).href, export: "silu" };
const x = { shape: [2], data: new Float32Array([1, -1]) };
if (mode === "crash") {
  setTimeout(() => {
    throw new Error("the main thread failed");
  }, 200);
  await bridge.run(task, x);
}
await bridge.run(task, x);
if (mode === "close") await bridge.close();
console.log("done");
