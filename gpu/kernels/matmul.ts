// Tiled matrix product C = A·B or A·Bᵀ, batched. A workgroup of 16×16 threads computes a 64×64 tile of C, each
// thread a 4×4 block held in four vec4 accumulators; A and B stream through workgroup memory 16 values of K at a
// time. Loads are vec4 when K (and N, for an untransposed B) is a multiple of 4, scalar otherwise, so any shape
// works. Offsets and batch strides in the uniform let one buffer hold many matrices (stacked MoE experts).
// B may be a weight kept as BF16 pairs in u32 words (src/bf16.ts): WGSL has no 16-bit float of that kind, so the
// kernels read B through bf/bf4 below, which widen with bit operations (exact), and every product and sum is the
// float32 kernel's, so the results are bit for bit those on the widened weight (test/bf16-weights.test.ts).

import { argError } from "../../src/errors.ts";
import { numel } from "../../src/tensor.ts";
import type { GpuContext, GpuTensor } from "../context.ts";
import type { GemmArgs } from "../../src/device/kernels.ts";

const TILE = 64;

/** B's element i as float32 from BF16 pairs: element 2j is word j's low half, 2j + 1 its high half. */
const BF16_READS = /* wgsl */ `
fn bf(i: u32) -> f32 {
  let w = B[i >> 1u];
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));
}
fn bf4(i: u32) -> vec4<f32> { // i a multiple of 4
  let w0 = B[i >> 1u]; let w1 = B[(i >> 1u) + 1u];
  return bitcast<vec4<f32>>(vec4<u32>(w0 << 16u, w0 & 0xffff0000u, w1 << 16u, w1 & 0xffff0000u));
}`;

/** WGSL reading B's element at `index` (scalar) or the four from it (vec4), float32 or BF16. */
const readB = (bf16: boolean, index: string) => bf16 ? `bf(${index})` : `B[${index}]`;
const readB4 = (bf16: boolean, index: string) => bf16 ? `bf4(${index})` : `B[(${index}) / 4u]`;
const bTypes = (bf16: boolean, vec: boolean) => bf16 ? "u32" : vec ? "vec4<f32>" : "f32";

function source(transB: boolean, vecA: boolean, vecB: boolean, bf16 = false): string {
  const loadA = vecA
    ? `let v = select(vec4<f32>(0.0), A[(aBase + gr * p.K + gk) / 4u], gr < p.M && gk < p.K);`
    : `var v = vec4<f32>(0.0);
       for (var c = 0u; c < 4u; c++) { if (gr < p.M && gk + c < p.K) { v[c] = A[aBase + gr * p.K + gk + c]; } }`;
  // Both layouts end with Bs[k * 64 + n] holding B(k0 + k, col0 + n).
  const loadB = transB
    ? `{ let n = t / 4u; let kq = t % 4u; let gn = col0 + n; let gk = k0 + kq * 4u;
         ${vecB
           ? `let v = select(vec4<f32>(0.0), ${readB4(bf16, "bBase + gn * p.K + gk")}, gn < p.N && gk < p.K);`
           : `var v = vec4<f32>(0.0);
              for (var c = 0u; c < 4u; c++) { if (gn < p.N && gk + c < p.K) { v[c] = ${readB(bf16, "bBase + gn * p.K + gk + c")}; } }`}
         for (var c = 0u; c < 4u; c++) { Bs[(kq * 4u + c) * 64u + n] = v[c]; } }`
    : `{ let kk = t / 16u; let nq = t % 16u; let gk = k0 + kk; let gn = col0 + nq * 4u;
         ${vecB
           ? `let v = select(vec4<f32>(0.0), ${readB4(bf16, "bBase + gk * p.N + gn")}, gk < p.K && gn < p.N);`
           : `var v = vec4<f32>(0.0);
              for (var c = 0u; c < 4u; c++) { if (gk < p.K && gn + c < p.N) { v[c] = ${readB(bf16, "bBase + gk * p.N + gn + c")}; } }`}
         for (var c = 0u; c < 4u; c++) { Bs[kk * 64u + nq * 4u + c] = v[c]; } }`;
  return /* wgsl */ `
struct P { M: u32, N: u32, K: u32, strideA: u32, strideB: u32, strideC: u32, offA: u32, offB: u32, offC: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<${vecA ? "vec4<f32>" : "f32"}>;
@group(0) @binding(2) var<storage, read> B: array<${bTypes(bf16, vecB)}>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;${bf16 ? BF16_READS : ""}
var<workgroup> As: array<f32, 1024>; // [k 0..15][row 0..63]: As[k * 64 + r] = A(row0 + r, k0 + k)
var<workgroup> Bs: array<f32, 1024>; // [k 0..15][col 0..63]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.y * 16u + lid.x;
  let row0 = wg.y * ${TILE}u;
  let col0 = wg.x * ${TILE}u;
  let aBase = p.offA + wg.z * p.strideA;
  let bBase = p.offB + wg.z * p.strideB;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    {
      let r = t / 4u; let kq = t % 4u; let gr = row0 + r; let gk = k0 + kq * 4u;
      ${loadA}
      for (var c = 0u; c < 4u; c++) { As[(kq * 4u + c) * 64u + r] = v[c]; }
    }
    ${loadB}
    workgroupBarrier();
    for (var k = 0u; k < 16u; k++) {
      let ai = k * 64u + lid.y * 4u;
      let bi = k * 64u + lid.x * 4u;
      let a = vec4<f32>(As[ai], As[ai + 1u], As[ai + 2u], As[ai + 3u]);
      let b = vec4<f32>(Bs[bi], Bs[bi + 1u], Bs[bi + 2u], Bs[bi + 3u]);
      acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
      acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
      acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
      acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  let cBase = p.offC + wg.z * p.strideC;
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + lid.x * 4u + j;
      if (row < p.M && col < p.N) { C[cBase + row * p.N + col] = acc[i][j]; }
    }
  }
}`;
}

const sources = new Map<string, string>();
function cached(transB: boolean, vecA: boolean, vecB: boolean, bf16: boolean): string {
  const key = `${transB}${vecA}${vecB}${bf16}`;
  let code = sources.get(key);
  if (!code) sources.set(key, (code = source(transB, vecA, vecB, bf16)));
  return code;
}

// x·Wᵀ for at most 4 rows (a decode step): a 64×64 tile would leave 60 of its 64 rows idle, so instead a workgroup
// of 64 threads owns one output column n, each thread strides over K for the (up to) four rows, and a vec4 tree
// reduction finishes the dot products. Rows past M read row 0 and are not written.
const gemv = (bf16: boolean) => /* wgsl */ `
struct P { M: u32, N: u32, K: u32, strideA: u32, strideB: u32, strideC: u32, offA: u32, offB: u32, offC: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<${bTypes(bf16, false)}>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;${bf16 ? BF16_READS : ""}
var<workgroup> red: array<vec4<f32>, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let n = wg.x + wg.y * nw.x;
  if (n >= p.N) { return; }
  let aBase = p.offA + wg.z * p.strideA;
  let bBase = p.offB + wg.z * p.strideB + n * p.K;
  let rows = vec4<u32>(0u, select(0u, 1u, p.M > 1u), select(0u, 2u, p.M > 2u), select(0u, 3u, p.M > 3u)) * p.K + aBase;
  var acc = vec4<f32>(0.0);
  for (var k = lid; k < p.K; k += 64u) {
    let a = vec4<f32>(A[rows.x + k], A[rows.y + k], A[rows.z + k], A[rows.w + k]);
    acc = fma(a, vec4<f32>(${readB(bf16, "bBase + k")}), acc);
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let cBase = p.offC + wg.z * p.strideC + n;
    let r = red[0];
    C[cBase] = r.x;
    if (p.M > 1u) { C[cBase + p.N] = r.y; }
    if (p.M > 2u) { C[cBase + 2u * p.N] = r.z; }
    if (p.M > 3u) { C[cBase + 3u * p.N] = r.w; }
  }
}`;
const GEMV = gemv(false), GEMV_BF16 = gemv(true);

/**
 * Writes C into `c` (which must hold offC + batches·strideC elements). `bf16`: b holds BF16 pairs (a weight's
 * GpuTensor.bf16), offsets and strides still counted in elements.
 */
export function gemmInto(ctx: GpuContext, a: GPUBuffer, b: GPUBuffer, c: GPUBuffer, args: GemmArgs, bf16 = false): void {
  const { M, N, K, transB, batches = 1 } = args;
  const { strideA = M * K, strideB = K * N, strideC = M * N, offA = 0, offB = 0, offC = 0 } = args;
  if (batches > 65535) throw argError("batches", "at most 65535 matrices per product", batches);
  if (transB && M <= 4) {
    const y = Math.ceil(N / 65535);
    ctx.dispatch(bf16 ? GEMV_BF16 : GEMV, [a, b, c], [M, N, K, strideA, strideB, strideC, offA, offB, offC], [Math.ceil(N / y), y, batches]);
    return;
  }
  const aligned = (...xs: number[]) => xs.every((x) => x % 4 === 0);
  const vecA = aligned(K, offA, strideA);
  const vecB = transB ? aligned(K, offB, strideB) : aligned(N, offB, strideB);
  const code = cached(transB, vecA, vecB, bf16);
  const params = [M, N, K, strideA, strideB, strideC, offA, offB, offC];
  ctx.dispatch(code, [a, b, c], params, [Math.ceil(N / TILE), Math.ceil(M / TILE), batches]);
}

/** a [..., M, K] · b [K, N]. */
export function matmul(ctx: GpuContext, a: GpuTensor, b: GpuTensor): GpuTensor {
  const K = a.shape[a.shape.length - 1]!;
  const N = b.shape[1]!;
  const M = K === 0 ? numel(a.shape.slice(0, -1)) : numel(a.shape) / K;
  const out = ctx.empty([...a.shape.slice(0, -1), N]);
  gemmInto(ctx, a.buffer, b.buffer, out.buffer, { M, N, K, transB: false });
  return out;
}

/** a [..., M, K] · b [..., K, N] → [..., M, N]. */
export function bmm(ctx: GpuContext, a: GpuTensor, b: GpuTensor): GpuTensor {
  const [M, K] = a.shape.slice(-2) as [number, number];
  const N = b.shape[b.shape.length - 1]!;
  const batches = numel(a.shape.slice(0, -2));
  const out = ctx.empty([...a.shape.slice(0, -2), M, N]);
  gemmInto(ctx, a.buffer, b.buffer, out.buffer, { M, N, K, transB: false, batches });
  return out;
}

/** x [..., in] · Wᵀ with W [out, in] (read as BF16 where the weight is kept so). */
export function linear(ctx: GpuContext, x: GpuTensor, weight: GpuTensor): GpuTensor {
  const [N, K] = weight.shape as [number, number];
  const M = numel(x.shape.slice(0, -1));
  const out = ctx.empty([...x.shape.slice(0, -1), N]);
  const bf16 = weight.bf16;
  gemmInto(ctx, x.buffer, bf16 ?? weight.buffer, out.buffer, { M, N, K, transB: true }, bf16 !== undefined);
  return out;
}
