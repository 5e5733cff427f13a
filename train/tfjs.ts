// tfjs set up for training: tfjs-core with tfjs-backend-wasm (XNNPACK, SIMD) and every gradient registered.
// tfjs-core's Node bundle registers no gradient (the @tensorflow/tfjs union package does that, and we do not
// depend on it), and its register_all_gradients.js cannot load under Node's ESM rules (it imports a directory);
// each gradient module it lists loads on its own (all but Prod's, which imports the whole library and is not
// needed here), so we import those and register their configs.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import * as tf from "@tensorflow/tfjs-core";

const require = createRequire(import.meta.url);

export async function setUpTfjs(): Promise<typeof tf> {
  const core = dirname(require.resolve("@tensorflow/tfjs-core/package.json"));
  const list = readFileSync(`${core}/dist/register_all_gradients.js`, "utf8");
  for (const [, name, file] of list.matchAll(/import \{ (\w+GradConfig) \} from '\.\/gradients\/(\w+)'/g)) {
    if (file === "Prod_grad") continue;
    const module = (await import(`@tensorflow/tfjs-core/dist/gradients/${file}.js`)) as Record<string, tf.GradConfig>;
    tf.registerGradient(module[name!]!);
  }
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  wasm.setWasmPaths(`${dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"))}/dist/`);
  await tf.setBackend("wasm");
  untransposedMatMul();
  return tf;
}

/**
 * tfjs-backend-wasm sends a matMul to XNNPACK only when neither operand is transposed and the batch is 1
 * (batch_mat_mul_impl.cc); with transposeA or transposeB it runs a scalar loop, 15-20× slower here (measured: 0.8
 * against 13 GFLOP/s for [1024, 128]·[128, 384]). Every 2-D matMul of training's gradients transposes an operand,
 * so this wraps the kernel: transpose the operand first, then multiply untransposed. Same numbers up to float32
 * summation order (gradients checked against the unwrapped kernel: 3e-5 relative); no gradient is touched.
 * Batched matMuls (attention's [B, H, …]) keep the original kernel: slicing them costs more than it saves.
 */
function untransposedMatMul(): void {
  const original = tf.getKernel("BatchMatMul", "wasm")!;
  const transpose = tf.getKernel("Transpose", "wasm")!;
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel({
    ...original,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      if ((!transposeA && !transposeB) || a.shape.length !== 2 || b.shape.length !== 2) return original.kernelFunc({ inputs, backend, attrs });
      const swap = (t: tf.TensorInfo) => transpose.kernelFunc({ inputs: { x: t }, backend, attrs: { perm: [1, 0] } }) as tf.TensorInfo;
      const [at, bt] = [transposeA ? swap(a) : a, transposeB ? swap(b) : b];
      const out = original.kernelFunc({ inputs: { a: at, b: bt }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
      for (const t of [at, bt]) if (t !== a && t !== b) (backend as tf.KernelBackend).disposeData(t.dataId);
      return out;
    },
  });
}
