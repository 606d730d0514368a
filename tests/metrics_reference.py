"""Reference oracle: the metric definitions as first written (commit c9fa82e), kept verbatim.

The tests and bench/bench_metrics.py compare matting_deploy.validate.metrics against these
slow but plainly-written functions. Do not optimise this file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METRICS = ("mse", "mad", "sad", "grad", "conn", "miou")


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"alpha shapes differ or are not 2-D: {pred.shape} vs {gt.shape}")
    return pred, gt


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean squared error over all pixels."""
    pred, gt = _pair(pred, gt)
    return float(np.mean((pred - gt) ** 2))


def mad(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute difference over all pixels."""
    pred, gt = _pair(pred, gt)
    return float(np.mean(np.abs(pred - gt)))


def sad(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sum of absolute differences, in thousands."""
    pred, gt = _pair(pred, gt)
    return float(np.sum(np.abs(pred - gt)) / 1000.0)


def gaussian_derivative_kernels(sigma: float = 1.4) -> tuple[np.ndarray, np.ndarray]:
    """The two 1-D factors (smoothing g, derivative dg) of the Deep Image Matting gradient filter.

    The 2-D x-derivative kernel is ``outer(g, dg)`` (rows smoothed, columns differentiated):
    a Gaussian of ``sigma`` times its first derivative, half-size
    ``ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma 0.01)))`` (4 for sigma 1.4, a 9x9 kernel),
    scaled to unit L2 norm. Each factor is returned with unit norm, so their outer product has it.
    """
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * 1e-2)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    dg = -x * g
    return g / np.linalg.norm(g), dg / np.linalg.norm(dg)


def _correlate1d(image: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """1-D correlation along ``axis`` with replicated borders (same size output)."""
    half = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half, half)
    padded = np.pad(image, pad, mode="edge")
    n = image.shape[axis]
    out = np.zeros_like(image)
    for k, weight in enumerate(kernel):
        out += weight * (padded[:, k : k + n] if axis == 1 else padded[k : k + n, :])
    return out


def gradient_magnitude(alpha: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """|grad alpha| with the Gaussian-derivative filter of :func:`gaussian_derivative_kernels`."""
    g, dg = gaussian_derivative_kernels(sigma)
    alpha = np.asarray(alpha, dtype=np.float64)
    gx = _correlate1d(_correlate1d(alpha, g, 0), dg, 1)
    gy = _correlate1d(_correlate1d(alpha, dg, 0), g, 1)
    return np.sqrt(gx**2 + gy**2)


def gradient_error(pred: np.ndarray, gt: np.ndarray, sigma: float = 1.4) -> float:
    """Deep Image Matting gradient error: sum of squared gradient-magnitude differences / 1000."""
    pred, gt = _pair(pred, gt)
    diff = gradient_magnitude(pred, sigma) - gradient_magnitude(gt, sigma)
    return float(np.sum(diff**2) / 1000.0)


def _hook_and_jump(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Components of the graph with edges u-v: every node ends pointing at its least node."""
    while True:
        pu, pv = parent[u], parent[v]
        low = np.minimum(pu, pv)
        new = parent.copy()
        np.minimum.at(new, pu, low)
        np.minimum.at(new, pv, low)
        while True:  # pointer jumping until every node points at a root
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, parent):
            return parent
        parent = new


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (labels, count), 0 = background.

    Labels 1..count are ordered by each component's first pixel in row-major order. Works on
    horizontal runs: runs are the nodes, vertically touching runs are the edges.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got {mask.shape}")
    labels = np.zeros(mask.shape, np.int64)
    if not mask.any():
        return labels, 0
    starts = mask.copy()
    starts[:, 1:] &= ~mask[:, :-1]
    run = np.cumsum(starts.ravel()).reshape(mask.shape)  # run id (1..R) inside the mask
    n_runs = int(run[-1, -1])
    touch = mask[:-1] & mask[1:]
    key = np.unique(run[:-1][touch] * (n_runs + 1) + run[1:][touch])
    parent = np.arange(n_runs + 1)
    if key.size:
        parent = _hook_and_jump(parent, key // (n_runs + 1), key % (n_runs + 1))
    roots, dense = np.unique(parent[1:], return_inverse=True)
    comp = np.concatenate([[0], dense + 1])
    labels[mask] = comp[run[mask]]
    return labels, len(roots)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of ``mask`` (ties: the one starting first); empty if none."""
    labels, n = label_components(mask)
    if n == 0:
        return np.zeros(labels.shape, bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return labels == int(np.argmax(sizes)) + 1


def connectivity_error(
    pred: np.ndarray, gt: np.ndarray, step: float = 0.1, theta: float = 0.15
) -> float:
    """Deep Image Matting connectivity error / 1000.

    For thresholds t_i = i*step (i = 1..1/step), omega_i is the largest 4-connected component of
    (pred >= t_i) & (gt >= t_i). Each pixel's level l is the last threshold t_{i-1} before it first
    falls outside omega_i (1 if it never does). With d = alpha - l, phi = 1 - d * [d >= theta];
    the error is sum |phi_pred - phi_gt|.
    """
    pred, gt = _pair(pred, gt)
    n = round(1.0 / step)
    levels = np.full(pred.shape, -1.0)
    for i in range(1, n + 1):
        omega = largest_component((pred >= i / n) & (gt >= i / n))
        levels[(levels == -1.0) & ~omega] = (i - 1) / n
        if not (levels == -1.0).any():
            break
    levels[levels == -1.0] = 1.0
    pd, gd = pred - levels, gt - levels
    phi_pred = 1.0 - pd * (pd >= theta)
    phi_gt = 1.0 - gd * (gd >= theta)
    return float(np.sum(np.abs(phi_pred - phi_gt)) / 1000.0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def miou(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of foreground and background IoU, foreground = alpha >= threshold.

    A class absent from both masks (empty union) counts as IoU 1: the two agree on it.
    """
    pred, gt = _pair(pred, gt)
    fp, fg = pred >= threshold, gt >= threshold
    return float((_iou(fp, fg) + _iou(~fp, ~fg)) / 2.0)


def dtssd(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> float:
    """Temporal coherence (dtSSD x 100, as in the video matting benchmarks).

    For frames t = 1..T-1: sqrt(mean_p ((pred_t - pred_{t-1}) - (gt_t - gt_{t-1}))^2),
    averaged over those frames. Needs at least two frames.
    """
    if len(preds) != len(gts) or len(preds) < 2:
        raise ValueError("dtSSD needs two or more frames, as many predictions as mattes")
    terms = [dtssd_term(preds[t], preds[t - 1], gts[t], gts[t - 1]) for t in range(1, len(preds))]
    return float(np.mean(terms))


def dtssd_term(
    pred: np.ndarray, pred_prev: np.ndarray, gt: np.ndarray, gt_prev: np.ndarray
) -> float:
    """One frame's dtSSD term (x 100): RMS of predicted minus true change of alpha."""
    pred, gt = _pair(pred, gt)
    pred_prev, gt_prev = _pair(pred_prev, gt_prev)
    change = (pred - pred_prev) - (gt - gt_prev)
    return float(np.sqrt(np.mean(change**2)) * 100.0)


def all_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every still-image metric of :data:`METRICS` for one image."""
    pred, gt = _pair(pred, gt)
    return {
        "mse": mse(pred, gt),
        "mad": mad(pred, gt),
        "sad": sad(pred, gt),
        "grad": gradient_error(pred, gt),
        "conn": connectivity_error(pred, gt),
        "miou": miou(pred, gt),
    }
