"""Static facts about each model that runners and exporters need without importing torch."""

from __future__ import annotations

import math

MODELS = ("modnet", "rvm")
RVM_VARIANTS = ("mobilenetv3", "resnet50")
# Recurrent state channels r1..r4 per RVM encoder (decoder channels [16, 20|32, 40|64, 64|128]).
RVM_STATE_CHANNELS = {"mobilenetv3": (16, 20, 40, 64), "resnet50": (16, 32, 64, 128)}
RVM_STATE_NAMES = tuple((f"r{i}i", f"r{i}o") for i in range(1, 5))
DEFAULT_HW = (480, 288)


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
