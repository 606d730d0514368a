"""Implicit INT8 as TensorRT 8.5/8.6/10.0 will run it, emulated on onnxruntime CPU.

From model.onnx and calib.cache: a Conv runs INT8 when its input and (fused) output have scales
(:func:`~.rules_implicit.runs_int8`) and `build` does not pin it to FP16 (``int8_layers``). For
those Convs the weights are fake-quantized per output channel (symmetric INT8, max |w| / 127)
and the input and fused output through QuantizeLinear/DequantizeLinear with the cache's scale;
every other float tensor a layer computes is rounded to FP16 (Cast to FP16 and back), except the
outputs of the ops the FP16 artifacts keep in FP32. The fused output of an INT8 Conv is INT8 for
all its readers; an INT8 Conv's input produced by a float layer is quantized for the Conv only.
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
                       fp32_ops=None) -> onnx.ModelProto:
    """The emulation model (a new ModelProto; ``model`` is not changed)."""
    from .report import default_fp32_ops

    fp32_ops = set(default_fp32_ops() if fp32_ops is None else fp32_ops)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    view = ModelView(copy)
    out = view.model  # the shape-inferred copy whose nodes the view holds
    graph = out.graph
    convs = int8_convs(view, scales, int8_layers)
    inits = {i.name: i for i in graph.initializer}
    produced_int8, conv_inputs, internal = set(), {}, set()
    for conv in convs:
        chain = fused_output(view, conv)
        produced_int8.add(chain[-1])
        internal |= set(chain[:-1])
        conv_inputs.setdefault(conv.input[0], []).append(conv)
        w = conv.input[1]
        if w in inits:
            q = numpy_helper.from_array(
                fake_quant_weights(numpy_helper.to_array(inits[w]), WEIGHT_AXIS[conv.op_type]), f"{w}__int8")
            graph.initializer.append(q)
            conv.input[1] = q.name
    outputs = {o.name for o in graph.output}
    new_nodes = []

    def rewire(tensor: str, new: str, readers) -> None:
        for node in readers:
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = new

    for tensor in sorted(produced_int8 | set(conv_inputs)):
        if tensor not in scales:
            continue
        scale = numpy_helper.from_array(np.array(scales[tensor], np.float32), f"{tensor}__scale")
        zero = numpy_helper.from_array(np.array(0, np.int8), f"{tensor}__zp")
        graph.initializer.extend([scale, zero])
        if tensor in outputs and tensor in produced_int8:  # the output keeps its name: readers too
            producer = view.producer[tensor]
            src, fq = f"{tensor}__pre", tensor
            producer.output[list(producer.output).index(tensor)] = src
        else:
            src, fq = tensor, f"{tensor}__int8"
            readers = view.consumers.get(tensor, []) if tensor in produced_int8 else conv_inputs[tensor]
            rewire(tensor, fq, list(readers))
        new_nodes += [helper.make_node("QuantizeLinear", [src, scale.name, zero.name], [f"{tensor}__q"]),
                      helper.make_node("DequantizeLinear", [f"{tensor}__q", scale.name, zero.name], [fq])]
    done = produced_int8 | internal
    for node in view.nodes:
        if node.op_type in fp32_ops or node.op_type in ("Constant", "Shape", "Cast"):
            continue
        for k, tensor in enumerate(node.output):
            if not tensor or tensor in done or view.elem_type(tensor) not in FLOAT_TYPES:
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
