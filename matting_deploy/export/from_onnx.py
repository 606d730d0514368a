"""Bring an existing RVM ONNX (e.g. the official release) to our static contract."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from ..errors import MattingDeployError
from ..models.specs import RVM_STATE_CHANNELS, RVM_STATE_NAMES, onnx_safe_scale, rvm_state_shapes
from .onnx_tools import bake_input, set_input_shapes

RVM_INPUTS = {"src", "r1i", "r2i", "r3i", "r4i"}
RVM_OUTPUTS = {"fgr", "pha", "r1o", "r2o", "r3o", "r4o"}


def load_source(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file, with a one-line error for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise MattingDeployError(f"{path}: no such file")
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise MattingDeployError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None


def state_channels(model: onnx.ModelProto, path: str | os.PathLike) -> tuple[int, ...]:
    """Channels of r1..r4, read from the r1o..r4o output declarations."""
    names = {i.name for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    if not RVM_INPUTS <= names or not RVM_OUTPUTS <= set(outputs):
        raise MattingDeployError(
            f"{path}: not an RVM-shaped graph (needs inputs {sorted(RVM_INPUTS)} and "
            f"outputs {sorted(RVM_OUTPUTS)}; has {sorted(names)} -> {sorted(outputs)})"
        )
    channels = []
    for _, out in RVM_STATE_NAMES:
        dims = outputs[out].type.tensor_type.shape.dim
        if len(dims) != 4 or not dims[1].HasField("dim_value"):
            raise MattingDeployError(f"{path}: output '{out}' does not declare its channel count")
        channels.append(dims[1].dim_value)
    return tuple(channels)


def variant_of(channels: tuple[int, ...]) -> str:
    """The RVM encoder whose state channels these are ('custom' if none)."""
    return next((v for v, c in RVM_STATE_CHANNELS.items() if c == channels), "custom")


def make_static(
    model: onnx.ModelProto, path: str | os.PathLike, height: int, width: int, ratio: float
) -> tuple[onnx.ModelProto, list[tuple[int, ...]]]:
    """A copy with src and r1i..r4i fixed to their real shapes and downsample_ratio baked in."""
    channels = state_channels(model, path)
    shapes = rvm_state_shapes(channels, height, width, ratio)
    static = onnx.ModelProto.FromString(model.SerializeToString())
    fixed = {"src": [1, 3, height, width]}
    fixed.update({name: list(shape) for (name, _), shape in zip(RVM_STATE_NAMES, shapes, strict=True)})
    set_input_shapes(static, fixed)
    if any(i.name == "downsample_ratio" for i in static.graph.input):
        # the float32 scale whose Resize output size equals floor(size * ratio), as the states expect
        scale = onnx_safe_scale(ratio, (height, width)) if ratio != 1 else 1.0
        bake_input(static, "downsample_ratio", np.array([scale], np.float32))
    return static, shapes
