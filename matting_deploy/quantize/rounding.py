"""Weight rounding chosen to minimise each INT8 Conv's output error (a cheap AdaRound: Nagel et
al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Per output channel, with the per-channel scale s = max|w| / 127 fixed, each weight is rounded up
or down (never further) so that e^T H e is small, e = s q - w and H the second moment of the
Conv's input patches on the calibration images: greedy coordinate descent from round-to-nearest,
a few sweeps, vectorised over the channels that share H. The weight of largest magnitude keeps
q = +-127, so the channel's max-abs, hence its scale, is unchanged.

The result is written as FP32 weights already on the grid (``s * q``): any max-abs per-channel
symmetric INT8 quantizer, onnxruntime's for the Q/DQ artifact and TensorRT's own for implicit
INT8, gives back exactly these integers (:func:`requantize`; tested). TensorRT's rule, from its
developer guide ("Working with INT8" / "Quantization Schemes",
docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-schemes.html):
weight scale s = max(|w_min|, |w_max|) / 127 per output channel, x_q = roundWithTiesToEven(clip(x / s,
-128, 127)). ``s * q`` divided by TensorRT's recomputed s is q within a few float ulps, far from a tie.
"""

from __future__ import annotations

import numpy as np

from .bias_correction import weight_scales


def requantize(w: np.ndarray) -> np.ndarray:
    """TensorRT-style weight quantization: per output channel scale max|w|/127, round half to
    even, saturate to [-127, 127]; the INT8 integers."""
    s = weight_scales(w).reshape(-1, *([1] * (w.ndim - 1)))
    return np.clip(np.rint(w / s), -127, 127).astype(np.int8)


def snap(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """FP32 weights ``scale * q`` on ``w``'s per-channel grid (they requantize to ``q``)."""
    s = weight_scales(w).reshape(-1, *([1] * (w.ndim - 1)))
    return (q.astype(np.float32) * s).astype(np.float32)


def round_weights(w: np.ndarray, moment: np.ndarray, group: int, sweeps: int = 3) -> np.ndarray:
    """INT8 integers (shape of ``w``) minimising sum over channels of e^T H e (``moment``: (G, K, K))."""
    o = w.shape[0]
    s = weight_scales(w)
    wg = (w.reshape(o, -1) / s[:, None]).astype(np.float64)  # in units of the scale
    q = np.clip(np.rint(wg), -127, 127)
    lo, hi = np.floor(wg), np.ceil(wg)
    pinned = np.zeros_like(q, bool)
    pinned[np.arange(o), np.abs(wg).argmax(axis=1)] = True
    h = moment / max(float(np.abs(moment).max()), 1e-30)  # scale-free (only the argmin matters)
    k = wg.shape[1]
    og = o // group
    e = (q - wg).reshape(group, og, k) * s.reshape(group, og, 1)
    he = np.einsum("gkl,gol->gok", h, e)
    qg = q.reshape(group, og, k)
    lo, hi = lo.reshape(group, og, k), hi.reshape(group, og, k)
    fixed = pinned.reshape(group, og, k) | (lo == hi)
    sg = s.reshape(group, og).astype(np.float64)
    for _ in range(sweeps):
        changed = 0
        for j in range(k):
            alt = np.where(qg[:, :, j] == lo[:, :, j], hi[:, :, j], lo[:, :, j])
            ok = ~fixed[:, :, j] & (np.abs(alt) <= 127)
            d = (alt - qg[:, :, j]) * sg
            gain = 2 * d * he[:, :, j] + h[:, j, j][:, None] * d * d
            take = ok & (gain < -1e-12 * np.abs(h[:, j, j])[:, None])
            if not take.any():
                continue
            d = np.where(take, d, 0.0)
            qg[:, :, j] = np.where(take, alt, qg[:, :, j])
            he += h[:, :, j][:, None, :] * d[:, :, None]
            changed += int(take.sum())
        if not changed:
            break
    return qg.reshape(w.shape).astype(np.int8)


def rounding_error(w: np.ndarray, q: np.ndarray, moment: np.ndarray, group: int) -> float:
    """sum over channels of e^T H e for integers ``q`` (to compare roundings)."""
    o = w.shape[0]
    s = weight_scales(w)
    e = (q.reshape(o, -1) * s[:, None] - w.reshape(o, -1)).astype(np.float64).reshape(group, o // group, -1)
    return float(np.einsum("gok,gkl,gol->", e, moment, e))
