"""Calibration levers that change float parameters, not the graph: bias correction
(:mod:`.bias_correction`) and weight rounding (:mod:`.rounding`) of the INT8 Convs.

One pass of the FP32 model over the calibration feeds gives each INT8 Conv's input statistics
(:mod:`.conv_stats`); the new weights and biases are written into the FP32 model the Q/DQ
artifact is made from and into a copy of model.onnx for implicit INT8 (TensorRT 8.5/8.6/10.0
quantizes that file's FP32 weights itself: pre-snapped weights make its rounding ours). No node
is added or removed (a Conv without bias gains a bias input), so the graph, its tensor names and
the TensorRT rules checked on it are unchanged: no runtime cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .bias_correction import corrected_bias, dequantized_weights
from .conv_stats import ConvGeometry, ConvStats
from .ranges import scale_of
from .rounding import round_weights, snap

POSITIONS = 2048  # sampled output positions per image for the patch moment of weight rounding


@dataclass(frozen=True)
class Levers:
    """Which parameter levers to apply."""

    bias_correction: bool = True
    weight_rounding: bool = True

    @property
    def any(self) -> bool:
        return self.bias_correction or self.weight_rounding


def int8_convs(model: onnx.ModelProto, quantized: set[str], ranges: dict) -> list[onnx.NodeProto]:
    """The Convs that run INT8: quantized, input ranged, weight an initializer."""
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "Conv" and n.name in quantized
            and n.input[0] in ranges and len(n.input) > 1 and n.input[1] in inits]


def collect_stats(fp32: Path, convs: list[onnx.NodeProto], ranges: dict, feeds, positions: int,
                  seed: int = 0) -> dict[str, ConvStats]:
    """Each Conv's input statistics over ``feeds`` (input dicts of the FP32 model)."""
    import onnxruntime as ort

    model = onnx.load(str(fp32))
    inits = {i.name: i for i in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}
    names = list(dict.fromkeys(n.input[0] for n in convs))
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have and name not in graph_inputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    fetch = [n for n in names if n not in graph_inputs]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    stats = {n.name: ConvStats(ConvGeometry.of(n, tuple(inits[n.input[1]].dims)), scale_of(*ranges[n.input[0]]))
             for n in convs}
    rng = np.random.default_rng(seed)
    for feed in feeds:
        values = dict(zip(fetch, session.run(fetch, feed), strict=True))
        values.update({k: v for k, v in feed.items() if k in names})
        for n in convs:
            stats[n.name].add(np.asarray(values[n.input[0]], np.float32), positions, rng)
    return stats


def adjusted_parameters(model: onnx.ModelProto, convs: list[onnx.NodeProto], stats: dict[str, ConvStats],
                        levers: Levers) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """{conv: (FP32 weights to write, float bias or None = unchanged)}."""
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for n in convs:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        bias = numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] in inits else None
        st = stats[n.name]
        if levers.weight_rounding and st.moment is not None:
            w_q = snap(round_weights(w, st.moment / max(st.samples, 1), st.geo.group), w)
        else:
            w_q = dequantized_weights(w)
        new_w = w_q if levers.weight_rounding else w
        new_b = corrected_bias(st, w, w_q, bias) if levers.bias_correction else None
        out[n.name] = (new_w, new_b)
    return out


def apply_parameters(model: onnx.ModelProto, params: dict[str, tuple[np.ndarray, np.ndarray | None]]
                     ) -> onnx.ModelProto:
    """``model`` with the Convs' weights and biases replaced (in place; returned)."""
    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for node in model.graph.node:
        if node.name not in params:
            continue
        w, b = params[node.name]
        for slot, value in ((1, w), (2, b)):
            if value is None:
                continue
            if slot < len(node.input) and uses.get(node.input[slot], 0) == 1 and node.input[slot] in inits:
                old = inits[node.input[slot]]
                old.CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(old).dtype), old.name))
                continue
            name = f"{node.name}_{'W' if slot == 1 else 'B'}_calibrated"
            model.graph.initializer.append(numpy_helper.from_array(value, name))
            if slot < len(node.input):
                node.input[slot] = name
            else:
                node.input.append(name)
    return model


def apply_levers(prepared: Path, fp32: Path, quantized: set[str], ranges: dict, feeds, levers: Levers,
                 out: Path, seed: int = 0) -> tuple[onnx.ModelProto, dict]:
    """Write ``prepared`` with the levers applied to ``out`` (the Q/DQ artifact's source); return
    model.onnx (``fp32``) with the same parameters (the implicit build's file) and a summary."""
    model = onnx.load(str(prepared))
    convs = int8_convs(model, quantized, ranges)
    stats = collect_stats(prepared, convs, ranges, feeds, POSITIONS if levers.weight_rounding else 0, seed)
    params = adjusted_parameters(model, convs, stats, levers)
    onnx.save(apply_parameters(model, params), str(out))
    implicit = apply_parameters(onnx.load(str(fp32)), params)
    inits = {i.name: i for i in onnx.load(str(prepared)).graph.initializer}
    shifts, moved = [], 0
    for n in convs:
        w_new, b_new = params[n.name]
        w = numpy_helper.to_array(inits[n.input[1]])
        if levers.weight_rounding:
            s = np.abs(w).reshape(w.shape[0], -1).max(axis=1).reshape(-1, *([1] * (w.ndim - 1))) / 127
            moved += int((np.rint(w_new / np.where(s > 0, s, 1)) != np.clip(np.rint(w / np.where(s > 0, s, 1)),
                                                                               -127, 127)).sum())
        if b_new is not None:
            b = numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] in inits else 0
            shifts.append(float(np.abs(b_new - b).mean()))
    summary = {"convs": len(convs), "images": len(feeds), "bias_correction": levers.bias_correction,
               "weight_rounding": levers.weight_rounding,
               "mean_abs_bias_shift": float(np.mean(shifts)) if shifts else 0.0,
               "convs_rounded_to_nearest": [n.name for n in convs if levers.weight_rounding
                                            and stats[n.name].moment is None],
               "weights_rounded_away_from_nearest": moved}
    return implicit, summary
