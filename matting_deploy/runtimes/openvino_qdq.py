"""Signed activation Q/DQ written the way OpenVINO executes it faithfully: uint8 with zero point 128.

TensorRT takes only symmetric INT8 Q/DQ (int8, zero point 0), so ``model.int8.onnx`` is written that
way. OpenVINO 2026.4's CPU plugin mis-executes such a pair next to a Concat: for
``Concat -> QuantizeLinear(int8, scale s, zero point 0) -> DequantizeLinear -> Conv`` it quantizes with
a step of 1.0 instead of ``s`` (measured at s = 0.05, 0.19, 0.5 and 2; the pair on the Concat's inputs
fails the same way). On the official RVM this one pattern (the half-resolution decoder's feature
Concat, s = 0.19) made OpenVINO's INT8 alpha drift to 33x onnxruntime's INT8 error against FP32.
The same pair written as uint8 with zero point 128 runs right:

    QuantizeLinear_uint8(x, s, 128) = QuantizeLinear_int8(x, s, 0) + 128    (saturation included)
    DequantizeLinear(q, s, 128)     = s * (q - 128)

so every activation pair with an int8 zero point gets the uint8 zero point ``z + 128``: the same
arithmetic by the ONNX definition, no other node changes, and no speed cost measured (RVM INT8
33.7 ms both ways). Weights (Q/DQ on initializers) stay int8, as OpenVINO's INT8 kernels take them.
Applied to what OpenVINO reads (the runner's ONNX path and ``build --target openvino``), never to the
bundle's files. ``tests/test_openvino_qdq.py`` runs the failing pattern through the runner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

SUFFIX = "_uint8"  # the rewritten zero point's initializer: <name>_uint8 (an IR records the form as
# bundle.OPENVINO_QDQ)


def unsigned_activations(model: onnx.ModelProto) -> int:
    """Rewrite in place every activation QuantizeLinear with an int8 zero point (and the
    DequantizeLinear nodes reading it) to the uint8 zero point ``z + 128``; returns how many."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    pairs = [n for n in graph.node
             if n.op_type == "QuantizeLinear" and n.input[0] not in inits and len(n.input) > 2
             and n.input[2] in inits and inits[n.input[2]].data_type == onnx.TensorProto.INT8
             and all(r.op_type == "DequantizeLinear" and r.input[2:3] == n.input[2:3]
                     for r in readers.get(n.output[0], []))]
    replaced: set[str] = set()
    for quant in pairs:
        old = quant.input[2]
        new = old + SUFFIX
        if new not in inits:
            shifted = numpy_helper.to_array(inits[old]).astype(np.int16) + 128
            inits[new] = numpy_helper.from_array(shifted.astype(np.uint8), new)
            graph.initializer.append(inits[new])
        for node in (quant, *readers.get(quant.output[0], [])):
            node.input[2] = new
        replaced.add(old)
    used = {name for node in graph.node for name in node.input}
    for name in replaced - used:
        graph.initializer.remove(inits[name])
    return len(pairs)


def signed_activations(model: Any) -> bool:
    """Whether an OpenVINO model read from ONNX has signed activation Q/DQ: its frontend writes a
    QuantizeLinear as FakeQuantize followed by a Convert to the zero point's type."""
    for op in model.get_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        readers = [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]
        if any(r.get_type_name() == "Convert" and r.get_output_element_type(0).get_type_name() == "i8"
               for r in readers):
            return True
    return False


def read_model(core: Any, path: str | os.PathLike) -> tuple[Any, bool]:
    """(OpenVINO model of ``path``, whether it was rewritten): an ONNX file with signed activation
    Q/DQ is read again with :func:`unsigned_activations` applied (from memory); anything else, and
    an IR (rewritten when built), as it is, without importing onnx (half a second)."""
    path = Path(path)
    model = core.read_model(str(path))
    if path.suffix.lower() != ".onnx" or not signed_activations(model):
        return model, False
    import onnx

    proto = onnx.load(str(path))
    if unsigned_activations(proto):
        return core.read_model(proto.SerializeToString()), True
    return model, False
