"""The one preprocessing step per model, shared by export parity, calibration, validation and runners.

Every exported graph takes ``src``: RGB in [0, 1], NCHW float32 (MODNet's (x-0.5)/0.5 and RVM's
ImageNet normalisation happen inside the graph), so both models share the same geometry step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import MattingDeployError
from .imaging import resize_image, resize_plane

RESIZE_MODES = ("stretch", "letterbox")


@dataclass(frozen=True)
class Geometry:
    """Where the original image sits inside the model input (for mapping alpha back)."""

    src_hw: tuple[int, int]
    top: int
    left: int
    height: int
    width: int


def to_model_input(
    image: np.ndarray, height: int, width: int, resize: str = "stretch"
) -> tuple[np.ndarray, Geometry]:
    """RGB float (H, W, 3) in [0, 1] -> (1, 3, height, width) float32 and its geometry.

    ``stretch`` squeezes the image to the input size (the published protocol); ``letterbox``
    keeps the aspect ratio and pads with zeros around the centred image.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise MattingDeployError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    h, w = image.shape[:2]
    if resize == "stretch":
        geo = Geometry((h, w), 0, 0, height, width)
    elif resize == "letterbox":
        scale = min(height / h, width / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        geo = Geometry((h, w), (height - nh) // 2, (width - nw) // 2, nh, nw)
    else:
        raise MattingDeployError(f"unknown resize mode '{resize}' (choose {', '.join(RESIZE_MODES)})")
    canvas = np.zeros((height, width, 3), np.float32)
    canvas[geo.top : geo.top + geo.height, geo.left : geo.left + geo.width] = resize_image(
        image, geo.height, geo.width
    )
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), geo


def alpha_plane(pha: np.ndarray, where: str = "model") -> np.ndarray:
    """Alpha ``(1, 1, h, w)`` (or ``(h, w)``) as an ``(h, w)`` float32 plane; a one-line error
    when ``pha`` breaks the output contract (e.g. 3 channels)."""
    pha = np.asarray(pha, dtype=np.float32)
    if pha.ndim < 2 or pha.size != pha.shape[-2] * pha.shape[-1]:
        raise MattingDeployError(f"{where}: output 'pha' has shape {pha.shape}; the contract is "
                                 "(1, 1, H, W)")
    return pha.reshape(pha.shape[-2:])


def alpha_to_source(pha: np.ndarray, geo: Geometry) -> np.ndarray:
    """Model alpha ((1, 1, h, w) or (h, w)) -> alpha at the original image size, clipped to [0, 1]."""
    plane = alpha_plane(pha)
    plane = plane[geo.top : geo.top + geo.height, geo.left : geo.left + geo.width]
    return np.clip(resize_plane(plane, *geo.src_hw), 0.0, 1.0)


Preprocess = Callable[..., tuple[np.ndarray, Geometry]]

# One entry per model: today both graphs take the same raw RGB input; a model whose graph
# needs a different host-side step gets its own function here, and every caller picks it up.
PREPROCESS: dict[str, Preprocess] = {"modnet": to_model_input, "rvm": to_model_input,
                                     "bgm": to_model_input}
# Inputs a model takes besides src, made per image by their own module (BGM: data/bgm.py).
EXTRA_INPUTS: dict[str, tuple[str, ...]] = {"bgm": ("bgr", "seg")}


def extra_inputs(model: str) -> tuple[str, ...]:
    """Names of the inputs ``model`` needs besides ``src`` (empty for MODNet and RVM)."""
    return EXTRA_INPUTS.get(model, ())


def preprocess_for(model: str) -> Preprocess:
    """The preprocessing function of ``model`` ('modnet', 'rvm' or 'bgm': src only)."""
    try:
        return PREPROCESS[model]
    except KeyError:
        raise MattingDeployError(f"unknown model '{model}'") from None
