"""Parity: the same seeded frames through a reference and a candidate runner, outputs compared."""

from __future__ import annotations

import numpy as np

from ..data.preprocess import preprocess_for
from ..data.silhouette import portrait
from ..errors import MattingDeployError
from ..models.specs import OUTPUT_CHANNELS
from ..runtimes.base import Runner

PARITY_FRAMES = 5
# FP32 vs the reference: onnxruntime's CPU InstanceNormalization sums in one float pass, so MODNet
# (10 InstanceNorms) differs from PyTorch by up to 1.1e-4 (480x288) and 4.5e-4 (1024x576) at single
# pixels, mean 9e-6 / 2.6e-5, while PyTorch FP32 is within 4e-6 of float64 (bench/NOTES-validate.md).
# A broken graph (a wrong Resize mode, a lost normalisation) is off by 1e-2 or more.
FP32_MAX_ABS = 1e-3
FP32_MEAN_ABS = 1e-4
TRIVIAL_ALPHA = 0.1  # a reference alpha spanning less than this checks (almost) nothing
FP16_MAX_ABS = 0.25  # FP16 vs FP32, any output: beyond rounding, a saturated or broken layer
FP16_MAX_VALUE = 65504.0  # largest finite FP16 value


Frame = np.ndarray | dict[str, np.ndarray]  # src alone, or every input by name (BGM)


def parity_frames(model: str, height: int, width: int, frames: int = PARITY_FRAMES,
                  seed: int = 0) -> list[Frame]:
    """Drawn portraits (:func:`matting_deploy.data.silhouette.portrait`, the person moving a little
    from frame to frame) at 5/4 of the input size, brought to the model input by the model's own
    preprocessing, like every real image. Trained models give them a real, non-trivial alpha.

    BGM: ``{src, bgr, seg}`` from :func:`~matting_deploy.models.bgm.seeded_inputs` (a textured
    person-like ellipse over its plate with a wider soft mask: a non-trivial alpha)."""
    if model == "bgm":
        from ..models.bgm.seeded import seeded_inputs

        return [dict(zip(("src", "bgr", "seg"), seeded_inputs(height, width, seed=seed + k),
                         strict=True)) for k in range(frames)]
    rng = np.random.default_rng(seed)
    ih, iw = height * 5 // 4, width * 5 // 4
    preprocess = preprocess_for(model)
    return [preprocess(portrait(ih, iw, rng, shift=0.02 * t), height, width)[0] for t in range(frames)]


def alpha_summary(alphas: list[np.ndarray]) -> dict:
    """How much matte the parity frames carry: alpha range, foreground and soft-edge shares."""
    a = np.concatenate([np.asarray(x, np.float64).ravel() for x in alphas])
    return {"min": float(a.min()), "max": float(a.max()), "range": float(a.max() - a.min()),
            "foreground": float(np.mean(a > 0.5)), "soft": float(np.mean((a > 0.05) & (a < 0.95)))}


def compare(reference: Runner | list[dict], candidate: Runner, frames: list[Frame], against: str,
            keep: list[dict] | None = None) -> dict:
    """|candidate - reference| over ``frames`` run in order (states carried).

    ``max_abs``/``mean_abs`` are for alpha; ``outputs`` has max/mean for every output both sides
    produce (fgr and the recurrent states too) and ``max_abs_all``/``mean_abs_all`` the largest of
    each, so a broken state path cannot hide behind a flat alpha; ``alpha`` summarises the reference's alpha
    (:func:`alpha_summary`: a range near 0 means the comparison checked little); ``nonfinite``
    counts NaN/inf values the candidate returned. ``reference`` may be the outputs of an earlier
    pass (one dict per frame, e.g. ``keep`` of an earlier call, which collects the candidate's
    outputs): the heaviest model is not run twice.
    """
    recorded = reference if isinstance(reference, list) else None
    if recorded is None:
        reference.reset()
    candidate.reset()
    stats: dict[str, list[float]] = {}
    ref_alpha, nonfinite = [], 0
    for k, frame in enumerate(frames):
        inputs = _inputs(frame)
        ref = recorded[k] if recorded is not None else reference.run(**inputs)
        got = candidate.run(**inputs)
        if keep is not None:
            keep.append({n: np.array(v, copy=True) for n, v in got.items()})
        nonfinite += sum(int(np.size(v) - np.isfinite(v).sum()) for v in got.values())
        ref_alpha.append(ref["pha"])
        for name in sorted(set(ref) & set(got)):
            diff = np.abs(got[name].astype(np.float64) - ref[name])
            s = stats.setdefault(name, [0.0, 0.0, 0])
            s[0], s[1], s[2] = max(s[0], float(diff.max())), s[1] + float(diff.sum()), s[2] + diff.size
    if recorded is None:
        reference.reset()
    candidate.reset()
    outputs = {k: {"max_abs": v[0], "mean_abs": v[1] / v[2]} for k, v in stats.items()}
    return {"against": against, "frames": len(frames), "max_abs": outputs["pha"]["max_abs"],
            "mean_abs": outputs["pha"]["mean_abs"], "max_abs_all": max(v["max_abs"] for v in outputs.values()),
            "mean_abs_all": max(v["mean_abs"] for v in outputs.values()),
            "outputs": outputs, "alpha": alpha_summary(ref_alpha), "nonfinite": nonfinite}


def _inputs(frame: Frame) -> dict[str, np.ndarray]:
    return frame if isinstance(frame, dict) else {"src": frame}


def check_outputs(runner: Runner, frame: Frame, model: str, where: str) -> None:
    """One frame (``src``, or BGM's inputs by name) through ``runner``: ``pha`` (and RVM's and
    BGM's ``fgr``) must have the contract's shape (N, C, H, W) at the input size, with finite
    values; else a one-line error naming ``where``."""
    inputs = _inputs(frame)
    runner.reset()
    out = runner.run(**inputs)
    runner.reset()
    n, _, h, w = inputs["src"].shape
    for name, channels in OUTPUT_CHANNELS.items():
        if name not in out:
            if name == "pha" or model in ("rvm", "bgm"):
                raise MattingDeployError(f"{where}: the model has no '{name}' output")
            continue
        want = (n, channels, h, w)
        if tuple(out[name].shape) != want:
            raise MattingDeployError(f"{where}: output '{name}' has shape {tuple(out[name].shape)}; "
                                     f"the {model} contract is {want}")
        if not np.isfinite(out[name]).all():
            raise MattingDeployError(f"{where}: output '{name}' has NaN or infinite values")
