"""``--seg-bundle``: another of our bundles (RVM or MODNet) as the person segmenter of BGM.

Its FP32 alpha at the image's resolution is the raw mask; :func:`matting_deploy.data.bgm.official_seg`
then thresholds, erodes, dilates and blurs it the way the official Background Matting test script
treats its segmentation.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..bundle import Bundle
from ..data.preprocess import alpha_to_source, preprocess_for
from ..errors import MattingDeployError
from .open import open_runner

WARMUP = 4  # recurrent segmenters run a still image this many times from zero state (validate's protocol)


class BundleSegmenter:
    """Callable ``image (H, W, 3) -> alpha (H, W)`` backed by a bundle's FP32 artifact on the CPU."""

    def __init__(self, bundle: str | os.PathLike, backend: str = "cpu"):
        bun = Bundle.open(bundle)
        if bun.model not in ("rvm", "modnet"):
            raise MattingDeployError(f"--seg-bundle {bun.root}: a {bun.model} bundle cannot segment "
                                     "(use an RVM or MODNet bundle)")
        self.root, self.hw = bun.root, bun.input_hw
        self.preprocess = preprocess_for(bun.model)
        self.frames = WARMUP if bun.recurrent else 1
        self.runner = open_runner(bun, "fp32", backend)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        src, geo = self.preprocess(image, *self.hw)
        self.runner.reset()
        for _ in range(self.frames):
            out = self.runner.run(src)
        return alpha_to_source(out["pha"], geo)

    def close(self) -> None:
        self.runner.close()


def segmenter(bundle: str | os.PathLike | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """A :class:`BundleSegmenter` for ``--seg-bundle`` (None when not given)."""
    return BundleSegmenter(bundle) if bundle else None
