// `tinyseek devices`: the WebGPU adapter this machine offers (through Dawn in Node), its backend and its limits.
// Without one it says which piece is missing (Vulkan loader, driver) and exits 1.

import { UsageError, parse, positionals, processIo, type Io } from "./io.ts";
import { printTable } from "./table.ts";

export const help = `usage: tinyseek devices [--backend vulkan|metal|d3d12|...] [--json]

The WebGPU adapter (through Dawn's Node bindings, the "webgpu" package): name, vendor, architecture, the native
API under Dawn, whether it is a software rasteriser (lavapipe: timings there are CPU figures), and its limits.

options:
  --backend NAME  Dawn's native backend (default: vulkan on Linux, metal on macOS, d3d12 on Windows)
  --json          print JSON instead of a table
Exit codes: 0 an adapter was found, 1 none (the message names what is missing), 2 usage.`;

/** The native backends Dawn's "backend=" flag knows; any other name makes Dawn throw a plain Error. */
const DAWN_BACKENDS = ["vulkan", "metal", "d3d12", "d3d11", "opengl", "opengles", "webgpu", "null"] as const;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, { backend: { type: "string" }, json: { type: "boolean" } });
  positionals(given, [], "tinyseek devices [--backend NAME] [--json]");
  if (values.backend !== undefined && !(DAWN_BACKENDS as readonly string[]).includes(values.backend)) {
    throw new UsageError(`--backend: expected one of Dawn's backends (${DAWN_BACKENDS.join(", ")}), got ${JSON.stringify(values.backend)}`);
  }
  const { openDevice } = await import("../../gpu/device.ts");
  const gpu = await openDevice({ dawnBackend: values.backend });
  try {
    const a = gpu.adapter;
    if (values.json) {
      io.out(JSON.stringify(a, null, 2));
      return 0;
    }
    printTable(io, [
      { field: "adapter", value: a.name },
      { field: "vendor", value: a.vendor },
      { field: "architecture", value: a.architecture },
      { field: "backend", value: a.backendType },
      { field: "software", value: a.software ? "yes (CPU rasteriser: timings are CPU figures)" : "no" },
      ...Object.entries(a.limits).map(([field, value]) => ({ field, value: String(value) })),
    ]);
    io.out(`features: ${a.features.join(", ")}`);
    return 0;
  } finally {
    gpu.close();
  }
}
