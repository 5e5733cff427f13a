// What a WebGPU device is to this project, wherever it was opened (Dawn in Node, gpu/device.ts; a browser's
// navigator.gpu, web/platform/webgpu.ts): the adapter summarised, the limits raised to the adapter's maximum.

export interface AdapterSummary {
  name: string;
  vendor: string;
  architecture: string;
  description: string;
  /** The native API under Dawn (vulkan, metal, d3d12) or "browser". */
  backendType: string;
  /** True for CPU implementations such as lavapipe/llvmpipe: their timings are CPU figures. */
  software: boolean;
  limits: Record<string, number>;
  features: string[];
}

export interface GpuDevice {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  /** Destroys the device and drops every reference to it, so the process can exit. Idempotent. */
  close(): void;
}

/** Limits we ask for at their adapter maximum: big matrices and big workgroup tiles need them. */
export const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxStorageBuffersPerShaderStage",
] as const;

export function summarise(adapter: GPUAdapter, backendType: string): AdapterSummary {
  const info = adapter.info;
  const limits: Record<string, number> = {};
  // GPUSupportedLimits exposes its fields as getters on the prototype: walk them with for..in.
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === "number") limits[key] = value;
  }
  const name = info.description || info.device || info.vendor || "unknown adapter";
  return {
    name,
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    backendType,
    software: /llvmpipe|lavapipe|swiftshader|software/i.test(`${info.architecture} ${info.description} ${info.device}`),
    limits,
    features: [...adapter.features].sort(),
  };
}
