// Golden cases for segmented attention (spec/segmented-attention.md) and NSA (spec/sparse-attention.md): length 1,
// lengths that are not multiples of S, l, d or l', with and without memory, shared and separate NSA projections,
// GQA, prefill followed by token-by-token decoding through the state, and queries whose blocks are chosen by
// score. They run whole layers, so they need synchronous kernels (linear, rope, attention, softmax, matmul come
// from the backend) and report "not supported" elsewhere. NSA's selected blocks are an exact I32 output; inputs
// are redrawn until every score-based choice has a margin of at least MARGIN in p_slc, so float32 probabilities
// cannot flip one.

import { concatTime } from "../attention/heads.ts";
import { sliceTime } from "../attention/masked.ts";
import {
  createSegmentedState, initSegmented, resolveSegmentedConfig, segmentedAttention, type SegmentedConfig, type SegmentedWeights,
} from "../attention/segmented.ts";
import { createSparseState, initSparse, resolveSparseConfig, sparseAttentionTraced, type SparseConfig, type SparseWeights } from "../attention/sparse.ts";
import { NotSupportedError, referenceBackend, type Backend } from "../backend.ts";
import { TinyseekError } from "../errors.ts";
import type { Tolerance } from "../io/compare.ts";
import { randBounded, Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import type { GoldenCase, TensorMap } from "./case.ts";

/**
 * A layer is linear → attention over at most 32 keys → linear, each in float32 on a backend: the per-op bars of
 * the core (1e-5) compound over three ops with O(1) values (spec/segmented-attention.md, "Tolerance").
 */
const LAYER: Tolerance = { rtol: 1e-5, atol: 4e-6, nmse: 1e-10 };
const EXACT: Tolerance = { rtol: 0, atol: 0, nmse: 0, exact: true };
/** Smallest gap in p_slc between a block chosen by score and one left out (float32 p_cmp errs by ~1e-7). */
const MARGIN = 1e-4;

interface Spec<C> {
  name: string;
  config: C;
  B: number;
  T: number;
  /** Tokens fed in one prefill call; the rest go one at a time through the state. Default: all at once. */
  prefill?: number;
}

const SEGMENTED: Spec<SegmentedConfig>[] = [
  { name: "t1", config: { hidden_size: 8, num_attention_heads: 2, segment_size: 4, segment_overlap: 2 }, B: 1, T: 1 },
  { name: "t11-s4-w2", config: { hidden_size: 16, num_attention_heads: 4, segment_size: 4, segment_overlap: 2 }, B: 2, T: 11 },
  { name: "memory.t1-m2", config: { hidden_size: 8, num_attention_heads: 2, segment_size: 4, segment_overlap: 2, memory_slots: 2 }, B: 1, T: 1 },
  { name: "memory.t13-s4-w6-m3", config: { hidden_size: 16, num_attention_heads: 2, segment_size: 4, segment_overlap: 6, memory_slots: 3 }, B: 2, T: 13 },
  { name: "memory.learned.t10-s3-w1-m1", config: { hidden_size: 8, num_attention_heads: 1, segment_size: 3, segment_overlap: 1, memory_slots: 1, absolute_position: "learned", max_position_embeddings: 12 }, B: 1, T: 10 },
  { name: "memory.decode.t11-s4-w2-m2", config: { hidden_size: 16, num_attention_heads: 4, segment_size: 4, segment_overlap: 2, memory_slots: 2 }, B: 1, T: 11, prefill: 6 },
  { name: "memory.gqa.t9-s4-w2-m2", config: { hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2, segment_size: 4, segment_overlap: 2, memory_slots: 2 }, B: 1, T: 9, prefill: 5 },
];

const SPARSE: Spec<SparseConfig>[] = [
  { name: "t1", config: { hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2 }, B: 1, T: 1 },
  { name: "tiny.t29-gqa", config: { hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2 }, B: 1, T: 29 },
  { name: "shared-kv.t23-l6-d3-l9-n3-w5", config: { hidden_size: 8, num_attention_heads: 2, sparse_block: 6, sparse_stride: 3, sparse_select_block: 9, sparse_select_count: 3, sparse_window: 5, sparse_shared_kv: true }, B: 2, T: 23 },
  { name: "l4-d2-l4.t17", config: { hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1, sparse_block: 4, sparse_stride: 2, sparse_select_block: 4, sparse_select_count: 3, sparse_window: 3 }, B: 1, T: 17 },
  { name: "decode.t27-gqa", config: { hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2 }, B: 1, T: 27, prefill: 19 },
  // Selection by score: queries 16 to 28 see 5 to 8 selection blocks of which n = 4 are taken, block 0 and the two
  // most recent forced, so p_slc picks the fourth among up to five candidates (in the cases above every query sees
  // at most n blocks, or n = 3 leaves nothing to score). Prefill, then decoding through the state.
  { name: "score.t29-l4-d2-l4-n4", config: { hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1, sparse_block: 4, sparse_stride: 2, sparse_select_block: 4, sparse_select_count: 4, sparse_window: 3 }, B: 2, T: 29, prefill: 21 },
];

/** Runs `step` over x [B, T, D] as one prefill of `prefill` tokens and then one token at a time. */
function prefillThenDecode<S>(x: Tensor, prefill: number, state: S, step: (chunk: Tensor, state: S) => Tensor): Tensor {
  const T = x.shape[1]!;
  let out = step(sliceTime(x, 0, prefill), state);
  for (let t = prefill; t < T; t++) out = concatTime(out, step(sliceTime(x, t, t + 1), state));
  return out;
}

const needKernels = (backend: Backend, what: string) => {
  if (!backend.kernels) throw new NotSupportedError(`${backend.name} has no synchronous kernels for ${what}`);
  return backend.kernels;
};

function segmentedCase(spec: Spec<SegmentedConfig>, seed: number): GoldenCase {
  const resolved = resolveSegmentedConfig(spec.config);
  const prefill = spec.prefill ?? spec.T;
  return {
    name: `attention.segmented.${spec.name}`,
    component: "attention.segmented",
    config: { ...resolved, B: spec.B, T: spec.T, prefill },
    seed,
    build() {
      const rng = new Random(seed);
      const weights = initSegmented(rng, spec.config, 1 / Math.sqrt(resolved.hidden_size));
      const x = randBounded(rng, [spec.B, spec.T, resolved.hidden_size]);
      return { inputs: { x }, params: weights as unknown as Record<string, Tensor> };
    },
    run(backend, inputs: TensorMap, params) {
      const kernels = needKernels(backend, "segmented attention");
      const weights = params as unknown as SegmentedWeights;
      const state = createSegmentedState(spec.config, spec.B);
      const out = prefillThenDecode(inputs.x as Tensor, prefill, state, (chunk, s) => segmentedAttention(chunk, weights, spec.config, s, kernels));
      return { out };
    },
    tolerance: { out: LAYER },
  };
}

function sparseCase(spec: Spec<SparseConfig>, seed: number): GoldenCase {
  const resolved = resolveSparseConfig(spec.config);
  const prefill = spec.prefill ?? spec.T;
  const run = (x: Tensor, weights: SparseWeights, backend: Backend) => {
    const kernels = needKernels(backend, "NSA sparse attention");
    const state = createSparseState(spec.config, spec.B);
    const selected: Int32Array[] = [];
    let margin = Infinity;
    const out = prefillThenDecode(x, prefill, state, (chunk, s) => {
      const { out, trace } = sparseAttentionTraced(chunk, weights, spec.config, s, kernels);
      selected.push(trace.selected);
      margin = Math.min(margin, trace.selectionMargin);
      return out;
    });
    return { out, selected: selectedByQuery(selected, spec, resolved.Hkv, resolved.blocks.selectCount), margin };
  };
  return {
    name: `attention.sparse.${spec.name}`,
    component: "attention.sparse",
    config: { ...spec.config, ...resolved, B: spec.B, T: spec.T, prefill },
    seed,
    build() {
      const rng = new Random(seed);
      for (let attempt = 0; attempt < 20; attempt++) {
        const weights = initSparse(rng, spec.config, 1 / Math.sqrt(resolved.D));
        const x = randBounded(rng, [spec.B, spec.T, resolved.D]);
        const { margin } = run(x, weights, referenceBackend);
        if (margin >= MARGIN) return { inputs: { x }, params: weights as unknown as Record<string, Tensor> };
      }
      throw new TinyseekError(`golden case attention.sparse.${spec.name}: no draw with a selection margin >= ${MARGIN}`);
    },
    run(backend, inputs: TensorMap, params) {
      const { out, selected } = run(inputs.x as Tensor, params as unknown as SparseWeights, backend);
      return { out, selected };
    },
    tolerance: { out: LAYER, selected: EXACT },
  };
}

/** Per-call [B, Hkv, Tcall, n] selections laid out as one [B, Hkv, T, n] tensor. */
function selectedByQuery(calls: Int32Array[], spec: Spec<SparseConfig>, Hkv: number, n: number): { shape: number[]; data: Int32Array } {
  const data = new Int32Array(spec.B * Hkv * spec.T * n);
  let t0 = 0;
  for (const call of calls) {
    const Tc = call.length / (spec.B * Hkv * n);
    for (let plane = 0; plane < spec.B * Hkv; plane++) {
      data.set(call.subarray(plane * Tc * n, (plane + 1) * Tc * n), (plane * spec.T + t0) * n);
    }
    t0 += Tc;
  }
  return { shape: [spec.B, Hkv, spec.T, n], data };
}

export function segmentedSparseGoldenCases(): GoldenCase[] {
  return [
    ...SEGMENTED.map((spec, i) => segmentedCase(spec, 3100 + i)),
    ...SPARSE.map((spec, i) => sparseCase(spec, 3200 + i)),
  ];
}
