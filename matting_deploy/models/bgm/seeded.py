"""Seeded random Background Matting v1 networks and inputs, for tests, parity and the demo.

Random weights with PyTorch's default BatchNorm statistics let activations wander layer after
layer; settled statistics and damped BatchNorm gains give a contractive, well-conditioned network
like a trained one, so parity figures measure rounding rather than chaos.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .generator import ResnetConditionHR

SEED = 0
GAIN = 0.7  # BatchNorm scale after settling (the value the export uses for MODNet and RVM)


def seeded_inputs(
    height: int, width: int, batch: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(src, bgr, seg)`` float32 NCHW in [0, 1]: a textured ellipse composited over a plate.

    Plate and foreground are a smooth sinusoid half and uniform noise half; ``seg`` is the
    ellipse's soft mask widened by a few percent, as a segmentation model's would be.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    def texture() -> np.ndarray:
        fx, fy = rng.uniform(0.5, 4.0, 2)
        phase = 2 * np.pi * (fx * xx / width + fy * yy / height) + rng.uniform(0, 6.3)
        smooth = (0.5 + 0.5 * np.sin(phase))[None] * rng.uniform(0.3, 1.0, (3, 1, 1))
        return 0.5 * smooth + 0.5 * rng.random((3, height, width), dtype=np.float32)

    src, bgr, seg = [], [], []
    for _ in range(batch):
        cy, cx = rng.uniform(0.4, 0.6) * height, rng.uniform(0.35, 0.65) * width
        ry, rx = rng.uniform(0.3, 0.45) * height, rng.uniform(0.15, 0.3) * width
        dist = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        alpha = np.clip((1.1 - dist) / 0.2, 0, 1)[None]
        plate, fg = texture(), texture()
        bgr.append(plate)
        src.append(alpha * fg + (1 - alpha) * plate)
        seg.append(np.clip((1.2 - dist) / 0.3, 0, 1)[None])
    return tuple(np.stack(a).astype(np.float32) for a in (src, bgr, seg))


@torch.no_grad()
def settle_batchnorm(net: ResnetConditionHR, seed: int = SEED, gain: float = GAIN,
                     batches: int = 2, size: tuple[int, int] = (64, 64)) -> None:
    """Running statistics from train-mode passes over seeded inputs, then BN gains times ``gain``."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes
    net.train()
    for i in range(batches):
        src, bgr, seg = (torch.from_numpy(a) * 2 - 1 for a in seeded_inputs(*size, 2, seed + i))
        net(src, bgr, seg)
    for m in norms:
        m.weight.mul_(gain)
        m.momentum = 0.1  # PyTorch's default again
    net.eval()


def seeded_generator(seed: int = SEED, gain: float = GAIN) -> ResnetConditionHR:
    """``ResnetConditionHR()`` with seeded random weights and settled BatchNorm, in eval mode."""
    with torch.random.fork_rng():  # the caller's global RNG is left as it was
        torch.manual_seed(seed)
        net = ResnetConditionHR()
    settle_batchnorm(net, seed, gain)
    return net
