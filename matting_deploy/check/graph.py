"""What the rules need to know about an ONNX graph: types, shapes, constants, node labels.

Builds on :class:`Graph` (producer/consumer maps, also the INT8 recipe's view) and adds the
inferred element types and shapes (``onnx.shape_inference``) and constant folding of the
``Constant`` nodes and initializers the rules read (zero points, scales, Resize inputs).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

# ONNX element type -> the names onnx-tensorrt's operators.md uses.
TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.DOUBLE: "DOUBLE", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.INT16: "INT16", onnx.TensorProto.UINT16: "UINT16",
    onnx.TensorProto.FLOAT8E4M3FN: "FP8", onnx.TensorProto.INT4: "INT4",
}
if hasattr(onnx.TensorProto, "FLOAT4E2M1"):
    TYPE_NAMES[onnx.TensorProto.FLOAT4E2M1] = "FP4"
CONV_LIKE = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the layers that mix channels with weights
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


class Graph:
    """Producer/consumer maps of an ONNX graph."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.nodes = list(model.graph.node)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)
        self.inits = {i.name: i for i in model.graph.initializer}
        self.inputs = [i.name for i in model.graph.input if i.name not in self.inits]
        self.value_info = {v.name: v for v in (*model.graph.value_info, *model.graph.input,
                                                 *model.graph.output)}

    def parent(self, tensor: str):
        return self.producer.get(tensor)

    def descendants(self, tensors) -> set[str]:
        """Names of nodes reachable from ``tensors``."""
        seen, todo = set(), list(tensors)
        while todo:
            for n in self.consumers.get(todo.pop(), []):
                if n.name not in seen:
                    seen.add(n.name)
                    todo.extend(n.output)
        return seen

    def ancestors(self, tensors) -> set[str]:
        seen, todo = set(), list(tensors)
        while todo:
            n = self.producer.get(todo.pop())
            if n is not None and n.name not in seen:
                seen.add(n.name)
                todo.extend(n.input)
        return seen


def conv_free_tensors(g: Graph, sources) -> set[str]:
    """Tensors (initializers aside) computed from ``sources`` (graph inputs) and initializers with no
    :data:`CONV_LIKE` node on the way: pixels, when the sources are the image inputs."""
    out = set(sources) | set(g.inits)
    for node in g.nodes:  # topological order (ONNX requires it)
        if node.op_type not in CONV_LIKE and all(i in out for i in node.input if i):
            out.update(o for o in node.output if o)
    return out - set(g.inits)


def label(node: onnx.NodeProto) -> str:
    """A node's name, or ``OpType(first output)`` for unnamed nodes."""
    return node.name or f"{node.op_type}({node.output[0] if node.output else ''})"


def main_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


class ModelView(Graph):
    """A graph with inferred types/shapes; the model itself is not changed."""

    def __init__(self, model: onnx.ModelProto):
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # inference is a help, not a requirement: fall back to what the file says
            inferred = model
        super().__init__(inferred)
        self.opset = main_opset(model)
        self.constant_nodes = {n.output[0]: n for n in self.nodes if n.op_type == "Constant" and n.output}
        self.outputs = [o.name for o in inferred.graph.output]

    def elem_type(self, tensor: str) -> int | None:
        """ONNX element type of ``tensor`` (initializer, Constant or inferred), None if unknown."""
        if tensor in self.inits:
            return self.inits[tensor].data_type
        if tensor in self.constant_nodes:
            for a in self.constant_nodes[tensor].attribute:
                if a.name == "value":
                    return a.t.data_type
        vi = self.value_info.get(tensor)
        if vi is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            return vi.type.tensor_type.elem_type
        return None

    def shape(self, tensor: str) -> list[int | str | None] | None:
        """Dims of ``tensor``: ints, symbolic names, None for unknown; None if the rank is unknown."""
        if tensor in self.inits:
            return list(self.inits[tensor].dims)
        value = self.constant(tensor)
        if value is not None:
            return list(value.shape)
        vi = self.value_info.get(tensor)
        if vi is None or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in vi.type.tensor_type.shape.dim]

    def constant(self, tensor: str) -> np.ndarray | None:
        """The value of an initializer or a Constant node's output (through Identity), else None."""
        if tensor in self.inits:
            return numpy_helper.to_array(self.inits[tensor])
        node = self.constant_nodes.get(tensor)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
            return None
        p = self.producer.get(tensor)
        if p is not None and p.op_type == "Identity":
            return self.constant(p.input[0])
        return None

    def is_constant(self, tensor: str) -> bool:
        return tensor in self.inits or tensor in self.constant_nodes or (
            tensor in self.producer and self.producer[tensor].op_type == "Identity"
            and self.is_constant(self.producer[tensor].input[0]))

    def data_inputs_reaching(self, tensor: str) -> set[str]:
        """Graph inputs whose *values* (not just shapes) ``tensor`` is computed from."""
        seen, todo, found = set(), [tensor], set()
        graph_inputs = set(self.inputs)
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in graph_inputs:
                found.add(t)
                continue
            node = self.producer.get(t)
            if node is None or node.op_type in ("Shape", "Size"):  # a shape is fixed once shapes are
                continue
            todo.extend(i for i in node.input if i)
        return found


def attr(node: onnx.NodeProto, name: str, default=None):
    """Attribute value of ``node`` (strings decoded), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default
