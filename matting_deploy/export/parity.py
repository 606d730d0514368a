"""Parity: the same seeded frames through a reference and a candidate runner, outputs compared."""

from __future__ import annotations

import numpy as np

from ..data.preprocess import preprocess_for
from ..data.silhouette import portrait
from ..errors import MattingDeployError
from ..models.specs import OUTPUT_CHANNELS
from ..runtimes.base import Runner

PARITY_FRAMES = 5
FP32_MAX_ABS = 1e-4
TRIVIAL_ALPHA = 0.1  # a reference alpha spanning less than this checks (almost) nothing


def parity_frames(model: str, height: int, width: int, frames: int = PARITY_FRAMES,
                  seed: int = 0) -> list[np.ndarray]:
    """Drawn portraits (:func:`matting_deploy.data.silhouette.portrait`, the person moving a little
    from frame to frame) at 5/4 of the input size, brought to the model input by the model's own
    preprocessing, like every real image. Trained models give them a real, non-trivial alpha."""
    rng = np.random.default_rng(seed)
    ih, iw = height * 5 // 4, width * 5 // 4
    preprocess = preprocess_for(model)
    return [preprocess(portrait(ih, iw, rng, shift=0.02 * t), height, width)[0] for t in range(frames)]


def alpha_summary(alphas: list[np.ndarray]) -> dict:
    """How much matte the parity frames carry: alpha range, foreground and soft-edge shares."""
    a = np.concatenate([np.asarray(x, np.float64).ravel() for x in alphas])
    return {"min": float(a.min()), "max": float(a.max()), "range": float(a.max() - a.min()),
            "foreground": float(np.mean(a > 0.5)), "soft": float(np.mean((a > 0.05) & (a < 0.95)))}


def compare(reference: Runner, candidate: Runner, frames: list[np.ndarray], against: str) -> dict:
    """|candidate - reference| over ``frames`` run in order (states carried).

    ``max_abs``/``mean_abs`` are for alpha; ``outputs`` has max/mean for every output both sides
    produce (fgr and the recurrent states too) and ``max_abs_all`` their maximum, so a broken
    state path cannot hide behind a flat alpha; ``alpha`` summarises the reference's alpha
    (:func:`alpha_summary`: a range near 0 means the comparison checked little).
    """
    reference.reset()
    candidate.reset()
    stats: dict[str, list[float]] = {}
    ref_alpha = []
    for src in frames:
        ref, got = reference.run(src), candidate.run(src)
        ref_alpha.append(ref["pha"])
        for name in sorted(set(ref) & set(got)):
            diff = np.abs(got[name].astype(np.float64) - ref[name])
            s = stats.setdefault(name, [0.0, 0.0, 0])
            s[0], s[1], s[2] = max(s[0], float(diff.max())), s[1] + float(diff.sum()), s[2] + diff.size
    reference.reset()
    candidate.reset()
    outputs = {k: {"max_abs": v[0], "mean_abs": v[1] / v[2]} for k, v in stats.items()}
    return {"against": against, "frames": len(frames), "max_abs": outputs["pha"]["max_abs"],
            "mean_abs": outputs["pha"]["mean_abs"], "max_abs_all": max(v["max_abs"] for v in outputs.values()),
            "outputs": outputs, "alpha": alpha_summary(ref_alpha)}


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
