"""Matting metrics as numpy/scipy functions.

Every function takes the predicted and the ground-truth alpha as 2-D arrays of the same shape
with values in [0, 1] (the prediction already resized to the matte's size) and scores the whole
image (there is no trimap). Scales follow the matting papers: SAD, gradient and connectivity
errors are divided by 1000, dtSSD is multiplied by 100. Arithmetic is float64 throughout.

How it is fast: :class:`Tiles` cuts the pair into square tiles. A tile where both alphas are
constant is scored from its value alone (its gradient is zero, its pixels are connected); the
other tiles are scored pixel by pixel as stacks. Gradients are the separable Gaussian-derivative
filters written as banded matrices (one BLAS product per axis); connectivity labels the row runs
of each threshold mask with ``scipy.sparse.csgraph.connected_components``. Values equal the
plain definitions (kept in ``tests/metrics_reference.py``) up to float64 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .components import covered, omega_chain

METRICS = ("mse", "mad", "sad", "grad", "conn", "miou")
TILE = 16  # tile side in pixels: smaller skips more flat area, larger makes bigger BLAS calls
CHUNK = 128  # tiles filtered at once
SIGMA = 1.4


def gaussian_derivative_kernels(sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
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


def _band(kernel: np.ndarray, t: int) -> np.ndarray:
    """(t + len - 1, t) matrix B with ``x @ B`` = correlation of each row of x with ``kernel``."""
    band = np.zeros((t + len(kernel) - 1, t))
    for j in range(t):
        band[j : j + len(kernel), j] = kernel
    return band


def _magnitude(win: np.ndarray, smooth: np.ndarray, deriv: np.ndarray) -> np.ndarray:
    """|grad| of the centre of N (s, s) windows laid out (s, N, s), as (t N, t) rows (i, n, j).

    ``smooth``/``deriv`` are the (s, t) banded factors; three large BLAS products in all.
    """
    s, n, _ = win.shape
    t = smooth.shape[1]
    along_y = np.vstack([smooth.T, deriv.T]) @ win.reshape(s, n * s)  # (2t, N s)
    gx = along_y[:t].reshape(t * n, s) @ deriv  # smoothed along y, differentiated along x
    gy = along_y[t:].reshape(t * n, s) @ smooth
    return np.sqrt(gx * gx + gy * gy)  # (np.hypot is an order of magnitude slower)


def _levels(alpha: np.ndarray, n: int) -> np.ndarray:
    """Number of thresholds i/n (i = 1..n) that ``alpha`` reaches, as uint8."""
    out = np.zeros(alpha.shape, np.uint8)
    for i in range(1, n + 1):
        out += alpha >= i / n
    return out


_ALL_TRUE = np.frombuffer(b"\x01" * 8, np.uint64)[0]  # eight True bytes read as one integer


def _flat_tiles(a: np.ndarray, t: int) -> np.ndarray:
    """Per t x t tile of an (ny t, nx t) array: are all its values equal (t: a multiple of 8).

    Long-row comparisons, then each tile row's t booleans read as t/8 integers.
    """
    hh, ww = a.shape
    same = np.empty((hh, ww), bool)
    np.equal(a[:, 1:], a[:, :-1], out=same[:, :-1])
    same[:, t - 1 :: t] = True  # pairs across a tile edge do not count
    words = same.view(np.uint64).reshape(hh, ww // t, t // 8) == _ALL_TRUE
    rows = words[..., 0]
    for k in range(1, t // 8):  # (a reduction over so short an axis is slow in numpy)
        rows = rows & words[..., k]
    first = a[:, ::t]
    down = np.ones(first.shape, bool)
    np.equal(first[1:], first[:-1], out=down[1:])
    down[::t] = True
    return (rows & down).reshape(hh // t, t, ww // t).all(axis=1)


def _as_float(a: np.ndarray) -> np.ndarray:
    """float32 and float64 arrays as they are (compared exactly), anything else as float64."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


class Tiles:
    """A prediction/ground-truth pair cut into tiles, shared by every metric of one image.

    ``flat`` marks tiles where both alphas are constant (values ``vp``/``vg``, ``count`` pixels
    inside the image); the other tiles are float64 stacks ``sp``/``sg`` (N, t, t) at ``ys``/``xs``.
    The canvases ``p``/``g`` keep the input precision, padded with a ``halo``-pixel ring and up to
    whole tiles by repeating the edges, as the gradient filter's borders are.
    """

    def __init__(self, pred: np.ndarray, gt: np.ndarray, halo: int = 4, size: int = TILE):
        pred, gt = _as_float(pred), _as_float(gt)
        if pred.shape != gt.shape or pred.ndim != 2 or pred.size == 0:
            raise ValueError(f"alpha shapes differ, are not 2-D or are empty: {pred.shape} vs {gt.shape}")
        self.h, self.w = pred.shape
        self.halo, self.t = halo, -(-max(size, halo) // 8) * 8
        self.ny, self.nx = -(-self.h // self.t), -(-self.w // self.t)
        pad = ((halo, halo + self.ny * self.t - self.h), (halo, halo + self.nx * self.t - self.w))
        self.p, self.g = np.pad(pred, pad, mode="edge"), np.pad(gt, pad, mode="edge")
        self.flat_p, self.flat_g = _flat_tiles(self.image(self.p), self.t), _flat_tiles(self.image(self.g), self.t)
        self.flat = self.flat_p & self.flat_g
        p4, g4 = self.grid(self.p), self.grid(self.g)
        self.vp, self.vg = p4[:, 0, :, 0].astype(np.float64), g4[:, 0, :, 0].astype(np.float64)
        tiles = np.arange(max(self.ny, self.nx)) * self.t
        rows = np.minimum(self.t, self.h - tiles[: self.ny])
        self.count = np.outer(rows, np.minimum(self.t, self.w - tiles[: self.nx]))
        self.ys, self.xs = np.nonzero(~self.flat)
        self.sp = p4[self.ys, :, self.xs, :].astype(np.float64)
        self.sg = g4[self.ys, :, self.xs, :].astype(np.float64)
        self.valid = self.inside(self.ys, self.xs)

    def image(self, canvas: np.ndarray) -> np.ndarray:
        """The (ny t, nx t) part of a canvas without the halo ring."""
        k = self.halo
        return canvas[k : k + self.ny * self.t, k : k + self.nx * self.t]

    def grid(self, canvas: np.ndarray) -> np.ndarray:
        """(ny, t, nx, t) view of :meth:`image`."""
        return self.image(canvas).reshape(self.ny, self.t, self.nx, self.t)

    def inside(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(N, t, t) mask of the pixels of tiles (ys, xs) that lie inside the image."""
        offsets = np.arange(self.t)
        in_rows = ys[:, None] * self.t + offsets < self.h
        in_cols = xs[:, None] * self.t + offsets < self.w
        return in_rows[:, :, None] & in_cols[:, None, :]

    def total(self, per_tile: np.ndarray, per_pixel: np.ndarray) -> float:
        """Image sum of a quantity given per flat tile (ny, nx) and per stack pixel (N, t, t)."""
        flat = np.sum(per_tile[self.flat] * self.count[self.flat])
        return float(flat + np.sum(per_pixel, where=self.valid))

    @cached_property
    def diff(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vp - self.vg, self.sp - self.sg

    def mse(self) -> float:
        d, ds = self.diff
        return self.total(d * d, ds * ds) / (self.h * self.w)

    def sad_raw(self) -> float:
        d, ds = self.diff
        return self.total(np.abs(d), np.abs(ds))

    def miou(self, threshold: float = 0.5) -> float:
        fp, fg = self.vp >= threshold, self.vg >= threshold
        sfp, sfg = self.sp >= threshold, self.sg >= threshold
        inter, union = self.total(fp & fg, sfp & sfg), self.total(fp | fg, sfp | sfg)
        n = self.h * self.w
        return float((_ratio(inter, union) + _ratio(n - union, n - inter)) / 2.0)

    def busy(self, flat: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Tiles whose window (the tile and its halo ring) is not constant, from one alpha's
        per-tile ``flat`` and ``value`` (beyond the image, windows repeat the edge tiles)."""
        flat_near, value_near = np.pad(flat, 1, mode="edge"), np.pad(value, 1, mode="edge")
        out = np.zeros(flat.shape, bool)
        for dy in range(3):
            for dx in range(3):
                near = (slice(dy, dy + self.ny), slice(dx, dx + self.nx))
                out |= ~flat_near[near] | (value_near[near] != value)
        return out

    def windows(self, canvas: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Float64 windows (tile plus halo ring, s = t + 2 halo) of tiles (ys, xs), laid out (s, N, s)."""
        s, (r, c) = self.t + 2 * self.halo, canvas.strides
        view = as_strided(canvas, (s, self.ny, self.nx, s), (r, r * self.t, c * self.t, c), writeable=False)
        return view[:, ys, xs, :].astype(np.float64, order="C")

    def grad(self, sigma: float = SIGMA) -> float:
        g, dg = gaussian_derivative_kernels(sigma)
        if len(g) != 2 * self.halo + 1:
            raise ValueError(f"these tiles have a {self.halo}-pixel halo; sigma {sigma} needs {len(g) // 2}")
        busy_p, busy_g = self.busy(self.flat_p, self.vp), self.busy(self.flat_g, self.vg)
        ys, xs = np.nonzero(busy_p | busy_g)  # elsewhere both gradients are 0
        smooth, deriv = _band(g, self.t), _band(dg, self.t)
        total = 0.0
        for chunk in range(0, len(ys), CHUNK):  # a few hundred tiles at a time stay in cache
            cy, cx = ys[chunk : chunk + CHUNK], xs[chunk : chunk + CHUNK]
            diff = self._magnitudes(self.p, busy_p[cy, cx], cy, cx, smooth, deriv)
            diff -= self._magnitudes(self.g, busy_g[cy, cx], cy, cx, smooth, deriv)
            diff *= self.inside(cy, cx).transpose(1, 0, 2)
            total += np.vdot(diff, diff)
        return float(total / 1000.0)

    def _magnitudes(self, canvas: np.ndarray, busy: np.ndarray, ys, xs, smooth, deriv) -> np.ndarray:
        """|grad| of one alpha on tiles (ys, xs), laid out (row, tile, col); 0 where not ``busy``."""
        t, some = self.t, np.flatnonzero(busy)
        magnitude = _magnitude(self.windows(canvas, ys[some], xs[some]), smooth, deriv).reshape(t, len(some), t)
        if len(some) == len(ys):
            return magnitude
        out = np.zeros((t, len(ys), t))
        out[:, some, :] = magnitude
        return out

    def depth(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Omega depth (see :func:`.components.omega_chain`) per flat tile (ny, nx) and per stack pixel."""
        t, w = self.t, self.w
        level_grid = np.empty((self.ny, t, self.nx, t), np.uint8)
        rows = np.repeat(_levels(np.minimum(self.vp, self.vg), n), t, axis=1)  # (ny, nx t)
        level_grid.reshape(self.ny, t, self.nx * t)[...] = rows[:, None, :]  # long rows: fast
        level_grid[self.ys, :, self.xs, :] = _levels(np.minimum(self.sp, self.sg), n)
        starts, ends = omega_chain(level_grid.reshape(self.ny * t, self.nx * t)[: self.h, :w], n)
        origin = np.arange(self.ny)[:, None] * t * (w + 1) + np.arange(self.nx) * t  # tile keys
        flat = covered(origin, starts, ends)
        # stacks: depth at each tile row's first pixel, plus the run edges inside the row
        first = origin[self.ys, self.xs][:, None] + np.arange(t) * (w + 1)
        index = np.full((self.ny, self.nx), -1)
        index[self.ys, self.xs] = np.arange(len(self.ys))
        size, at = t * len(self.ys) * t, []
        for keys in (starts, ends):
            row, col = np.divmod(keys, w + 1)
            keys_in = (col % t != 0) & (col < w)
            row, col = row[keys_in], col[keys_in]
            tile = index[row // t, col // t]
            stack = tile >= 0  # flat index into (col, tile, row): the cumsum below runs on axis 0
            at.append(((col[stack] % t) * len(self.ys) + tile[stack]) * t + row[stack] % t)
        steps = (np.bincount(at[0], minlength=size) - np.bincount(at[1], minlength=size)).astype(np.int16)
        steps = steps.reshape(t, len(self.ys), t)
        inside = np.cumsum(steps, axis=0, dtype=np.int16).transpose(1, 2, 0)
        return flat, covered(first, starts, ends).astype(np.int16)[:, :, None] + inside

    def conn(self, step: float = 0.1, theta: float = 0.15) -> float:
        n = round(1.0 / step)
        flat_depth, stack_depth = self.depth(n)
        level = np.arange(n + 1) / n  # depth k -> level k/n (1 for pixels inside every omega)

        def phi_diff(p: np.ndarray, g: np.ndarray, lev: np.ndarray) -> np.ndarray:
            """|phi_p - phi_g| with phi = 1 - d [d >= theta], d = alpha - lev: |d_p - d_g| where
            both d >= theta, the larger d where only it is, 0 where neither is."""
            high, low = np.maximum(p, g) - lev, np.minimum(p, g) - lev  # = max/min of the two d
            return np.where(high >= theta, np.where(low >= theta, np.abs(p - g), high), 0.0)

        flat = phi_diff(self.vp, self.vg, level[flat_depth])
        return self.total(flat, phi_diff(self.sp, self.sg, level[stack_depth])) / 1000.0


def _ratio(inter: float, union: float) -> float:
    return 1.0 if union == 0 else inter / union


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean squared error over all pixels."""
    return Tiles(pred, gt).mse()


def mad(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute difference over all pixels."""
    t = Tiles(pred, gt)
    return t.sad_raw() / (t.h * t.w)


def sad(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sum of absolute differences, in thousands."""
    return Tiles(pred, gt).sad_raw() / 1000.0


def gradient_error(pred: np.ndarray, gt: np.ndarray, sigma: float = SIGMA) -> float:
    """Deep Image Matting gradient error: sum of squared gradient-magnitude differences / 1000.

    Gradients: :func:`gaussian_derivative_kernels` along each axis, borders replicated.
    """
    return Tiles(pred, gt, halo=len(gaussian_derivative_kernels(sigma)[0]) // 2).grad(sigma)


def connectivity_error(pred: np.ndarray, gt: np.ndarray, step: float = 0.1, theta: float = 0.15) -> float:
    """Deep Image Matting connectivity error / 1000.

    For thresholds t_i = i*step (i = 1..1/step), omega_i is the largest 4-connected component of
    (pred >= t_i) & (gt >= t_i) (ties: the one whose first pixel comes first in row order). Each
    pixel's level l is the last threshold t_{i-1} before it first falls outside omega_i (1 if it
    never does). With d = alpha - l, phi = 1 - d * [d >= theta]; the error is sum |phi_pred - phi_gt|.
    """
    return Tiles(pred, gt).conn(step, theta)


def miou(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of foreground and background IoU, foreground = alpha >= threshold.

    A class absent from both masks (empty union) counts as IoU 1: the two agree on it.
    """
    return Tiles(pred, gt).miou(threshold)


def dtssd(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> float:
    """Temporal coherence (dtSSD x 100, as in the video matting benchmarks).

    For frames t = 1..T-1: sqrt(mean_p ((pred_t - pred_{t-1}) - (gt_t - gt_{t-1}))^2),
    averaged over those frames. Needs at least two frames.
    """
    if len(preds) != len(gts) or len(preds) < 2:
        raise ValueError("dtSSD needs two or more frames, as many predictions as mattes")
    terms = [dtssd_term(preds[t], preds[t - 1], gts[t], gts[t - 1]) for t in range(1, len(preds))]
    return float(np.mean(terms))


def _float64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def dtssd_term(pred: np.ndarray, pred_prev: np.ndarray, gt: np.ndarray, gt_prev: np.ndarray) -> float:
    """One frame's dtSSD term (x 100): RMS of predicted minus true change of alpha."""
    shapes = {np.shape(a) for a in (pred, pred_prev, gt, gt_prev)}
    if len(shapes) != 1 or np.ndim(pred) != 2:
        raise ValueError(f"alpha shapes differ or are not 2-D: {sorted(shapes)}")
    change = _float64(pred) - _float64(pred_prev)
    change -= _float64(gt) - _float64(gt_prev)
    return float(np.sqrt(np.vdot(change, change) / change.size) * 100.0)


def all_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every still-image metric of :data:`METRICS` for one image (the tiles are cut once)."""
    t = Tiles(pred, gt)
    sad_raw = t.sad_raw()
    return {
        "mse": t.mse(),
        "mad": sad_raw / (t.h * t.w),
        "sad": sad_raw / 1000.0,
        "grad": t.grad(),
        "conn": t.conn(),
        "miou": t.miou(),
    }
