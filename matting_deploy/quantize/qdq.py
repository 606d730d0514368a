"""Q/DQ graph writing with onnxruntime.quantization (the counterpart of its qdq_quantizer).

Everything is TensorRT-compatible: QuantFormat.QDQ, symmetric INT8 activations and weights
(zero point 0, scale = amax / 127), per-channel weights, float bias, opset >= 13.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    TensorData,
    TensorsData,
    quantize_static,
    save_tensors_data,
)

from ..errors import MattingDeployError, first_line
from .recipe import Recipe

METHODS = {
    "entropy": CalibrationMethod.Entropy,
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
}
MIN_OPSET = 13


def prepare_fp32(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Copy of the FP32 model at opset >= 13 (per-channel Q/DQ is invalid below), with shapes."""
    model = onnx.load(str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:  # the converter raises several types
            raise MattingDeployError(f"{path}: cannot upgrade opset {opset} -> 13 ({first_line(e)})") from None
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(out))
    return Path(out)


def _extra_options(recipe: Recipe) -> dict:
    return {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "OpTypesToExcludeOutputQuantization": list(recipe.no_output_qdq),
        "QDQKeepRemovableActivations": True,
        # Float bias: TensorRT's Dequantize takes INT8/FP8/INT4 only, so an INT32 bias DQ (the
        # default) does not parse on TensorRT >= 10.1; TensorRT folds the float bias itself.
        "QuantizeBias": False,
    }


def _quantize(fp32: Path, out: Path, ranges: TensorsData, recipe: Recipe, nodes_to_exclude) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization warns about pre-processing on root
    try:
        _quantize_static(fp32, out, ranges, recipe, nodes_to_exclude)
    finally:
        root.setLevel(level)


def _quantize_static(fp32: Path, out: Path, ranges: TensorsData, recipe: Recipe,
                     nodes_to_exclude) -> None:
    with tempfile.TemporaryDirectory(prefix="md-q-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        quantize_static(
            str(fp32),
            str(out),
            calibration_data_reader=None,
            calibration_cache_path=cache,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(recipe.op_types),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(nodes_to_exclude),
            calibrate_method=ranges.calibration_method,
            extra_options=_extra_options(recipe),
        )


def quantized_tensors(fp32: Path, recipe: Recipe, nodes_to_exclude) -> set[str]:
    """Activation tensors the recipe gives Q/DQ (found by a dry run with placeholder ranges)."""
    model = onnx.load(str(fp32))
    inits = {i.name for i in model.graph.initializer}
    names = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    fake = TensorsData(
        CalibrationMethod.MinMax,
        {n: TensorData(lowest=np.float32(-1.0), highest=np.float32(1.0)) for n in names - inits},
    )
    with tempfile.TemporaryDirectory(prefix="md-dry-") as tmp:
        out = Path(tmp) / "dry.onnx"
        _quantize(fp32, out, fake, recipe, nodes_to_exclude)
        q = onnx.load(str(out), load_external_data=False)
    # Each quantized tensor X gets an initializer "X_scale" (graph outputs are renamed, scales not).
    scales = {i.name[: -len("_scale")] for i in q.graph.initializer if i.name.endswith("_scale")}
    return (scales & names) - inits


def ranges_to_tensors_data(ranges: dict[str, tuple[float, float]], method: str) -> TensorsData:
    return TensorsData(
        METHODS[method],
        {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()},
    )


def detach_float_readers(model: onnx.ModelProto) -> int:
    """Give readers of a quantized activation that TensorRT cannot fuse with its DequantizeLinear
    (anything but an INT8 weighted op's data input or a quantizable layer) the float tensor again:
    onnxruntime feeds the dequantized tensor to every reader, and TensorRT would then run that
    Q/DQ as separate layers (e.g. src -> Identity -> fgr quantized; MODNet's float backbone Convs
    reading the tensors its INT8 high-resolution branch quantizes). Returns readers changed."""
    from ..check.support import support_data

    facts = support_data()["quantization"]
    weighted, quantizable = facts["weighted"], set(facts["quantizable"])
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    float_of = {}
    for dq in model.graph.node:
        q = producer.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits \
                and q.input[0] in producer.keys() | {i.name for i in model.graph.input}:
            float_of[dq.output[0]] = q.input[0]
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    changed = 0
    for node in model.graph.node:
        conv = node.op_type in ("Conv", "ConvTranspose")
        for i, name in enumerate(node.input):
            if name not in float_of or node.op_type in quantizable:
                continue
            if conv and i == 0 and len(node.input) > 1 and node.input[1] in dequantized:
                continue  # an INT8 Conv: the DQ fuses into it
            if node.op_type in weighted and i in weighted[node.op_type] and not conv:
                continue
            node.input[i] = float_of[name]
            changed += 1
    return changed


def float_graph_outputs(model: onnx.ModelProto) -> int:
    """Give back a quantized graph output its float value: onnxruntime renames a graph output it
    quantizes (``X`` -> ``X_QuantizeLinear_Input`` -> Q -> DQ -> ``X``), so the output (e.g. a
    recurrent state read by a Conv) would be INT8-rounded and a DQ would feed the output's cast.
    Here the producer writes ``X`` again and the DQ a tensor of its own. Returns outputs changed."""
    producer = {o: n for n in model.graph.node for o in n.output}
    changed = 0
    for out in model.graph.output:
        dq = producer.get(out.name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in producer:
            continue
        inner, fresh = q.input[0], f"{out.name}_DequantizeLinear_Output"
        for node in model.graph.node:
            node.input[:] = [fresh if i == out.name else out.name if i == inner else i for i in node.input]
        dq.output[0] = fresh
        producer[inner].output[:] = [out.name if o == inner else o for o in producer[inner].output]
        changed += 1
    return changed


def write_qdq(
    fp32: Path,
    out: Path,
    ranges: dict[str, tuple[float, float]],
    method: str,
    recipe: Recipe,
    nodes_to_exclude,
) -> None:
    """Write the Q/DQ model for ``recipe`` from calibrated ``ranges`` (float readers detached,
    graph outputs float)."""
    _quantize(fp32, out, ranges_to_tensors_data(ranges, method), recipe, nodes_to_exclude)
    model = onnx.load(str(out))
    if float_graph_outputs(model) + detach_float_readers(model):
        onnx.save(model, str(out))
