"""FP16 conversion with onnxconverter-common: FP16 weights and math, FP32 inputs and outputs, FP32
islands (the ops of :data:`FP32_OPS` and RVM's recurrent-state update) behind explicit Casts."""

from __future__ import annotations

import warnings

import onnx
from onnx import helper

from ..bundle.layout import FP32_OPS
from ..bundle.trt_plan import recurrent_nodes


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


def to_fp16(model: onnx.ModelProto, states=(), keep_fp32_nodes=()) -> onnx.ModelProto:
    """An FP16 copy of ``model`` with FP32 graph inputs/outputs and :data:`FP32_OPS` kept in FP32.

    ``states`` (StateSpecs or (input, output) pairs): their recurrent update (every node from a state
    input to its state output, :func:`~matting_deploy.bundle.trt_plan.recurrent_nodes`) is kept in
    FP32 too, as weakly typed TensorRT FP16 builds pin it, and a new state leaves the graph in FP32
    (not rounded to FP16 between frames). ``keep_fp32_nodes``: names of further nodes kept in FP32.
    FP32 nodes sit behind explicit Casts, which strongly typed TensorRT honours. Q/DQ nodes are
    converted like any op (FP16 scales, valid from opset 19), as NVIDIA ModelOpt's
    ``high_precision_dtype='fp16'`` does.
    """
    from onnxconverter_common import float16

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, node in enumerate(model.graph.node):  # node names key the FP32 islands
        if not node.name:
            node.name = f"{node.op_type}_n{i}"
    keep = recurrent_nodes(model, states) | set(keep_fp32_nodes)
    del model.graph.value_info[:]  # stale shapes from the simplifier contradict the new Casts
    _route_outputs_through_identity(model)
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    with warnings.catch_warnings():  # one warning per tiny weight clamped to FP16's range
        warnings.simplefilter("ignore", UserWarning)
        out = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=block, node_block_list=sorted(keep),
            disable_shape_infer=False,
        )
    _fp32_outputs_from_islands(out)
    return out


def _is_cast(node, to: int) -> bool:
    return node is not None and node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def _fp32_outputs_from_islands(model: onnx.ModelProto) -> None:
    """A graph output computed in an FP32 island (a new recurrent state) leaves it FP32: the
    converter's FP32 -> Cast(FP16) -> Identity -> Cast(FP32) -> output chain would round the state
    to FP16 between frames; the output Cast reads the FP32 tensor instead (dead nodes dropped)."""
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    graph = model.graph
    for out in graph.output:
        producer = {o: n for n in graph.node for o in n.output}
        last = producer.get(out.name)
        ident = producer.get(last.input[0]) if _is_cast(last, f32) else None
        down = producer.get(ident.input[0]) if ident is not None and ident.op_type == "Identity" else None
        if not _is_cast(down, f16):
            continue
        last.input[0] = down.input[0]
        for node in (ident, down):
            if not any(node.output[0] in n.input for n in graph.node) and node.output[0] not in {
                    o.name for o in graph.output}:
                graph.node.remove(node)
