"""Static facts about each model that runners and exporters need without importing torch."""

from __future__ import annotations

import math

import numpy as np

MODELS = ("modnet", "rvm", "bgm")
RVM_VARIANTS = ("mobilenetv3", "resnet50")
# Recurrent state channels r1..r4 per RVM encoder (decoder channels [16, 20|32, 40|64, 64|128]).
RVM_STATE_CHANNELS = {"mobilenetv3": (16, 20, 40, 64), "resnet50": (16, 32, 64, 128)}
RVM_STATE_NAMES = tuple((f"r{i}i", f"r{i}o") for i in range(1, 5))
DEFAULT_HW = (480, 288)
# Background Matting v1: ONNX contract (models/bgm/deploy.py) and input size rule.
BGM_INPUTS = ("src", "bgr", "seg")  # [N,3,H,W], [N,3,H,W], [N,1,H,W], all in [0, 1]
BGM_OUTPUTS = ("pha", "fgr")  # [N,1,H,W], [N,3,H,W], in [0, 1]
BGM_DEFAULT_HW = (512, 512)  # the official test resolution
BGM_SIZE_MULTIPLE = 4  # two stride-2 convs down, two x2 upsamplings back up, a 1/2-scale skip
BGM_MIN_SIZE = 8  # the residual blocks reflection-pad by 1 at 1/4 scale: at least 2 pixels there


def bgm_size_problem(height: int, width: int) -> str | None:
    """None when Background Matting v1 can run at ``height`` x ``width``, else the reason."""
    if height % BGM_SIZE_MULTIPLE or width % BGM_SIZE_MULTIPLE:
        return f"BGM needs height and width divisible by {BGM_SIZE_MULTIPLE}, got {height}x{width}"
    if min(height, width) < BGM_MIN_SIZE:
        return f"BGM needs height and width of at least {BGM_MIN_SIZE}, got {height}x{width}"
    return None
# The output contract of both models: name -> channels of its (N, C, H, W) tensor at input size.
OUTPUT_CHANNELS = {"pha": 1, "fgr": 3}


def rvm_state_shapes(
    channels: tuple[int, ...], height: int, width: int, ratio: float = 1.0, batch: int = 1
) -> list[tuple[int, int, int, int]]:
    """Shapes of r1..r4 for a ``batch x 3 x height x width`` input at ``downsample_ratio``.

    The encoder sees the input resized to floor(size * ratio); r_k lives at 1/2**k of that,
    each stride-2 stage rounding up.
    """
    h, w = (math.floor(height * ratio), math.floor(width * ratio)) if ratio != 1 else (height, width)
    shapes = []
    for c in channels:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        shapes.append((batch, c, h, w))
    return shapes


def onnx_safe_scale(ratio: float, sizes: tuple[int, ...]) -> float:
    """A float32-exact scale near ``ratio`` whose ONNX Resize output size equals PyTorch's.

    PyTorch sizes the downsampled image as floor(size * ratio) in float64; ONNX runtimes compute
    floor(float32(scale) * size) in float32, which can land one pixel higher (e.g. 90 * 0.7 ->
    62 vs 63) and break the recurrent-state shapes. Stepping the float32 scale by a few ulps fixes
    the sizes while changing the sampling grid by ~1e-7 relative.
    """
    targets = [math.floor(s * ratio) for s in sizes]
    scale = np.float32(ratio)
    for _ in range(16):
        got = [int(scale * np.float32(s)) for s in sizes]
        exact = [math.floor(float(scale) * s) for s in sizes]
        if got == targets and exact == targets:
            return float(scale)
        toward = (
            np.float32(0)
            if any(g > t for g, t in zip(got, targets, strict=True))
            else np.float32(np.inf)
        )
        scale = np.nextafter(scale, toward)
    return ratio
