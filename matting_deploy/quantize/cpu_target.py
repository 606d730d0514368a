"""INT8 for onnxruntime's CPU kernels (``model.int8-cpu.onnx``), from already calibrated ranges.

The TensorRT recipe (Q/DQ on Conv inputs only, symmetric INT8) leaves onnxruntime's CPU provider
nothing to fuse: each Conv runs in float behind DequantizeLinear. This layout gives onnxruntime's
QDQ fusions what they need: Q/DQ on Conv inputs *and* outputs, so ``DQ -> Conv -> Q`` becomes
``QLinearConv`` (Relu/Clip after a Conv are folded into its output quantization). Activations are
asymmetric uint8, weights symmetric int8 per output channel (MLAS's U8S8 path). The recipe's float
nodes stay float, and so do the Convs that read pixels (the recipe's ``pixels`` rule: the image
halves of the Convs export splits, whose uint8 in-and-out quantization cost 1.136x vs 1.094x FP32
MSE on composite-dev), and the Convs writing full-size tensors (the recipe's ``full-size`` rule:
their Q/DQ and layout conversions cost what QLinearConv saves; RVM 480x288, five interleaved
runs: not slower with them float in any, +0.05x FP32 on average, about the runs' noise; alpha MSE
1.090x vs 1.094x FP32). Measurements behind these choices: bench/NOTES-int8-cpu.md.

No data is seen here: ranges come from the one statistics pass of ``calibrate``, which covers the
union of both targets' tensors (the TensorRT recipe's, the INT8 Conv outputs implicit TensorRT needs,
and :func:`cpu_tensors`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static, save_tensors_data

from ..errors import MattingDeployError
from . import qdq
from .recipe import Recipe, excluded_nodes

# Op types given Q/DQ (inputs and outputs), by layout name. Measured: Q/DQ on Add/Mul/Concat too
# fuses more (QLinearMul/Add/Concat) but costs fidelity (RVM alpha MSE 1.66x FP32); Conv alone 1.00x.
LAYOUTS: dict[str, tuple[str, ...]] = {"conv": ("Conv",), "conv-eltwise": ("Conv", "Add", "Mul", "Concat")}
DEFAULT_OP_TYPES = LAYOUTS["conv"]
ACTIVATION = "uint8"  # asymmetric: Relu folds into the zero point (int8 symmetric leaves Relus float)

Ranges = dict[str, tuple[float, float]]
FLOAT_RULES = Recipe("cpu-float", exclude_rules=("pixels", "full-size"))  # on top of the recipe's


def cpu_float_nodes(model: onnx.ModelProto, recipe_float: set[str]) -> set[str]:
    """The nodes this layout keeps float: the TensorRT recipe's and :data:`FLOAT_RULES`'."""
    return set(recipe_float) | excluded_nodes(model, FLOAT_RULES)


def _extra(symmetric: bool) -> dict:
    return {"ActivationSymmetric": symmetric, "WeightSymmetric": True,
            "OpTypesToExcludeOutputQuantization": [],  # Conv outputs get Q/DQ: QLinearConv forms
            "QDQKeepRemovableActivations": False, "ForceQuantizeNoInputCheck": False}


def _quantize(fp32: Path, out: Path, ranges: Ranges, float_nodes, op_types, activation: str) -> None:
    symmetric = activation == "int8"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization warns about pre-processing on root
    try:
        with tempfile.TemporaryDirectory(prefix="md-qcpu-") as tmp:
            cache = Path(tmp) / "ranges.json"
            save_tensors_data(qdq.ranges_to_tensors_data(ranges, "minmax"), cache)
            quantize_static(
                str(fp32), str(out), calibration_data_reader=None, calibration_cache_path=cache,
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=True,
                reduce_range=False, activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=sorted(float_nodes),
                calibrate_method=qdq.METHODS["minmax"], extra_options=_extra(symmetric),
            )
    finally:
        root.setLevel(level)


def cpu_tensors(fp32: Path, float_nodes, op_types=DEFAULT_OP_TYPES) -> set[str]:
    """Activation tensors this layout quantizes (dry run with placeholder ranges on the prepared
    FP32 model ``fp32``, :func:`.qdq.prepare_fp32`)."""
    model = onnx.load(str(fp32))
    inits = {i.name for i in model.graph.initializer}
    names = ({i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}) - inits
    with tempfile.TemporaryDirectory(prefix="md-qcpu-dry-") as tmp:
        out = Path(tmp) / "dry.onnx"
        _quantize(fp32, out, dict.fromkeys(names, (-1.0, 1.0)), float_nodes, op_types, ACTIVATION)
        q = onnx.load(str(out), load_external_data=False)
    scales = {i.name[: -len("_scale")] for i in q.graph.initializer if i.name.endswith("_scale")}
    return scales & names


def asymmetric_ranges(ranges: Ranges) -> Ranges:
    """Ranges for asymmetric uint8: each including 0 (the zero point must be representable) and
    of non-zero width."""
    out = {}
    for name, (lo, hi) in ranges.items():
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        out[name] = (lo, hi) if hi > lo else (lo, lo + 1e-6)
    return out


def write_cpu_int8(fp32: Path, out: Path, ranges: Ranges, float_nodes, op_types=DEFAULT_OP_TYPES,
                   activation: str = ACTIVATION, tensors: set[str] | None = None) -> Path:
    """Write the CPU INT8 model from calibrated ``ranges`` ({tensor: (min, max)}, as calibrate
    caches them) keeping ``float_nodes`` float. ``fp32``: the prepared FP32 model (opset >= 13).
    ``tensors``: :func:`cpu_tensors` when already known. A missing range is an error (nothing is
    written): the statistics must cover every tensor the layout quantizes."""
    if activation not in ("uint8", "int8"):
        raise ValueError(f"activation must be uint8 or int8, got {activation}")
    need = cpu_tensors(fp32, float_nodes, op_types) if tensors is None else tensors
    missing = sorted(need - set(ranges))
    if missing:
        raise MattingDeployError(
            f"calibration statistics lack {len(missing)} tensor(s) the CPU INT8 layout quantizes "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): calibrate again so "
            "the statistics pass covers both targets")
    use = {t: ranges[t] for t in need}
    if activation == "uint8":
        use = asymmetric_ranges(use)
    _quantize(Path(fp32), Path(out), use, float_nodes, op_types, activation)
    return Path(out)
