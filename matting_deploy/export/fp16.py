"""FP16 conversion with onnxconverter-common: FP16 weights and math, FP32 inputs and outputs."""

from __future__ import annotations

import warnings

import onnx
from onnx import helper

from ..bundle.layout import FP32_OPS


def _route_outputs_through_identity(model: onnx.ModelProto) -> None:
    """Give every graph output its own producer.

    A graph output that also feeds other nodes (RVM's r1o..r4o feed a Concat) confuses
    keep_io_types, which must cast the output back to FP32 without changing the inner edge.
    """
    graph = model.graph
    for out in graph.output:
        inner = f"{out.name}__fp16_inner"
        for node in graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        graph.node.append(helper.make_node("Identity", [inner], [out.name], name=f"{out.name}_out"))


def to_fp16(model: onnx.ModelProto, keep_fp32_nodes=()) -> onnx.ModelProto:
    """An FP16 copy of ``model`` with FP32 graph inputs/outputs and :data:`FP32_OPS` kept in FP32.

    ``keep_fp32_nodes``: names of further nodes kept in FP32 (explicit Casts around them, which
    strongly typed TensorRT honours). Q/DQ nodes are converted like any op (FP16 scales, valid
    from opset 19), as NVIDIA ModelOpt's ``high_precision_dtype='fp16'`` does.
    """
    from onnxconverter_common import float16

    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]  # stale shapes from the simplifier contradict the new Casts
    _route_outputs_through_identity(model)
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    with warnings.catch_warnings():  # one warning per tiny weight clamped to FP16's range
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=block, node_block_list=sorted(keep_fp32_nodes),
            disable_shape_infer=False,
        )
