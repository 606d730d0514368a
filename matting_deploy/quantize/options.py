"""The calibrate stage's options: one small dataclass, checked once."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..bundle import trt_cache
from ..calib.feeder import AUGMENTS as FEEDER_AUGMENTS
from ..errors import MattingDeployError

TARGETS = ("tensorrt", "cpu")
HOLDOUT_BY = ("person", "image")
AUGMENTS = tuple(FEEDER_AUGMENTS)


@dataclass(frozen=True)
class CalibrateOptions:
    """What ``calibrate --int8`` does (see :func:`matting_deploy.quantize.pipeline.run_calibration`).

    ``bias_correction`` and ``weight_rounding``: the parameter levers of :mod:`.adjust` (TensorRT
    target only; no runtime cost). ``augment``: ``flip`` adds each calibration image's mirror
    image to the statistics, ``jitter`` a brightness- and zoom-jittered copy (the held-out-person
    folds decide the default; bench/NOTES-int8.md). ``holdout_by``: what ``max_drift`` holds out to
    rank layers on: whole persons where the data's manifest.csv names them, else images.
    """

    num: int = 100
    method: str = "entropy"
    max_drift: float | None = None
    seed: int = 0
    warmup_frames: int = 4
    force: bool = False
    trt_version: str = trt_cache.DEFAULT_TRT_VERSION
    target: str = "tensorrt"
    seg_bundle: str | Path | None = None
    bias_correction: bool = True
    weight_rounding: bool = True
    augment: str = "none"
    holdout_by: str = "person"

    @classmethod
    def of(cls, options: CalibrateOptions | None = None, **changes) -> CalibrateOptions:
        """``options`` (default: the defaults) with ``changes``; unknown names are an error."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(changes) - known)
        if bad:
            raise MattingDeployError(f"calibrate: unknown option(s) {', '.join(bad)}")
        return replace(options or cls(), **changes)

    def check(self) -> None:
        """One-line errors for bad values (before the bundle is locked)."""
        if self.target not in TARGETS:
            raise MattingDeployError(f"--target: unknown target '{self.target}' (choose {', '.join(TARGETS)})")
        if self.max_drift is not None and self.target != "tensorrt":
            raise MattingDeployError("--max-drift: only with --target tensorrt (the fallback search "
                                     "measures the TensorRT recipe)")
        if self.num < 1:
            raise MattingDeployError(f"--num must be at least 1, got {self.num}")
        if self.seed < 0:
            raise MattingDeployError(f"--seed must be 0 or more, got {self.seed}")
        if self.warmup_frames < 1:
            raise MattingDeployError(f"--warmup-frames must be at least 1, got {self.warmup_frames}")
        if self.max_drift is not None and not 0 < self.max_drift < float("inf"):
            raise MattingDeployError(f"--max-drift must be a positive number, got {self.max_drift}")
        if self.holdout_by not in HOLDOUT_BY:
            raise MattingDeployError(f"--holdout-by: unknown '{self.holdout_by}' (choose {', '.join(HOLDOUT_BY)})")
        if self.augment not in AUGMENTS:
            raise MattingDeployError(f"--augment: unknown '{self.augment}' (choose {', '.join(AUGMENTS)})")
