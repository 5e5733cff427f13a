"""The kernel under test: tinyseek's int8 per-group weights and the linear layer that uses them (spec/quant.md).

Three outputs, as the golden files quant.int8.gG.* define them: codes [out, in] (int), scales [out, groups]
(float32, as stored) and y = x . dequantised(W)^T [tokens, out].
"""
import numpy as np


def int8_linear(x, weight, group):
    out, n = weight.shape
    groups = -(-n // group)
    w = weight.astype(np.float64)
    codes = np.zeros((out, n), dtype=np.int32)
    scales = np.zeros((out, groups), dtype=np.float32)
    y = np.zeros((x.shape[0], out), dtype=np.float64)
    for g in range(groups):
        cols = slice(g * group, min((g + 1) * group, n))
        scale = (np.abs(w[:, cols]).max(axis=1) / 127).astype(np.float32)  # rounded to float32, as stored
        safe = np.where(scale > 0, scale, 1).astype(np.float64)[:, None]
        q = np.where(scale[:, None] > 0, np.rint(w[:, cols] / safe), 0)  # rint rounds half to even
        codes[:, cols] = np.clip(q, -127, 127)
        scales[:, g] = scale
        y += (x[:, cols].astype(np.float64) @ codes[:, cols].T.astype(np.float64)) * scale.astype(np.float64)
    return {"codes": codes, "scales": scales, "y": y.astype(np.float32)}
