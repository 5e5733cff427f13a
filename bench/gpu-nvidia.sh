#!/usr/bin/env bash
# The WebGPU kernels on an NVIDIA GPU, through Dawn's Vulkan backend: GFLOP/s for square matmul 1024 to 8192 and
# causal attention, with the adapter's name. Needs the NVIDIA driver's Vulkan ICD (nvidia_icd.json, from the
# driver package) and the Vulkan loader (libvulkan1); no CUDA. Refuses to report a software adapter as a GPU.
#
#   bench/gpu-nvidia.sh                       full run, rows in bench/results/gpu-nvidia.json
#   bench/gpu-nvidia.sh --dry-run             small sizes on whatever adapter exists (lavapipe included)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

dry=0
[ "${1:-}" = "--dry-run" ] && dry=1

if [ "$dry" = 0 ]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    || echo "gpu-nvidia: nvidia-smi not found (the Vulkan ICD is what matters)" >&2
  icd=$(ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json 2>/dev/null | head -1 || true)
  [ -n "$icd" ] || { echo "gpu-nvidia: no NVIDIA Vulkan ICD (nvidia_icd.json): install the driver's Vulkan support" >&2; exit 1; }
  # Only the NVIDIA driver, so Dawn cannot fall back to lavapipe.
  export VK_ICD_FILENAMES="$icd"
fi

adapter=$(npx tsx src/cli.ts devices --json 2>/dev/null) || { npx tsx src/cli.ts devices >&2; exit 1; }
software=$(node -e 'console.log(JSON.parse(process.argv[1]).software)' "$adapter")
name=$(node -e 'console.log(JSON.parse(process.argv[1]).name)' "$adapter")
echo "adapter: $name"
if [ "$dry" = 0 ] && [ "$software" = "true" ]; then
  echo "gpu-nvidia: the adapter is a software rasteriser, not the GPU" >&2
  exit 1
fi

mkdir -p bench/results
if [ "$dry" = 1 ]; then
  npx tsx bench/gpu.ts --sizes 128,256 --attention 128 --filter 'matmul|attention' --time 100
else
  npx tsx bench/gpu.ts --sizes 1024,2048,4096,8192 --attention 1024,2048,4096 --filter 'matmul|attention' \
    --json bench/results/gpu-nvidia.json
fi
