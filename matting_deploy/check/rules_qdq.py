"""Rules for a Q/DQ (explicitly quantized) artifact as a strongly typed TensorRT network builds it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx

from .graph import FLOAT_TYPES, TYPE_NAMES, ModelView, attr, label
from .result import Model, RuleResult, as_view, verdict
from .rules_parser import state_input_names
from .support import support_data

QDQ = ("QuantizeLinear", "DequantizeLinear")


def _qfacts() -> dict:
    return support_data()["quantization"]


def _nodes(view: ModelView, op_type: str):
    return [n for n in view.nodes if n.op_type == op_type]


def is_weight_dq(view: ModelView, dq) -> bool:
    """A DQ of constant data: an initializer/Constant, or Q(constant) (float weights with a Q/DQ pair)."""
    src = dq.input[0]
    if view.is_constant(src):
        return True
    p = view.producer.get(src)
    return p is not None and p.op_type == "QuantizeLinear" and view.is_constant(p.input[0])


def dq_int8(model: Model) -> RuleResult:
    """Every DequantizeLinear dequantizes INT8 (TensorRT's Dequantize takes INT8/FP8/INT4 only; an
    INT32 bias DQ, onnxruntime's default, fails to parse)."""
    view = as_view(model)
    bad, kinds = [], Counter()
    for dq in _nodes(view, "DequantizeLinear"):
        etype = view.elem_type(dq.input[0])
        if etype != onnx.TensorProto.INT8:
            bad.append(label(dq))
            kinds[TYPE_NAMES.get(etype, "unknown")] += 1
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return verdict("dq-int8", bad, f"non-INT8 DequantizeLinear inputs: {detail} (quantize with QuantizeBias off: "
                   "TensorRT folds the float bias into the INT8 convolution)")


def zero_points(model: Model) -> RuleResult:
    """Every Q/DQ zero point is a constant of zeros (TensorRT quantizes symmetrically only)."""
    view = as_view(model)
    bad, why = [], Counter()
    for node in view.nodes:
        if node.op_type not in QDQ or len(node.input) < 3 or not node.input[2]:
            continue
        value = view.constant(node.input[2])
        if value is None:
            bad.append(label(node))
            why["not constant"] += 1
        elif np.any(value.astype(np.float64) != 0):
            bad.append(label(node))
            why["non-zero"] += 1
    return verdict("qdq-zero-point", bad, ", ".join(f"{n} {k}" for k, n in why.items()))


def _scale_size(view: ModelView, node) -> int | None:
    dims = view.shape(node.input[1])
    return None if dims is None or any(not isinstance(d, int) for d in dims) else int(np.prod(dims, dtype=np.int64))


def weight_scale_axis(model: Model) -> RuleResult:
    """Weight DQs feeding Conv/ConvTranspose weights: per-tensor, or per output channel on the
    weight's output-channel axis (Conv 0, ConvTranspose 1) with one scale per channel."""
    view = as_view(model)
    axes = _qfacts()["weight_axis"]
    bad, why, per_tensor = [], [], 0
    for dq in _nodes(view, "DequantizeLinear"):
        if not is_weight_dq(view, dq):
            continue
        uses = [(c, list(c.input).index(dq.output[0])) for c in view.consumers.get(dq.output[0], [])]
        ops = {c.op_type for c, i in uses if c.op_type in axes and i == 1}
        if not ops:
            continue
        size, wdims = _scale_size(view, dq), view.shape(dq.input[0])
        if size == 1:
            per_tensor += 1
            continue
        rank = len(wdims or [])
        axis = attr(dq, "axis", 1)
        axis = axis + rank if axis < 0 else axis
        for op in ops:
            want = axes[op]
            if axis != want or not wdims or wdims[want] != size:
                bad.append(label(dq))
                why.append(f"{label(dq)}: axis {axis}, {size} scales for {op} weight {wdims} (want axis {want})")
    extra = f"; {per_tensor} per-tensor weight scale(s)" if per_tensor else ""
    return verdict("weight-scale-axis", bad, "; ".join(why[:4]) + extra, extra.lstrip("; "))


def activation_per_tensor(model: Model) -> RuleResult:
    """Q/DQ of activations use one scale ('Activations cannot be quantized per-channel', NvInfer.h)."""
    view = as_view(model)
    bad = [label(n) for n in view.nodes
           if n.op_type in QDQ and not view.is_constant(n.input[0])
           and not (n.op_type == "DequantizeLinear" and is_weight_dq(view, n))
           and _scale_size(view, n) not in (1, None)]
    return verdict("activation-per-tensor", bad, "per-axis scales on activation tensors")


def _index(node, tensor: str) -> list[int]:
    return [i for i, t in enumerate(node.input) if t == tensor]


def _q_fuses_into_producer(view: ModelView, q, fusing: set[str]) -> bool:
    """An output Q right after a weighted/quantizable op (through the activation fused into it,
    each tensor read by nothing else) fuses into that op: it writes INT8."""
    epilogue = set(support_data()["conv_fusion"]["epilogue"])
    t = q.input[0]
    while len(view.consumers.get(t, [])) == 1 and (p := view.producer.get(t)) is not None:
        if p.op_type in fusing:
            return True
        if p.op_type not in epilogue:
            return False
        t = p.input[0]
    return False


def qdq_fusable(model: Model) -> RuleResult:
    """Each Q/DQ pair sits where TensorRT fuses it into an INT8 kernel: an activation DQ feeds the
    data input of a weighted op (Conv, ConvTranspose, Gemm, MatMul) or a quantizable layer
    (pooling, Add, Concat), or its Q fuses into the output of such an op; weight DQs feed the
    weight input; a Conv has both its input and its weights quantized, or neither."""
    view = as_view(model)
    facts = _qfacts()
    weighted, quantizable = facts["weighted"], set(facts["quantizable"])
    bad, why = [], Counter()

    def flag(node, reason):
        bad.append(label(node))
        why[reason] += 1

    for q in _nodes(view, "QuantizeLinear"):
        if any(c.op_type != "DequantizeLinear" for c in view.consumers.get(q.output[0], [])):
            flag(q, "Q output used by a non-DQ node")
    for dq in _nodes(view, "DequantizeLinear"):
        weight = is_weight_dq(view, dq)
        src = view.producer.get(dq.input[0])
        if not weight and (src is None or src.op_type != "QuantizeLinear"):
            flag(dq, "DQ of a tensor no Q produced")
            continue
        if not weight and _q_fuses_into_producer(view, src, set(weighted) | quantizable):
            continue
        origin = "" if weight else getattr(view.producer.get(src.input[0]), "op_type", "graph input")
        for c in view.consumers.get(dq.output[0], []):
            for i in _index(c, dq.output[0]):
                if weight:
                    ok = (c.op_type in ("Conv", "ConvTranspose") and i == 1) or (
                        c.op_type in ("Gemm", "MatMul") and i in weighted[c.op_type])
                    reason = f"weight DQ into {c.op_type} input {i}"
                else:
                    ok = (c.op_type in ("Conv", "ConvTranspose") and i == 0) or (
                        c.op_type in ("Gemm", "MatMul") and i in weighted[c.op_type]) or c.op_type in quantizable
                    reason = f"activation Q/DQ between {origin} and {c.op_type}"
                if not ok:
                    flag(dq, reason)
    for conv in view.nodes:
        if conv.op_type not in ("Conv", "ConvTranspose") or len(conv.input) < 2:
            continue
        fed = [(p := view.producer.get(t)) is not None and p.op_type == "DequantizeLinear" for t in conv.input[:2]]
        if fed[0] != fed[1]:
            flag(conv, f"{conv.op_type} with only its {'input' if fed[0] else 'weights'} quantized")
    return verdict("qdq-fusable", bad, ", ".join(f"{n}x {k}" for k, n in why.most_common()))


def _weight_dq_output(view: ModelView, tensor: str) -> bool:
    dq = view.producer.get(tensor)
    return dq is not None and dq.op_type == "DequantizeLinear" and is_weight_dq(view, dq)


def fp32_islands(model: Model, state_inputs: list[str] | None = None) -> set[str]:
    """Nodes the file keeps in FP32 on purpose: every float input they compute from is FP32 and
    comes from a Cast to FP32, a recurrent-state input (``state_inputs``, by default as
    :func:`~.rules_parser.state_input_names`) or another such node (weights, and DQs of weights,
    are constants); an activation DequantizeLinear joins when its QuantizeLinear reads one.
    Strongly typed TensorRT honours these explicit FP32 islands."""
    view = as_view(model)
    sources = set(state_input_names(view, state_inputs))
    island: set[str] = set()
    for node in view.nodes:  # ONNX nodes are topologically sorted
        if node.op_type == "Cast":  # the islands' borders
            if attr(node, "to") == onnx.TensorProto.FLOAT:
                sources.update(node.output)
            continue
        if node.op_type == "DequantizeLinear":
            q = view.producer.get(node.input[0])
            ok = q is not None and q.op_type == "QuantizeLinear" and q.input[0] in sources
        else:
            floats = [i for i in node.input if i and i not in view.inits and not view.is_constant(i)
                      and view.elem_type(i) in FLOAT_TYPES and not _weight_dq_output(view, i)]
            ok = bool(floats) and all(i in sources and view.elem_type(i) == onnx.TensorProto.FLOAT
                                      for i in floats)
        if ok:
            island.add(node.name)
            sources.update(node.output)
    return island


def fp16_outside_qdq(model: Model, fp32_ops, state_inputs: list[str] | None = None) -> RuleResult:
    """Strongly typed TensorRT runs each layer in its ONNX type: every float tensor a layer computes
    is FP16, except graph outputs, outputs of ops in ``fp32_ops`` (kept FP32 by design), Casts and
    explicit FP32 islands (:func:`fp32_islands`: e.g. the recurrent-state update behind Casts).

    A DequantizeLinear's output type is its scale's type, so a DQ feeding FP16 layers needs FP16
    scales; constants and initializers may be FP32 only where FP32 ops read them.
    """
    view = as_view(model)
    allowed = set(fp32_ops) | {"Cast"}
    islands = fp32_islands(view, state_inputs)
    outputs = set(view.outputs)
    bad, ops = [], Counter()

    def only_fp32_readers(tensor: str) -> bool:
        return all(c.op_type in allowed or c.name in islands for c in view.consumers.get(tensor, []))

    for node in view.nodes:
        if node.op_type in allowed or node.op_type == "QuantizeLinear" or node.name in islands:
            continue
        fp32 = [o for o in node.output if o and view.elem_type(o) == onnx.TensorProto.FLOAT and o not in outputs]
        if node.op_type in ("Constant", "DequantizeLinear", "Identity"):
            fp32 = [o for o in fp32 if not only_fp32_readers(o)]
        if not fp32 and node.op_type not in QDQ:
            fp32 = [i for i in node.input if i in view.inits
                    and view.inits[i].data_type == onnx.TensorProto.FLOAT]
        if fp32:
            bad.append(label(node))
            ops[node.op_type] += 1
    float_nodes = sum(1 for n in view.nodes if any(view.elem_type(o) in FLOAT_TYPES for o in n.output))
    kept = sum(1 for n in view.nodes if n.name in islands and n.op_type not in allowed)
    kept = f"; {kept} other nodes kept FP32 behind explicit Casts" if kept else ""
    return verdict("fp16-outside-qdq", bad,
                   f"{len(bad)} of {float_nodes} float-producing nodes compute in FP32 ("
                   + ", ".join(f"{k} {n}" for k, n in ops.most_common(6)) + ")",
                   f"FP16 outside Q/DQ{kept}")
