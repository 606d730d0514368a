"""Graph-level steps shared by every export path: shapes, constants, simplify, opset, checks."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from ..errors import MattingDeployError, first_line


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs (tensor-valued) by name."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return consts


def set_input_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> None:
    """Fix the named graph inputs to static shapes and forget every inferred shape."""
    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            if len(dims) != len(shapes[inp.name]):
                raise MattingDeployError(
                    f"input '{inp.name}' has rank {len(dims)}, not {len(shapes[inp.name])}"
                )
            for dim, size in zip(dims, shapes[inp.name], strict=True):
                dim.ClearField("dim_param")
                dim.dim_value = int(size)
    for out in model.graph.output:  # let inference fill the outputs from the new inputs
        for dim in out.type.tensor_type.shape.dim:
            dim.ClearField("dim_param")
            dim.ClearField("dim_value")
    del model.graph.value_info[:]


def bake_input(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Turn graph input ``name`` into a constant initializer."""
    graph = model.graph
    found = [i for i in graph.input if i.name == name]
    if not found:
        raise MattingDeployError(f"the model has no input '{name}' to bake")
    graph.input.remove(found[0])
    graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))


def tidy_resize(model: onnx.ModelProto) -> None:
    """Blank Resize's unused roi/scales inputs when ``sizes`` is given (empty tensors otherwise
    confuse shape inference after FP16 casts and some TensorRT parsers)."""
    consts = _constants(model)
    for node in model.graph.node:
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        for k in (1, 2):
            if node.input[k] in consts and consts[node.input[k]].size == 0:
                node.input[k] = ""


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """onnxsim simplification; on failure the unsimplified graph and the reason come back."""
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as e:  # onnxsim raises RuntimeError/ValueError/... from C++
        return model, f"{type(e).__name__}: {first_line(e)}"
    if not ok:
        return model, "onnxsim could not validate the simplified graph"
    return simplified, None


def upgrade_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """Convert to ``opset`` (only upwards; a newer graph is left as it is)."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as e:
        raise MattingDeployError(f"cannot convert the graph from opset {current} to {opset} ({e})") from None


def check(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker with full, strict shape inference; returns the model with inferred shapes."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:
        raise MattingDeployError(f"exported graph fails onnx.checker ({first_line(e)})") from None


def io_spec(model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """Graph inputs and outputs as [{name, shape, dtype}] (symbolic dims as strings)."""

    def describe(values) -> list[dict]:
        rows = []
        for v in values:
            tt = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                     for d in tt.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
            rows.append({"name": v.name, "shape": shape, "dtype": dtype})
        return rows

    init = {t.name for t in model.graph.initializer}
    return describe(i for i in model.graph.input if i.name not in init), describe(model.graph.output)
