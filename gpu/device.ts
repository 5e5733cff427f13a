// Opening and closing a WebGPU device. In a browser we use navigator.gpu; in Node, Dawn's bindings (the `webgpu`
// package). Without a GPU, Dawn runs over Vulkan on Mesa's lavapipe (.ci/lavapipe.sh installs it). When no adapter
// comes back we say which piece is missing (Vulkan loader, Vulkan driver, Dawn itself) rather than "null". Dawn's
// native warnings while the device opens go through gpu/native-stderr.ts, which keeps its known noise off stderr.

import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TinyseekError } from "../src/errors.ts";
import { RAISED_LIMITS, summarise, type GpuDevice } from "./adapter.ts";
import { captureNative, type Captured } from "./native-stderr.ts";

export type { AdapterSummary, GpuDevice } from "./adapter.ts";

export interface DeviceOptions {
  /** Dawn backend: "vulkan", "metal", "d3d12", ... (default: the platform's native one). */
  dawnBackend?: string;
  /** Dawn adapter name, as Dawn lists it when given a wrong one. */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
  /** NaN-filled output buffers, as the WASM backend's check mode (see gpu/context.ts). */
  check?: boolean;
}

const nativeBackend: Record<string, string> = { linux: "vulkan", darwin: "metal", win32: "d3d12" };

export async function openDevice(options: DeviceOptions = {}): Promise<GpuDevice> {
  const { gpu, backendType, created } = await findGpu(options);
  // Dawn prints its warnings inside these calls (gpu/native-stderr.ts): captured, and written out once the outcome
  // is known, without the known noise if the adapter and device came, all of it if not.
  const capture = <T>(call: () => T): Captured<T> => (created ? captureNative(call) : { value: call(), release: () => {} });
  const requested = capture(() => gpu.requestAdapter({ powerPreference: options.powerPreference ?? "high-performance" }));
  const adapter = await requested.value.catch((error: unknown) => {
    created?.release(false);
    requested.release(false);
    throw error;
  });
  created?.release(adapter !== null);
  requested.release(adapter !== null);
  if (!adapter) throw new TinyseekError(`webgpu: no GPU adapter found: ${diagnose(systemProbe())}`);
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const opened = capture(() => adapter.requestDevice({ requiredLimits }));
  let device: GPUDevice | undefined = await opened.value.catch((error: unknown) => {
    opened.release(false);
    throw error;
  });
  opened.release(true);
  const summary = summarise(adapter, backendType);
  // Lost devices report once; destroy() also "loses" the device, which is not worth a message.
  void device.lost.then((info) => {
    if (info.reason !== "destroyed") console.error(`webgpu: device lost: ${info.message}`);
  });
  // Dawn destroys its instance when the GPU object is collected, even with a live device; the device's event
  // processing then crashes the process (a mutex error in InstanceBase::ProcessEvents). Hold both until close().
  let keepAlive: unknown[] | undefined = [gpu, adapter];
  return {
    get device() {
      if (!device) throw new TinyseekError("webgpu: the device was closed");
      return device;
    },
    adapter: summary,
    close() {
      device?.destroy();
      device = undefined;
      keepAlive = undefined;
    },
  };
}

/** The GPU object; `created` holds what Dawn printed while creating it (none in a browser). */
async function findGpu(options: DeviceOptions): Promise<{ gpu: GPU; backendType: string; created?: Captured<GPU> }> {
  const browserGpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (browserGpu) return { gpu: browserGpu, backendType: "browser" };
  // Mesa's Vulkan drivers want a runtime directory; CI shells often have none.
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), "tinyseek-xdg-"));
  let dawn: { create(flags: string[]): GPU };
  try {
    dawn = (await import("webgpu")) as unknown as typeof dawn;
  } catch (error) {
    const first = (error as Error).message.split("\n")[0];
    throw new TinyseekError(`webgpu: Dawn's Node bindings (npm package "webgpu") could not load: ${first}`);
  }
  const backendType = options.dawnBackend ?? nativeBackend[process.platform] ?? "default";
  const flags = backendType === "default" ? [] : [`backend=${backendType}`];
  if (options.adapter) flags.push(`adapter=${options.adapter}`);
  const created = captureNative(() => dawn.create(flags));
  return { gpu: created.value, backendType, created };
}

/** What the machine has for Vulkan: injected so that the diagnosis is testable without breaking the machine. */
export interface SystemProbe {
  platform: string;
  /** A Vulkan loader library was found. */
  loader: boolean;
  /** Vulkan driver manifests (ICD json files) found, e.g. lvp_icd.json. */
  drivers: string[];
  /** The environment variable that chose the manifests instead of the standard directories, if any. */
  override?: string;
}

const LOADER_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu"];
const ICD_DIRS = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];

export function systemProbe(): SystemProbe {
  const variable = ["VK_DRIVER_FILES", "VK_ICD_FILENAMES"].find((name) => process.env[name]);
  const override = variable ? process.env[variable] : undefined;
  const drivers = override
    ? override.split(":").filter((f) => f && existsSync(f))
    : ICD_DIRS.flatMap((dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".json")) : []));
  return {
    platform: process.platform,
    loader: LOADER_DIRS.some((dir) => existsSync(join(dir, "libvulkan.so.1"))),
    drivers,
    override: variable,
  };
}

const INSTALL_HINT = "install libvulkan1 and mesa-vulkan-drivers (Mesa >= 25, e.g. from bookworm-backports: .ci/lavapipe.sh)";

/** One sentence naming the missing piece. */
export function diagnose(probe: SystemProbe): string {
  if (probe.platform !== "linux") return "the platform's GPU driver offered no adapter to Dawn";
  if (!probe.loader) return `the Vulkan loader (libvulkan.so.1) is missing: ${INSTALL_HINT}`;
  if (probe.drivers.length === 0 && probe.override) {
    return `${probe.override} names no existing Vulkan driver manifest: unset it, or ${INSTALL_HINT}`;
  }
  if (probe.drivers.length === 0) {
    return `no Vulkan driver is installed (no ICD manifest in ${ICD_DIRS.join(", ")}): ${INSTALL_HINT}`;
  }
  return `Vulkan drivers ${probe.drivers.join(", ")} offered no usable adapter (Mesa too old for Dawn?): ${INSTALL_HINT}`;
}
