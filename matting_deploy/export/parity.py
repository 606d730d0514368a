"""Parity: the same seeded frames through a reference and a candidate runner, outputs compared."""

from __future__ import annotations

import numpy as np

from ..data.preprocess import preprocess_for
from ..errors import MattingDeployError
from ..models.specs import OUTPUT_CHANNELS
from ..runtimes.base import Runner

PARITY_FRAMES = 5
FP32_MAX_ABS = 1e-4


def parity_frames(model: str, height: int, width: int, frames: int = PARITY_FRAMES,
                  seed: int = 0) -> list[np.ndarray]:
    """Seeded images (half a smooth random pattern, half uniform noise) at 5/4 of the input size,
    brought to the model input by the model's own preprocessing, like every real image."""
    rng = np.random.default_rng(seed)
    ih, iw = height * 5 // 4, width * 5 // 4
    yy, xx = np.mgrid[0:ih, 0:iw].astype(np.float32)
    preprocess = preprocess_for(model)
    out = []
    for _ in range(frames):
        fx, fy = rng.uniform(0.5, 4.0, 2)
        smooth = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * xx / iw + fy * yy / ih) + rng.uniform(0, 6.3))
        image = 0.5 * smooth[..., None] + 0.5 * rng.random((ih, iw, 3), dtype=np.float32)
        out.append(preprocess(image.astype(np.float32), height, width)[0])
    return out


def compare(reference: Runner, candidate: Runner, frames: list[np.ndarray], against: str) -> dict:
    """|candidate - reference| over ``frames`` run in order (states carried).

    ``max_abs``/``mean_abs`` are for alpha; ``max_abs_all`` covers every output both sides
    produce (fgr and the recurrent states too), so a broken state path cannot hide behind
    an alpha that happens to be flat.
    """
    reference.reset()
    candidate.reset()
    max_abs, max_all, total, count = 0.0, 0.0, 0.0, 0
    for src in frames:
        ref, got = reference.run(src), candidate.run(src)
        diff = np.abs(got["pha"].astype(np.float64) - ref["pha"])
        max_abs = max(max_abs, float(diff.max()))
        total += float(diff.sum())
        count += diff.size
        for name in set(ref) & set(got):
            max_all = max(max_all, float(np.abs(got[name].astype(np.float64) - ref[name]).max()))
    reference.reset()
    candidate.reset()
    return {"against": against, "frames": len(frames), "max_abs": max_abs, "mean_abs": total / count,
            "max_abs_all": max_all}


def check_outputs(runner: Runner, src: np.ndarray, model: str, where: str) -> None:
    """One frame through ``runner``: ``pha`` (and RVM's ``fgr``) must have the contract's shape
    (N, C, H, W) at the input size, with finite values; else a one-line error naming ``where``."""
    runner.reset()
    out = runner.run(src)
    runner.reset()
    n, _, h, w = src.shape
    for name, channels in OUTPUT_CHANNELS.items():
        if name not in out:
            if name == "pha" or model == "rvm":
                raise MattingDeployError(f"{where}: the model has no '{name}' output")
            continue
        want = (n, channels, h, w)
        if tuple(out[name].shape) != want:
            raise MattingDeployError(f"{where}: output '{name}' has shape {tuple(out[name].shape)}; "
                                     f"the {model} contract is {want}")
        if not np.isfinite(out[name]).all():
            raise MattingDeployError(f"{where}: output '{name}' has NaN or infinite values")
