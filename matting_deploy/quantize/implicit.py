"""What implicit INT8 (TensorRT 8.5/8.6/10.0) needs from calibration: scales on both sides of
every Conv the recipe runs in INT8, whether or not TensorRT fuses the activation after it.

TensorRT runs a layer in INT8 only when the tensors it consumes and produces have scales. A Conv
fused with the activation after it writes the activation's output
(:func:`matting_deploy.check.fused_output`); left unfused it writes its own raw output. The cache
holds both (``output`` and ``raw_output`` in calib.json's ``conv_sides``), so the Conv can run INT8
either way. The Q/DQ model names the Convs (:func:`matting_deploy.check.intended_int8_convs`); this
module turns them into cache tensors.
"""

from __future__ import annotations

import onnx
from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX

from ..check import fused_output, intended_int8_convs
from ..check.graph import ModelView
from ..check.rules_implicit import CONVS
from .sensitivity import quantized_nodes


def planned_outputs(model: onnx.ModelProto, tensors: set[str], excluded: set[str], op_types) -> set[str]:
    """The output tensors to calibrate before the Q/DQ model exists: those of the Convs the recipe
    will quantize (of its op types, not kept in float, data input among ``tensors``)."""
    nodes = quantized_nodes(model, op_types, excluded, dict.fromkeys(tensors))
    convs = {n.name for n in model.graph.node if n.name in nodes and n.op_type in CONVS}
    raw = {n.output[0] for n in model.graph.node if n.name in convs}
    return set(output_tensors(model, convs).values()) | raw


def output_tensors(model: onnx.ModelProto | ModelView, convs: set[str]) -> dict[str, str]:
    """{conv: the tensor whose scale is the conv's INT8 output} (after its fused activation)."""
    view = model if isinstance(model, ModelView) else ModelView(model)
    return {n.name: fused_output(view, n)[-1] for n in view.nodes if n.name in convs}


def cache_tensors(fp32: onnx.ModelProto, qdq_model: onnx.ModelProto) -> tuple[list[str], dict[str, dict]]:
    """(tensors calib.cache must hold, {conv: {"input", "output"}}) for the Q/DQ model's INT8 Convs.

    Every activation the Q/DQ model quantizes keeps its scale; each INT8 Conv adds its fused output
    and its raw output (the same tensor when nothing is fused into it). Tensor names are ``fp32``'s
    (what TensorRT's parser names the network tensors).
    """
    view = ModelView(fp32)
    convs = intended_int8_convs(qdq_model)
    sides = {n.name: {"input": n.input[0], "output": fused_output(view, n)[-1], "raw_output": n.output[0]}
             for n in view.nodes if n.name in convs}
    # a quantized graph output X is fed to its Q as X + QUANT_INPUT_SUFFIX (onnxruntime renames it)
    quantized = [n.input[0].removesuffix(QUANT_INPUT_SUFFIX) for n in qdq_model.graph.node
                 if n.op_type == "QuantizeLinear"]
    names = set(view.producer) | set(view.inputs)
    ordered = [t for t in quantized if t in names]
    ordered += [s[side] for s in sides.values() for side in ("input", "output", "raw_output")]
    return list(dict.fromkeys(ordered)), sides
