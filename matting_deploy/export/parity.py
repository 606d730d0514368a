"""Parity: the same seeded frames through a reference and a candidate runner, outputs compared."""

from __future__ import annotations

import numpy as np

from ..data.preprocess import preprocess_for
from ..runtimes.base import Runner

PARITY_FRAMES = 5
FP32_MAX_ABS = 1e-4
FP16_MAX_ABS = 0.25  # FP16 vs FP32, any output: beyond rounding, a saturated or broken layer
FP16_MAX_VALUE = 65504.0  # largest finite FP16 value


Frame = np.ndarray | dict[str, np.ndarray]  # src alone, or every input by name (BGM)


def parity_frames(model: str, height: int, width: int, frames: int = PARITY_FRAMES,
                  seed: int = 0) -> list[Frame]:
    """Seeded images (half a smooth random pattern, half uniform noise) at 5/4 of the input size,
    brought to the model input by the model's own preprocessing, like every real image.

    BGM: ``{src, bgr, seg}`` from :func:`~matting_deploy.models.bgm.seeded_inputs` (a textured
    person-like ellipse over its plate with a wider soft mask: a non-trivial alpha)."""
    if model == "bgm":
        from ..models.bgm.seeded import seeded_inputs

        return [dict(zip(("src", "bgr", "seg"), seeded_inputs(height, width, seed=seed + k),
                         strict=True)) for k in range(frames)]
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


def compare(reference: Runner | list[dict], candidate: Runner, frames: list[Frame], against: str,
            keep: list[dict] | None = None) -> dict:
    """|candidate - reference| over ``frames`` run in order (states carried).

    ``max_abs``/``mean_abs`` are for alpha; ``max_abs_all`` covers every output both sides
    produce (fgr and the recurrent states too), so a broken state path cannot hide behind
    an alpha that happens to be flat; ``nonfinite`` counts NaN/inf values the candidate returned.
    ``reference`` may be the outputs of an earlier pass (one dict per frame, e.g. ``keep`` of an
    earlier call, which collects the candidate's outputs): the heaviest model is not run twice.
    """
    recorded = reference if isinstance(reference, list) else None
    if recorded is None:
        reference.reset()
    candidate.reset()
    max_abs, max_all, total, count, nonfinite = 0.0, 0.0, 0.0, 0, 0
    for k, frame in enumerate(frames):
        inputs = frame if isinstance(frame, dict) else {"src": frame}
        ref = recorded[k] if recorded is not None else reference.run(**inputs)
        got = candidate.run(**inputs)
        if keep is not None:
            keep.append({n: np.array(v, copy=True) for n, v in got.items()})
        nonfinite += sum(int(np.size(v) - np.isfinite(v).sum()) for v in got.values())
        diff = np.abs(got["pha"].astype(np.float64) - ref["pha"])
        max_abs = max(max_abs, float(diff.max()))
        total += float(diff.sum())
        count += diff.size
        for name in set(ref) & set(got):
            max_all = max(max_all, float(np.abs(got[name].astype(np.float64) - ref[name]).max()))
    if recorded is None:
        reference.reset()
    candidate.reset()
    return {"against": against, "frames": len(frames), "max_abs": max_abs, "mean_abs": total / count,
            "max_abs_all": max_all, "nonfinite": nonfinite}
