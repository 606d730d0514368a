"""The INT8 artifact for strongly typed TensorRT (>= 10.1, all of 11.x): FP16 outside Q/DQ.

A strongly typed build follows the ONNX types, so everything outside the Q/DQ pairs must already be
FP16 in the file (FP32 there would run in FP32). Like NVIDIA ModelOpt's
``high_precision_dtype='fp16'``, the whole Q/DQ model is converted, Q/DQ scales included (FP16
scales need opset 19), by onnxconverter-common (:func:`matting_deploy.export.fp16.to_fp16`): FP32
graph inputs and outputs, the numerically risky ops of ``FP32_OPS`` in FP32, and the recurrent-state
update (RVM's ConvGRU: every node on a path from a state input to its own state output) kept FP32
with explicit Casts, which strongly typed TensorRT honours.
"""

from __future__ import annotations

import onnx

from ..bundle.trt_plan import recurrent_nodes
from ..check.graph import Graph, main_opset
from ..errors import MattingDeployError, first_line

FP16_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear take FP16 inputs and scales from opset 19


def recurrent_update_nodes(model: onnx.ModelProto, states) -> set[str]:
    """The recurrent update (:func:`~matting_deploy.bundle.trt_plan.recurrent_nodes`: nodes on a path
    from a state input to its own state output; ``states``: StateSpecs or (input, output) pairs),
    less the Q/DQ pairs that feed Convs outside it, plus the Q/DQ pairs and weight DequantizeLinears
    that feed only its nodes: a Conv always reads its DequantizeLinears directly (a Cast in between
    would stop TensorRT fusing them), in the Conv's own precision."""
    g = Graph(model)
    nodes = recurrent_nodes(model, states)
    q_of = {dq.name: g.parent(dq.input[0]) for dq in g.nodes if dq.op_type == "DequantizeLinear"}
    for dq in g.nodes:
        if dq.op_type != "DequantizeLinear":
            continue
        readers = {c.name for o in dq.output for c in g.consumers.get(o, [])}
        pair = {dq.name} | ({q_of[dq.name].name} if q_of[dq.name] is not None
                            and q_of[dq.name].op_type == "QuantizeLinear" else set())
        if readers and readers <= nodes:
            nodes |= pair
        else:
            nodes -= pair
    return nodes


def fp16_outside(model: onnx.ModelProto, states=(), keep_fp32=()) -> onnx.ModelProto:
    """``model`` (FP32, with or without Q/DQ) at opset >= 19, FP16 outside the FP32 islands (the
    recurrent update of ``states``, plus the nodes named in ``keep_fp32``)."""
    from ..export.fp16 import to_fp16

    opset = main_opset(model)
    if opset < FP16_QDQ_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, FP16_QDQ_OPSET)
        except Exception as e:  # the converter raises several types
            raise MattingDeployError(
                f"cannot upgrade opset {opset} -> {FP16_QDQ_OPSET} for FP16 Q/DQ ({first_line(e)})"
            ) from None
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, node in enumerate(model.graph.node):  # node names key the FP32 islands
        if not node.name:
            node.name = f"{node.op_type}_n{i}"
    keep = recurrent_update_nodes(model, states) | set(keep_fp32)
    return to_fp16(model, keep_fp32_nodes=sorted(keep))
