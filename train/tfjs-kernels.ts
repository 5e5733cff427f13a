// tfjs as a backend of the one forward (src/device/kernels.ts): every kernel is a differentiable tfjs op, so the
// model that trains is src/model/forward.ts itself, and tf.variableGrads differentiates it.
//   values    a TfValue wraps a tf.Tensor. tf tensors are immutable, so the kernels that write in place (writeRows,
//             gemm: caches and MLA's absorbed heads) replace the wrapped tensor functionally (slices and concat):
//             the tape sees a pure function and the gradient flows through the cache into the keys and values.
//   weights   `weight(t)` is the trainable tf.Variable made for that host Float32Array (train/params.ts); a tensor
//             with no variable (none in training) becomes a constant, made once and kept.
//   memory    release and free do nothing: during a gradient computation the tape still needs every tensor. The
//             caller runs each forward inside tf.tidy (or variableGrads inside tf.tidy), which disposes them all.
//             A value therefore lives no longer than the tidy scope that made it: one forward, its own caches.
//   reads     dataSync: synchronous, so the forward runs under runSync (src/device/drive.ts).
// Rows: embed, gatherRows and addRows select rows with one-hot matmuls (exact for finite values): tfjs-backend-wasm
// has no kernel for gather's gradient (UnsortedSegmentSum).
// Numbers: float32 throughout (the reference accumulates in float64), the rotary angles from src/rope.ts's one
// table, masked attention scores at -1e9 (exp gives exactly 0 after the max is subtracted); the indexer's scores
// after each query's position are -Infinity, as the kernel interface defines them.
// The MoE runs every expert on every token, masked by the routing (16 experts of width 64: one matmul beats a
// dispatch in tfjs), and computes the chosen experts' weights from the router's logits, as src/moe/router.ts does
// (sigmoid or softmax scores; the chosen ones, divided by their sum when norm_topk_prob or sigmoid; times
// routed_scaling_factor), so the gradient reaches the gate through them, as DeepSeek-V3 trains. Which experts are
// chosen is the host's routeTokens decision: not differentiable.
// Side channel: each MoE call is recorded (its logits tensor, routing and config) for the sequence-wise balance
// loss the trainer adds (train/loss.ts); `takeMoeCalls()` hands them over and starts a new list.

import * as tf from "@tensorflow/tfjs-core";
import type { Backend } from "../src/backend.ts";
import { runSync } from "../src/device/drive.ts";
import type { AttendArgs, AttentionArgs, DeviceKernels, ExpertValues, GemmArgs, IndexScoreArgs, Value } from "../src/device/kernels.ts";
import { opsOver, type Ops } from "../src/device/ops.ts";
import { NotSupportedError } from "../src/errors.ts";
import { createCache, type ModelCache } from "../src/model/cache.ts";
import { forwardRows, type ForwardResult, type RowsOptions } from "../src/model/forward.ts";
import type { Model } from "../src/model/weights.ts";
import type { Routing } from "../src/moe/experts.ts";
import type { MoeConfig } from "../src/moe/layer.ts";
import { rotaryTable } from "../src/rope.ts";
import { numel, type Tensor } from "../src/tensor.ts";

/** A value of the tfjs backend: a tf.Tensor, replaced (never mutated) by the kernels that write in place. */
export class TfValue implements Value {
  readonly shape: readonly number[];
  #tensor: tf.Tensor | null;

  constructor(tensor: tf.Tensor | null, shape?: readonly number[]) {
    this.#tensor = tensor;
    this.shape = [...(shape ?? tensor!.shape)];
  }

  /** The tensor (an `empty` value is zeros, made when first read). */
  get t(): tf.Tensor {
    if (!this.#tensor) this.#tensor = tf.zeros([...this.shape]);
    return this.#tensor;
  }

  set t(tensor: tf.Tensor) {
    this.#tensor = tensor;
  }
}

/** One MoE call of a forward, for the balance loss: the router's logits [N, E] as a tensor on the tape. */
export interface MoeCall {
  logits: tf.Tensor2D;
  routing: Routing;
  config: MoeConfig;
}

export interface TfjsKernels extends DeviceKernels<TfValue> {
  /** The MoE calls since the last take, in layer order (reset by taking them). */
  takeMoeCalls(): MoeCall[];
}

const MASKED = -1e9;

/** The tfjs kernels over these variables (host Float32Array → the trainable variable holding that weight). */
export function tfjsKernels(variables: ReadonlyMap<Float32Array, tf.Variable> = new Map()): TfjsKernels {
  const weights = new WeakMap<Float32Array, TfValue>();
  const masks = new Map<string, tf.Tensor>(); // constant attention biases, kept across forwards
  let moeCalls: MoeCall[] = [];
  const wrap = (t: tf.Tensor) => new TfValue(t);

  const weight = (t: Tensor): TfValue => {
    let w = weights.get(t.data);
    if (!w) {
      const v = variables.get(t.data);
      w = new TfValue(v ?? tf.keep(tf.tensor(t.data, [...t.shape])), v ? v.shape : t.shape);
      weights.set(t.data, w);
    }
    return w;
  };

  /** x [..., in] · Wᵀ with W [out, in]. */
  const linear = (x: tf.Tensor, w: tf.Tensor): tf.Tensor => {
    if (x.rank === 2) return tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D, false, true);
    const out = tf.matMul(tf.reshape(x, [-1, x.shape[x.rank - 1]!]) as tf.Tensor2D, w as tf.Tensor2D, false, true);
    return tf.reshape(out, [...x.shape.slice(0, -1), w.shape[0]!]);
  };

  /** One-hot selection matrix [rows, cols] with a 1 at (r, index[r]) where index[r] >= 0: a gather as a matmul,
   *  exact for finite values and differentiable on tfjs-backend-wasm (which has no gather gradient). */
  const selector = (index: Int32Array, cols: number): tf.Tensor2D => {
    const data = new Float32Array(index.length * cols);
    index.forEach((c, r) => {
      if (c >= 0) data[r * cols + c] = 1;
    });
    return tf.tensor2d(data, [index.length, cols]);
  };

  /** Causal mask (and relative decay) added to the scores [H, Tq, Tk]: made once per shape and kept. */
  const attentionBias = (H: number, Tq: number, Tk: number, offset: number, logGammas?: readonly number[]): tf.Tensor => {
    const key = `${H},${Tq},${Tk},${offset},${logGammas?.join(",") ?? ""}`;
    let bias = masks.get(key);
    if (!bias) {
      const planes = logGammas ? H : 1;
      const data = new Float32Array(planes * Tq * Tk);
      for (let h = 0; h < planes; h++) {
        for (let i = 0; i < Tq; i++) {
          for (let j = 0; j < Tk; j++) data[(h * Tq + i) * Tk + j] = j <= offset + i ? (logGammas ? (offset + i - j) * logGammas[h]! : 0) : MASKED;
        }
      }
      bias = tf.keep(tf.tensor3d(data, [planes, Tq, Tk]));
      masks.set(key, bias);
    }
    return bias;
  };

  /** The indexer's causal mask [Tq, Tk]: 0 up to each query's position, -Infinity after; made once per shape. */
  const indexMask = (Tq: number, Tk: number, offset: number): tf.Tensor => {
    const key = `index ${Tq},${Tk},${offset}`;
    let mask = masks.get(key);
    if (!mask) {
      const data = new Float32Array(Tq * Tk);
      for (let t = 0; t < Tq; t++) data.fill(-Infinity, t * Tk + offset + t + 1, (t + 1) * Tk);
      mask = tf.keep(tf.tensor2d(data, [Tq, Tk]));
      masks.set(key, mask);
    }
    return mask;
  };

  /** Rows [off + i·stride, … + rows·cols) of x's elements as [batches, rows, cols]. */
  const strided = (x: tf.Tensor, off: number, stride: number, batches: number, rows: number, cols: number): tf.Tensor3D => {
    const n = rows * cols;
    const flat = tf.reshape(x, [-1]);
    const size = flat.shape[0]!;
    if (off === 0 && (batches === 1 || stride === n) && size === batches * n) return tf.reshape(flat, [batches, rows, cols]);
    if (batches > 1 && stride >= n && size === batches * stride) {
      // Equal blocks with a gap after each part (W_kvb's heads): one strided slice.
      return tf.reshape(tf.slice(tf.reshape(flat, [batches, stride]), [0, off], [batches, n]), [batches, rows, cols]);
    }
    const parts = Array.from({ length: batches }, (_, b) => tf.slice(flat, [off + b * stride], [n]));
    return tf.reshape(parts.length === 1 ? parts[0]! : tf.stack(parts), [batches, rows, cols]);
  };

  const kernels: TfjsKernels = {
    name: "tfjs",
    takeMoeCalls() {
      const calls = moeCalls;
      moeCalls = [];
      return calls;
    },

    weight,
    upload: (t) => wrap(tf.tensor(t.data, [...t.shape])),
    empty: (shape) => new TfValue(null, shape),
    release: () => {},
    free: () => {},
    read: (x) => x.t.dataSync() as Float32Array,

    embed(table, ids) {
      // One-hot · table: tfjs-backend-wasm has no kernel for gather's gradient (UnsortedSegmentSum).
      return wrap(tf.matMul(selector(ids, table.shape[0]!), weight(table).t as tf.Tensor2D));
    },
    gatherRows(x, rows, perPlane = false) {
      // One one-hot [n, N] per plane, batched (x [N, D] is one plane); shared rows are repeated for each plane.
      const [A, N, D] = x.shape.length === 3 ? (x.shape as [number, number, number]) : [1, x.shape[0]!, x.shape[1]!];
      const n = perPlane ? rows.length / A : rows.length;
      const own = perPlane || A === 1 ? rows : Int32Array.from({ length: A * n }, (_, i) => rows[i % n]!);
      const out = tf.matMul(tf.reshape(selector(own, N), [A, n, N]), tf.reshape(x.t, [A, N, D]));
      return wrap(x.shape.length === 3 ? out : tf.reshape(out, [n, D]));
    },
    addRows: (x, update, slots) => wrap(tf.add(x.t, tf.matMul(selector(slots, update.shape[0]!), update.t as tf.Tensor2D))),

    splitHeads(x, H, widths) {
      const T = x.shape[0]!;
      const per = widths.reduce((a, w) => a + w, 0);
      const heads = tf.reshape(x.t, [T, H, per]);
      const parts = widths.length === 1 ? [heads] : tf.split(heads, [...widths], 2);
      return parts.map((p, i) => wrap(H === 1 ? tf.reshape(p, [1, T, widths[i]!]) : tf.transpose(p, [1, 0, 2])));
    },
    mergeHeads(x) {
      const [H, T, d] = x.shape as [number, number, number];
      return wrap(tf.reshape(H === 1 ? x.t : tf.transpose(x.t, [1, 0, 2]), [T, H * d]));
    },
    concatLast(parts) {
      const A = Math.max(...parts.map((p) => p.shape[0]!));
      const ts = parts.map((p) => (p.shape[0] === A ? p.t : tf.tile(p.t, [A, 1, 1])));
      return wrap(ts.length === 1 ? ts[0]! : tf.concat(ts, 2));
    },
    sliceRows: (x, start, count) => wrap(tf.slice(x.t, [start, 0], [count, x.shape[1]!])),
    reshape: (x, shape) => wrap(tf.reshape(x.t, [...shape])),
    concatRows: (parts) => wrap(parts.length === 1 ? parts[0]!.t : tf.concat(parts.map((p) => p.t), 0)),
    writeRows(dst, src, at) {
      const [A, rows, w] = dst.shape as [number, number, number];
      const T = src.shape[1]!;
      if (at === 0 && T === rows) {
        dst.t = src.t;
        return;
      }
      const parts: tf.Tensor[] = [];
      if (at > 0) parts.push(tf.slice(dst.t, [0, 0, 0], [A, at, w]));
      parts.push(src.t);
      if (at + T < rows) parts.push(tf.slice(dst.t, [0, at + T, 0], [A, rows - at - T, w]));
      dst.t = tf.concat(parts, 1);
    },

    add: (a, b) => wrap(tf.add(a.t, b.t)),
    linear: (x, w) => wrap(linear(x.t, w.t)),
    gemm(a, b, c, args: GemmArgs) {
      const { M, N, K, transB, batches = 1, strideA = M * K, strideB = K * N, strideC = M * N, offA = 0, offB = 0, offC = 0 } = args;
      const A = strided(a.t, offA, strideA, batches, M, K);
      const B = strided(b.t, offB, strideB, batches, transB ? N : K, transB ? K : N);
      // Batched matMul on tfjs-backend-wasm is a scalar loop; a 2-D one with no transposed operand goes to XNNPACK.
      const C = batches === 1
        ? tf.reshape(tf.matMul(tf.reshape(A, [M, K]) as tf.Tensor2D, tf.reshape(B, [B.shape[1]!, B.shape[2]!]) as tf.Tensor2D, false, transB), [1, M, N])
        : tf.matMul(A, B, false, transB);
      const total = numel(c.shape);
      if (offC === 0 && (batches === 1 || strideC === M * N) && total === batches * M * N) {
        c.t = tf.reshape(C, [...c.shape]);
        return;
      }
      // Blocks elsewhere in c: the rest of c keeps its values.
      if (strideC < M * N && batches > 1) throw new NotSupportedError("tfjs: gemm with overlapping output blocks (strideC < M·N)");
      const flat = tf.reshape(c.t, [-1]);
      const pieces: tf.Tensor[] = [];
      let at = 0;
      for (let i = 0; i < batches; i++) {
        const from = offC + i * strideC;
        if (from > at) pieces.push(tf.slice(flat, [at], [from - at]));
        pieces.push(tf.reshape(tf.slice(C, [i, 0, 0], [1, M, N]), [-1]));
        at = from + M * N;
      }
      if (at < total) pieces.push(tf.slice(flat, [at], [total - at]));
      c.t = tf.reshape(tf.concat(pieces, 0), [...c.shape]);
    },
    rmsnorm(x, w, eps) {
      const inv = tf.rsqrt(tf.add(tf.mean(tf.square(x.t), -1, true), eps));
      return wrap(tf.mul(tf.mul(x.t, inv), w.t));
    },
    layernorm(x, w, b, eps) {
      // Two passes as the reference: the mean, then the centred values' mean square.
      const centred = tf.sub(x.t, tf.mean(x.t, -1, true));
      const inv = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), eps));
      return wrap(tf.add(tf.mul(tf.mul(centred, inv), w.t), b.t));
    },
    rope(x, positions, freqs, interleaved) {
      // Pair (a, b) = (2i, 2i+1) when interleaved, (i, i + half) when not: out[a] = x[a]·cos - x[b]·sin and
      // out[b] = x[b]·cos + x[a]·sin, i.e. x·cos + partner(x)·(∓sin), the partner being the pair's other feature.
      const T = positions.length;
      const half = freqs.length;
      const { cos, sin } = rotaryTable(positions, freqs);
      const cosFull = new Float32Array(T * 2 * half);
      const sinSigned = new Float32Array(T * 2 * half);
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < half; i++) {
          const a = interleaved ? t * 2 * half + 2 * i : t * 2 * half + i, b = interleaved ? a + 1 : a + half;
          cosFull[a] = cosFull[b] = cos[t * half + i]!;
          sinSigned[a] = -sin[t * half + i]!;
          sinSigned[b] = sin[t * half + i]!;
        }
      }
      const shape = x.shape, lead = shape.slice(0, -1);
      // Interleaved: swap within each [.., half, 2] pair; halves: swap the two halves of [.., 2, half].
      const partner = interleaved
        ? tf.reshape(tf.reverse(tf.reshape(x.t, [...lead, half, 2]), -1), [...shape])
        : tf.reshape(tf.reverse(tf.reshape(x.t, [...lead, 2, half]), -2), [...shape]);
      return wrap(tf.add(tf.mul(x.t, tf.tensor2d(cosFull, [T, 2 * half])), tf.mul(partner, tf.tensor2d(sinSigned, [T, 2 * half]))));
    },
    swiglu: (gate, up) => wrap(tf.mul(tf.mul(gate.t, tf.sigmoid(gate.t)), up.t)),
    softmax: (x) => wrap(tf.softmax(x.t)),
    attention(q, k, v, { H, Hkv, Tq, Tk, Dh, Dv, scale, offset, logGammas, kvRows, firstRow = 0 }: AttentionArgs) {
      const G = H / Hkv;
      // Query head h = g·G + j reads kv head g: the G query heads of a group are G·Tq rows against its keys.
      let keys = k.t, values = v.t;
      if (firstRow > 0) {
        // A ring: keys firstRow … kvRows - 1, then (when it wraps) 0 …, in key order; slices keep the gradient.
        const head = Math.min(Tk, kvRows - firstRow);
        const unroll = (x: tf.Tensor, d: number) => {
          const first = tf.slice(x, [0, firstRow, 0], [Hkv, head, d]);
          return head === Tk ? first : tf.concat([first, tf.slice(x, [0, 0, 0], [Hkv, Tk - head, d])], 1);
        };
        keys = unroll(keys, Dh);
        values = unroll(values, Dv);
      } else if (kvRows > Tk) {
        keys = tf.slice(keys, [0, 0, 0], [Hkv, Tk, Dh]);
        values = tf.slice(values, [0, 0, 0], [Hkv, Tk, Dv]);
      }
      let scores: tf.Tensor;
      if (Hkv === 1) {
        // One kv head (MLA absorbed): 2-D matMuls, which XNNPACK runs.
        scores = tf.matMul(tf.reshape(q.t, [H * Tq, Dh]) as tf.Tensor2D, tf.reshape(keys, [Tk, Dh]) as tf.Tensor2D, false, true);
      } else {
        scores = tf.matMul(tf.reshape(q.t, [Hkv, G * Tq, Dh]) as tf.Tensor3D, keys as tf.Tensor3D, false, true);
      }
      const probs = tf.softmax(tf.add(tf.mul(tf.reshape(scores, [H, Tq, Tk]), scale), attentionBias(H, Tq, Tk, offset, logGammas)));
      const out = Hkv === 1
        ? tf.matMul(tf.reshape(probs, [H * Tq, Tk]) as tf.Tensor2D, tf.reshape(values, [Tk, Dv]) as tf.Tensor2D)
        : tf.matMul(tf.reshape(probs, [Hkv, G * Tq, Tk]) as tf.Tensor3D, values as tf.Tensor3D);
      return wrap(tf.reshape(out, [H, Tq, Dv]));
    },
    attentionProbs(q, k, { H, Hkv, Tq, Tk, Dh, scale, offset, kvRows }: AttentionArgs) {
      const keys = kvRows > Tk ? tf.slice(k.t, [0, 0, 0], [Hkv, Tk, Dh]) : k.t;
      const scores = tf.matMul(tf.reshape(q.t, [Hkv, (H / Hkv) * Tq, Dh]) as tf.Tensor3D, keys as tf.Tensor3D, false, true);
      const probs = tf.softmax(tf.add(tf.mul(tf.reshape(scores, [H, Tq, Tk]), scale), attentionBias(H, Tq, Tk, offset)));
      if (offset >= 0) return wrap(probs);
      // Query 0 sees no key: every score masked, the softmax would share its weight evenly; the interface says zeros.
      return wrap(tf.mul(probs, tf.tensor3d(Float32Array.from({ length: Tq }, (_, i) => Number(offset + i >= 0)), [1, Tq, 1])));
    },
    attendWith(probs, v, { H, Hkv, Tq, Tk, Dv, kvRows }: AttendArgs) {
      const values = kvRows > Tk ? tf.slice(v.t, [0, 0, 0], [Hkv, Tk, Dv]) : v.t;
      const out = tf.matMul(tf.reshape(probs.t, [Hkv, (H / Hkv) * Tq, Tk]) as tf.Tensor3D, values as tf.Tensor3D);
      return wrap(tf.reshape(out, [H, Tq, Dv]));
    },
    indexScores(q, keys, w, { H, Tq, Tk, D, offset, scale, kvRows }: IndexScoreArgs) {
      // Every head's dots in one 2-D matMul [H·Tq, Tk], ReLU, weighted by w·scale and summed over the heads.
      const k = kvRows > Tk ? tf.slice(keys.t, [0, 0, 0], [1, Tk, D]) : keys.t;
      const dots = tf.matMul(tf.reshape(q.t, [H * Tq, D]) as tf.Tensor2D, tf.reshape(k, [Tk, D]) as tf.Tensor2D, false, true);
      const weights = tf.reshape(tf.transpose(tf.mul(w.t, scale)), [H, Tq, 1]);
      const scores = tf.sum(tf.mul(tf.relu(tf.reshape(dots, [H, Tq, Tk])), weights), 0);
      return wrap(tf.add(scores, indexMask(Tq, Tk, offset)));
    },
    moe(x, routing: Routing, e: ExpertValues<TfValue>, router?: { logits: TfValue; config: MoeConfig }) {
      const { E, F } = e;
      const N = x.shape[0]!;
      const { k } = routing;
      // Routing weights [N, E], zero off the kept choices.
      let weights: tf.Tensor2D;
      const kept = new Float32Array(N * E);
      routing.experts.forEach((expert, a) => {
        if (routing.kept[a]) kept[Math.floor(a / k) * E + expert] = 1;
      });
      if (router) {
        const { config } = router;
        const logits = router.logits.t as tf.Tensor2D;
        moeCalls.push({ logits, routing, config });
        const chosen = new Float32Array(N * E);
        routing.experts.forEach((expert, a) => (chosen[Math.floor(a / k) * E + expert] = 1));
        const scores = config.scoring_func === "softmax" ? tf.softmax(logits) : tf.sigmoid(logits);
        let picked = tf.mul(scores, tf.tensor2d(chosen, [N, E]));
        // The router divides by the chosen scores' sum when it is positive (always, for sigmoid and softmax scores).
        if (config.scoring_func === "sigmoid" || config.norm_topk_prob) picked = tf.div(picked, tf.sum(picked, -1, true));
        weights = tf.mul(tf.mul(picked, tf.tensor2d(kept, [N, E])), config.routed_scaling_factor) as tf.Tensor2D;
      } else {
        const data = new Float32Array(N * E);
        routing.experts.forEach((expert, a) => {
          if (routing.kept[a]) data[Math.floor(a / k) * E + expert] += routing.weights[a]!;
        });
        weights = tf.tensor2d(data, [N, E]);
      }
      // Σ_e w_e·down_e(act_e) = [w_1·act_1 … w_E·act_E] · [down_1ᵀ; …; down_Eᵀ]: the routing weights scale each
      // expert's hidden units, then one matmul over all E·F of them does the down projections and the sum.
      const stacked = (w: TfValue) => tf.reshape(w.t, [E * F, -1]); // gate, up [E, F, D] → [E·F, D]
      const g = linear(x.t, stacked(e.gate));
      const act = tf.reshape(tf.mul(tf.mul(g, tf.sigmoid(g)), linear(x.t, stacked(e.up))), [N, E, F]);
      const weighted = tf.reshape(tf.mul(act, tf.expandDims(weights, 2)), [N, E * F]);
      const down = tf.reshape(tf.transpose(e.down.t, [0, 2, 1]), [E * F, -1]); // [E, D, F] → [E·F, D]
      return wrap(tf.matMul(weighted as tf.Tensor2D, down as tf.Tensor2D));
    },
  };
  return kernels;
}

export interface TfForward {
  /** The logits [N, V] as a tensor on the tape (sequences packed row after row). */
  logits: tf.Tensor2D;
  result: ForwardResult;
}

/**
 * The one forward (src/model/forward.ts) on the tfjs kernels: each sequence from position 0 in its own cache,
 * full depth. Run it inside tf.tidy (or variableGrads): the values it makes live in the caller's scope.
 */
export function tfjsForward(ops: Ops<TfValue>, model: Model, sequences: readonly (readonly number[])[], options: RowsOptions = {}): TfForward {
  const backend = { ops } as unknown as Backend;
  const rows = sequences.map((tokens) => ({
    tokens,
    cache: createCache(model.config, { backend, capacity: tokens.length }) as unknown as ModelCache<TfValue>,
    own: true,
  }));
  const result = runSync(forwardRows(ops, model, rows, { exitThreshold: null, ...options, keepLogits: true }), ops.name);
  return { logits: (result.logitsValue as TfValue).t as tf.Tensor2D, result };
}

/** The checked operations over tfjs kernels. */
export const tfjsOps = (kernels: TfjsKernels): Ops<TfValue> => opsOver(kernels);
