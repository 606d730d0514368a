"""Implicit INT8 as TensorRT 8.5/8.6/10.0 will run it, emulated on onnxruntime CPU: what the build
plan (:mod:`matting_deploy.bundle.trt_plan`) asks for.

From model.onnx and calib.cache: a Conv runs INT8 when its input, raw output and fused output have
scales (:func:`~.rules_implicit.runs_int8`) and calib.json lists it (``int8_layers``: the plan
constrains those to INT8 with a float output, and keeps every other layer out of INT8). For those
Convs the weights are fake-quantized per output channel (symmetric INT8, max |w| / 127) and the
input through QuantizeLinear/DequantizeLinear with the cache's scale; their output is float, as the
Q/DQ artifact computes it. Every other float tensor a layer computes is rounded to FP16 (Cast to
FP16 and back), except inside a fused Conv and the outputs of the FP32 layers the plan pins: the
ops the FP16 artifacts keep in FP32 and the recurrent-state update (``fp32_nodes``; an INT8 Conv
there writes FP32). An INT8 Conv's input is quantized for the Conv only.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graph import FLOAT_TYPES, ModelView
from .rules_implicit import CONVS, fused_output, runs_int8

WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}


def int8_convs(view: ModelView, scales: dict[str, float], int8_layers: set[str] | None = None) -> list:
    """The Conv nodes that run INT8 in the implicit engine."""
    return [n for n in view.nodes if n.op_type in CONVS and runs_int8(view, n, scales)[0]
            and (int8_layers is None or n.name in int8_layers)]


def fake_quant_weights(w: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric per-channel INT8 (scale = max |w| / 127 along ``axis``), back to float32."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=other, keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def implicit_emulation(model: onnx.ModelProto, scales: dict[str, float], int8_layers: set[str] | None = None,
                       fp32_ops=None, fp32_nodes=()) -> onnx.ModelProto:
    """The emulation model (a new ModelProto; ``model`` is not changed). ``fp32_nodes``: nodes kept
    FP32 besides ``fp32_ops`` (the recurrent update: :func:`~matting_deploy.bundle.trt_plan.recurrent_nodes`)."""
    from .report import default_fp32_ops

    fp32_ops = set(default_fp32_ops() if fp32_ops is None else fp32_ops)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    view = ModelView(copy)
    out = view.model  # the shape-inferred copy whose nodes the view holds
    graph = out.graph
    convs = int8_convs(view, scales, int8_layers)
    inits = {i.name: i for i in graph.initializer}
    conv_inputs, internal = {}, set()
    for conv in convs:
        internal |= set(fused_output(view, conv)[:-1])
        conv_inputs.setdefault(conv.input[0], []).append(conv)
        w = conv.input[1]
        if w in inits:
            q = numpy_helper.from_array(
                fake_quant_weights(numpy_helper.to_array(inits[w]), WEIGHT_AXIS[conv.op_type]), f"{w}__int8")
            graph.initializer.append(q)
            conv.input[1] = q.name
    new_nodes = []
    for tensor in sorted(conv_inputs):
        if tensor not in scales:
            continue
        scale = numpy_helper.from_array(np.array(scales[tensor], np.float32), f"{tensor}__scale")
        zero = numpy_helper.from_array(np.array(0, np.int8), f"{tensor}__zp")
        graph.initializer.extend([scale, zero])
        fq = f"{tensor}__int8"
        for conv in conv_inputs[tensor]:
            conv.input[0] = fq
        new_nodes += [helper.make_node("QuantizeLinear", [tensor, scale.name, zero.name], [f"{tensor}__q"]),
                      helper.make_node("DequantizeLinear", [f"{tensor}__q", scale.name, zero.name], [fq])]
    for node in view.nodes:
        if node.op_type in fp32_ops or node.name in fp32_nodes or node.op_type in ("Constant", "Shape", "Cast"):
            continue
        for k, tensor in enumerate(node.output):
            if not tensor or tensor in internal or view.elem_type(tensor) not in FLOAT_TYPES:
                continue
            pre = f"{tensor}__fp32"
            node.output[k] = pre
            new_nodes += [helper.make_node("Cast", [pre], [f"{tensor}__fp16"], to=TensorProto.FLOAT16),
                          helper.make_node("Cast", [f"{tensor}__fp16"], [tensor], to=TensorProto.FLOAT)]
    graph.node.extend(new_nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    _toposort(graph)
    del graph.value_info[:]
    return out


def _toposort(graph: onnx.GraphProto) -> None:
    """Order ``graph.node`` so every node follows the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    todo, ordered = list(graph.node), []
    while todo:
        rest = []
        for node in todo:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(todo):
            raise ValueError(f"emulation graph has a cycle or a dangling input at {rest[0].name or rest[0].op_type}")
        todo = rest
    copies = [onnx.NodeProto() for _ in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)
