// Per-tensor statistics: what people ask for first when two backends disagree (min, max, mean, NaN and Inf
// counts), as onnxruntime's per-node statistics and tfjs's debug mode give them.

export interface TensorStats {
  readonly elements: number;
  /** Over finite values; NaN when there are none. */
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly nan: number;
  readonly inf: number;
}

/** Statistics of any numeric typed array (bigints are converted), accumulated in float64. */
export function tensorStats(data: ArrayLike<number | bigint>): TensorStats {
  let min = Infinity, max = -Infinity, sum = 0, finite = 0, nan = 0, inf = 0;
  for (let i = 0; i < data.length; i++) {
    const v = Number(data[i]!);
    if (Number.isNaN(v)) nan++;
    else if (!Number.isFinite(v)) inf++;
    else {
      finite++;
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  const none = finite === 0;
  return { elements: data.length, min: none ? NaN : min, max: none ? NaN : max, mean: none ? NaN : sum / finite, nan, inf };
}
