"""Bring an existing ONNX to our static contract: the official RVM release, or the official
MODNet export (the MODNet repository's ``onnx/``: input ``input`` in [-1, 1], output ``output``).

:func:`prepare` is the one entry point: the static graph, its recurrent state shapes and the
reference runner that parity is measured against (the source graph, fed the way it expects).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..bundle import StateSpec
from ..errors import MattingDeployError
from ..models.specs import RVM_STATE_CHANNELS, RVM_STATE_NAMES, onnx_safe_scale, rvm_state_shapes
from ..runtimes.base import Runner
from ..runtimes.onnxruntime_runner import OrtRunner, make_session
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


# Ops of a graph that is already quantized (Q/DQ or onnxruntime's integer operator format).
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                 "ConvInteger", "MatMulInteger")


def refuse_reduced_precision(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """A quantized or FP16 graph is not an FP32 source: its "FP32" bundle would be the INT8/FP16
    model compared with itself (parity 0). One line naming what was found."""
    found = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})
    if found:
        raise MattingDeployError(
            f"{path}: already quantized ({', '.join(found)} nodes); export needs the FP32 model "
            f"(calibrate --int8 makes the INT8 artifacts from it)")
    half = onnx.TensorProto.FLOAT16
    if any(t.data_type == half for t in model.graph.initializer) or any(
            i.type.tensor_type.elem_type == half for i in model.graph.input):
        raise MattingDeployError(f"{path}: an FP16 model; export needs the FP32 model (--fp16 makes the FP16 one)")


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


MODNET_INPUT, MODNET_OUTPUT = "input", "output"  # the official MODNet ONNX export's names


def _graph_inputs(model: onnx.ModelProto) -> list[str]:
    init = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in init]


def modnet_to_contract(model: onnx.ModelProto, path: str | os.PathLike, height: int,
                       width: int) -> onnx.ModelProto:
    """The official MODNet layout -> ours: ``src`` RGB in [0, 1] (the (x - 0.5) / 0.5 step moved
    into the graph as ``src * 2 - 1``), output renamed ``pha``, input fixed to 1x3xHxW."""
    inputs, outputs = _graph_inputs(model), [o.name for o in model.graph.output]
    if inputs != [MODNET_INPUT] or outputs != [MODNET_OUTPUT]:
        raise MattingDeployError(
            f"{path}: not the official MODNet ONNX layout (needs input '{MODNET_INPUT}' and output "
            f"'{MODNET_OUTPUT}'; has {inputs} -> {outputs})"
        )
    graph = model.graph
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {t.name for t in graph.initializer}
    clash = sorted(taken & {"src", "pha", "md_two", "md_one", "md_src_x2"})
    if clash:
        raise MattingDeployError(f"{path}: already uses the tensor name '{clash[0]}' of our contract")
    static = onnx.ModelProto.FromString(model.SerializeToString())
    set_input_shapes(static, {MODNET_INPUT: [1, 3, height, width]})
    graph = static.graph
    graph.input[[i.name for i in graph.input].index(MODNET_INPUT)].name = "src"
    graph.initializer.extend([numpy_helper.from_array(np.array(2.0, np.float32), "md_two"),
                              numpy_helper.from_array(np.array(1.0, np.float32), "md_one")])
    head = [helper.make_node("Mul", ["src", "md_two"], ["md_src_x2"], name="md_normalise_mul"),
            helper.make_node("Sub", ["md_src_x2", "md_one"], [MODNET_INPUT], name="md_normalise_sub")]
    for node in graph.node:
        node.output[:] = ["pha" if n == MODNET_OUTPUT else n for n in node.output]
        node.input[:] = ["pha" if n == MODNET_OUTPUT else n for n in node.input]
    nodes = [*head, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.output[0].name = "pha"
    return static


class ModnetSourceRunner(Runner):
    """The official MODNet ONNX as our parity reference: ``src`` in [0, 1] is fed as the source's
    own normalised ``input`` = (src - 0.5) / 0.5 and its ``output`` comes back as ``pha``."""

    def __init__(self, path: str | os.PathLike):
        self.session = make_session(path)

    def run(self, src: np.ndarray) -> dict[str, np.ndarray]:
        x = (np.asarray(src, np.float32) - 0.5) / 0.5
        return {"pha": self.session.run([MODNET_OUTPUT], {MODNET_INPUT: x})[0]}

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self.session = None


def state_specs(shapes: list[tuple[int, ...]] | None) -> list[StateSpec]:
    """RVM's r1..r4 state specs for ``shapes`` (none for a stateless model)."""
    if shapes is None:
        return []
    return [StateSpec(i, o, tuple(s)) for (i, o), s in zip(RVM_STATE_NAMES, shapes, strict=True)]


@dataclass
class Prepared:
    """A source ONNX brought to the static contract, and what parity compares it with."""

    model: onnx.ModelProto
    variant: str
    shapes: list[tuple[int, ...]] | None  # RVM state shapes; None for MODNet
    reference: Runner
    built: str  # what was loaded (the build stage's line)
    changed: str  # what was done to it (the export stage's line)


def prepare(kind: str, path: str | os.PathLike, height: int, width: int, ratio: float) -> Prepared:
    """Load ``path`` (``kind`` 'rvm' or 'modnet') and make it static at ``height`` x ``width``."""
    source = load_source(path)
    refuse_reduced_precision(source, path)
    if kind == "modnet":
        model = modnet_to_contract(source, path, height, width)
        return Prepared(model, "mobilenetv2", None, ModnetSourceRunner(path),
                        f"loaded {path} (official MODNet layout)",
                        "src in [0, 1] with (x - 0.5) / 0.5 inside the graph, output renamed pha, "
                        "input size fixed")
    variant = variant_of(state_channels(source, path))
    model, shapes = make_static(source, path, height, width, ratio)
    return Prepared(model, variant, shapes, OrtRunner(path, state_specs(shapes), ratio),
                    f"loaded {path} (RVM {variant})", "fixed input and state shapes, baked downsample_ratio")
