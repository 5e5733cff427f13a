// The WebGPU backend in a browser: a device from navigator.gpu (limits raised as in Node, gpu/adapter.ts), the
// same kernels and forward as Node's (gpu/backend.ts); reads are asynchronous. Golden component cases that need
// synchronous kernels run in a Web Worker over these kernels (web/platform/sync-bridge.ts).

import { TinyseekError } from "../../src/errors.ts";
import { RAISED_LIMITS, summarise } from "../../gpu/adapter.ts";
import { backendOnDevice, type WebGpuBackend } from "../../gpu/backend.ts";
import { BrowserBridge } from "./sync-bridge.ts";

export async function createBrowserWebGpu(): Promise<WebGpuBackend> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new TinyseekError("webgpu: this browser has no navigator.gpu (WebGPU is off, or the page is not a secure context)");
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new TinyseekError("webgpu: navigator.gpu offered no adapter (no usable GPU or driver)");
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  let device: GPUDevice | undefined = await adapter.requestDevice({ requiredLimits });
  void device.lost.then((info) => {
    if (info.reason !== "destroyed") console.error(`webgpu: device lost: ${info.message}`);
  });
  const opened = {
    get device() {
      if (!device) throw new TinyseekError("webgpu: the device was closed");
      return device;
    },
    adapter: { ...summarise(adapter, "browser"), name: adapterName(adapter.info) },
    close() {
      device?.destroy();
      device = undefined;
    },
  };
  return backendOnDevice(opened, {}, (kernels) => BrowserBridge.open(kernels));
}

/** Browsers often leave description and device empty (privacy): the vendor and architecture then name it. */
function adapterName(info: GPUAdapterInfo): string {
  return info.description || info.device || [info.vendor, info.architecture].filter(Boolean).join(" ") || "unknown adapter";
}
