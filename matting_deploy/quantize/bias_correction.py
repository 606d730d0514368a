"""Bias correction (Nagel et al. 2019, "Data-Free Quantization through Weight Equalization and
Bias Correction"; NNCF's FastBiasCorrection): each INT8 Conv shifts the mean of its output
channels, E[W_q Q(x)] - E[W x]; subtracting that shift from the Conv's float bias removes it.

The shift is measured per Conv on its FP32 inputs over the calibration images (as NNCF's fast
variant does: each layer's own error, so the order of layers does not matter) and is exact for
the Conv's pre-activation output: a Conv's output mean is linear in the per-tap means of its
input (:func:`matting_deploy.quantize.conv_stats.tap_means`). The bias stays float, so the same
correction serves the Q/DQ artifact and implicit INT8 (which quantizes the same weights with the
same per-channel max-abs scale and the input with the same calib.cache scale).
"""

from __future__ import annotations

import numpy as np

from .conv_stats import ConvStats


def dequantized_weights(w: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric INT8 weights (scale max|w| / 127, round half to even), dequantized."""
    s = weight_scales(w).reshape(-1, *([1] * (w.ndim - 1)))
    return (np.clip(np.rint(w / s), -127, 127) * s).astype(np.float32)


def weight_scales(w: np.ndarray) -> np.ndarray:
    """max|w| / 127 per output channel (a zero channel gets scale 1, as onnxruntime's quantizer)."""
    amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1).astype(np.float32)
    return np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)


def output_shift(stats: ConvStats, w: np.ndarray, w_q: np.ndarray) -> np.ndarray:
    """(O,) mean output error of the INT8 Conv (weights ``w_q``, input Q(x)) against FP32 ``w`` on x."""
    g = stats.geo.group
    o, cg = w.shape[0], w.shape[1]
    m = (stats.mean / stats.images).reshape(g, cg, *stats.geo.kernel)
    mq = (stats.mean_q / stats.images).reshape(g, cg, *stats.geo.kernel)
    wg = w.reshape(g, o // g, cg, *stats.geo.kernel).astype(np.float64)
    wqg = w_q.reshape(g, o // g, cg, *stats.geo.kernel).astype(np.float64)
    shift = np.einsum("gocij,gcij->go", wqg, mq) - np.einsum("gocij,gcij->go", wg, m)
    return shift.reshape(o)


def corrected_bias(stats: ConvStats, w: np.ndarray, w_q: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """The float bias that cancels :func:`output_shift` (a zero bias when the Conv had none)."""
    b = np.zeros(w.shape[0], np.float32) if bias is None else bias.astype(np.float32)
    return (b - output_shift(stats, w, w_q)).astype(np.float32)
