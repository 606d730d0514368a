"""Generated alpha pairs for the metric tests and bench/bench_metrics.py (no files needed)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def portrait_pair(h: int = 1080, w: int = 1920, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (prediction, matte) pair shaped like a portrait matting result, both float32 in [0, 1].

    Matte: head and shoulders with a soft 8-bit edge and a few hair strands. Prediction: the
    same person seen by a network at a quarter of the size (shifted, noisy, thin strands faded,
    one false blob, a region it is unsure of at alpha ~0.95), upsampled bilinearly and clipped:
    most of it is exactly 0 or 1, as in the mattes and predictions of real portraits.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / h
    cx = 0.5 * w / h + rng.uniform(-0.1, 0.1)
    head = ((xx - cx) / 0.17) ** 2 + ((yy - 0.38) / 0.23) ** 2 < 1
    body = ((xx - cx) / 0.42) ** 2 + ((yy - 1.05) / 0.42) ** 2 < 1
    hard = (head | body).astype(np.float32)
    for k in range(6):  # hair strands: thin arcs off the head
        t = np.linspace(0, 1, 400)
        a = rng.uniform(-2.6, -0.5)
        ys = (0.38 + 0.23 * np.sin(a) - 0.12 * t * (k % 3 + 1) / 3) * h
        xs = (cx + 0.17 * np.cos(a) + 0.1 * t * np.sign(np.cos(a)) * rng.uniform(0.3, 1.0)) * h
        keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        hard[ys[keep].astype(int), xs[keep].astype(int)] = 1.0
    gt = np.round(np.clip(ndi.gaussian_filter(hard, 2.0), 0, 1) * 255) / 255
    small = ndi.zoom(ndi.shift(hard, (rng.uniform(-3, 3), rng.uniform(-3, 3)), order=1), 0.25, order=1)
    small = ndi.gaussian_filter(small, 1.0) + rng.normal(0, 0.03, small.shape) * (small > 0.02)
    sy, sx = np.mgrid[0 : small.shape[0], 0 : small.shape[1]] / small.shape[0]
    small += 0.8 * (((sy - 0.85) / 0.04) ** 2 + ((sx - 0.1) / 0.03) ** 2 < 1)  # a false blob
    sy, sx = sy * small.shape[0], sx * small.shape[0]
    unsure = (sx < small.shape[1] * 0.5) & (sy > small.shape[0] * 0.6)  # a region the net is unsure of
    small = np.where(unsure, np.minimum(small, 0.82 + 0.03 * ndi.gaussian_filter(rng.random(small.shape), 3)), small)
    pred = ndi.zoom(small, (h / small.shape[0], w / small.shape[1]), order=1)[:h, :w]
    pred = np.clip((pred - 0.5) * 1.4 + 0.5, 0, 1)
    return pred.astype(np.float32), gt.astype(np.float32)
