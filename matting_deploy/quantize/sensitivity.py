"""Which quantized nodes hurt the alpha most, and the fewest to keep in float for a drift target.

Sensitivity is measured on one "switchable" fake-quantized model: every quantized node's inputs
(activation and weight) pass through ``x + m_i * (DQ(Q(x)) - x)`` where ``m_i`` is element i of an
extra graph input ``qmask``. One onnxruntime session then evaluates any subset of the recipe in
float (m_i = 0) or INT8 (m_i = 1) without rebuilding, which makes the ranking cheap. The drift
it reports is checked on the real Q/DQ model afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .ranges import scale_of

MASK = "qmask"


@dataclass
class Switchable:
    model: onnx.ModelProto
    nodes: list[str]  # mask index -> quantized node name


def _weight_scales(w: np.ndarray) -> np.ndarray:
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return np.where(amax > 0, amax / 127.0, 1.0 / 127.0).astype(np.float32)


def switchable_model(
    model: onnx.ModelProto,
    node_inputs: dict[str, list[str]],
    act_scales: dict[str, float],
) -> Switchable:
    """Fake-quantize, per node, the activation inputs listed in ``node_inputs`` (with
    ``act_scales``) and the node's Conv weight (per-channel, symmetric), gated by ``qmask``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes = [n for n in g.nodes] if hasattr(g, "nodes") else list(g.node)
    by_name = {n.name: n for n in nodes}
    order = [n for n in node_inputs if n in by_name]
    new_nodes: dict[str, list] = {n: [] for n in order}
    extra_inits = [numpy_helper.from_array(np.array(0, np.int8), "md_zp0")]
    for idx, name in enumerate(order):
        node = by_name[name]
        gate = f"md_m{idx}"
        extra_inits.append(numpy_helper.from_array(np.array([idx], np.int64), f"md_i{idx}"))
        new_nodes[name].append(helper.make_node("Gather", [MASK, f"md_i{idx}"], [gate], axis=0))
        for pos, tensor in enumerate(node.input):
            if not tensor:
                continue
            if tensor in inits:
                if node.op_type != "Conv" or pos != 1:
                    continue
                w = numpy_helper.to_array(inits[tensor])
                scale = numpy_helper.from_array(_weight_scales(w), f"md_ws{idx}")
                zp = numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"md_wz{idx}")
                extra_inits += [scale, zp]
                q = [
                    helper.make_node("QuantizeLinear", [tensor, scale.name, zp.name], [f"md_wq{idx}"], axis=0),
                    helper.make_node("DequantizeLinear", [f"md_wq{idx}", scale.name, zp.name],
                                     [f"md_wd{idx}"], axis=0),
                ]
            elif tensor in act_scales:
                s = numpy_helper.from_array(np.array(act_scales[tensor], np.float32), f"md_as{idx}_{pos}")
                extra_inits.append(s)
                q = [
                    helper.make_node("QuantizeLinear", [tensor, s.name, "md_zp0"], [f"md_aq{idx}_{pos}"]),
                    helper.make_node("DequantizeLinear", [f"md_aq{idx}_{pos}", s.name, "md_zp0"],
                                     [f"md_wd{idx}_{pos}"]),
                ]
            else:
                continue
            deq = q[-1].output[0]
            out = f"md_x{idx}_{pos}"
            q += [
                helper.make_node("Sub", [deq, tensor], [f"{out}_d"]),
                helper.make_node("Mul", [f"{out}_d", gate], [f"{out}_g"]),
                helper.make_node("Add", [tensor, f"{out}_g"], [out]),
            ]
            new_nodes[name] += q
            node.input[pos] = out
    ordered = []
    for n in nodes:
        ordered += new_nodes.get(n.name, [])
        ordered.append(n)
    del g.node[:]
    g.node.extend(ordered)
    g.initializer.extend(extra_inits)
    g.input.append(helper.make_tensor_value_info(MASK, TensorProto.FLOAT, [len(order)]))
    return Switchable(model, order)


def alpha_drift(pha: np.ndarray, ref: np.ndarray) -> float:
    """Alpha MSE between a quantized and the FP32 output (the drift --max-drift bounds)."""
    return float(np.mean((np.clip(pha, 0, 1) - np.clip(ref, 0, 1)) ** 2))


class DriftProbe:
    """Runs the switchable model the way the model is used: each probe input for ``frames``
    frames with the model's own recurrent state carried (zeros at the start), and scores the
    last frame. drift(mask) = mean alpha MSE against the FP32 model under the same protocol."""

    def __init__(self, sw: Switchable, feeds: list[dict], refs: list[np.ndarray], session,
                 states: list | None = None, frames: int = 1):
        self.sw = sw
        self.feeds = feeds  # first-frame input dicts (zero states)
        self.refs = refs
        self.states = list(states or [])
        self.frames = frames if self.states else 1
        self.session = session  # an onnxruntime session of sw.model
        self.outputs = [o.name for o in self.session.get_outputs()]

    def alphas(self, mask: np.ndarray) -> list[np.ndarray]:
        m = np.asarray(mask, np.float32)
        out = []
        for feed in self.feeds:
            feed = {**feed, MASK: m}
            for _ in range(self.frames):
                res = dict(zip(self.outputs, self.session.run(None, feed), strict=True))
                for spec in self.states:
                    feed[spec.input] = res[spec.output]
            out.append(res["pha"])
        return out

    def drift(self, mask: np.ndarray) -> float:
        return float(np.mean([alpha_drift(a, r) for a, r in zip(self.alphas(mask), self.refs,
                                                                  strict=True)]))


def rank_nodes(probe: DriftProbe, progress: Callable[[int], None] | None = None) -> list[tuple[str, float]]:
    """Nodes by how much keeping each alone in float lowers the drift ("all but one")."""
    n = len(probe.sw.nodes)
    full = probe.drift(np.ones(n, np.float32))
    gains = []
    for i, name in enumerate(probe.sw.nodes):
        mask = np.ones(n, np.float32)
        mask[i] = 0.0
        gains.append((name, full - probe.drift(mask)))
        if progress:
            progress(1)
    return sorted(gains, key=lambda t: -t[1])


def fewest_to_float(
    probe: DriftProbe, ranking: list[tuple[str, float]], target: float
) -> tuple[list[str], float]:
    """Smallest prefix of ``ranking`` whose float fallback brings the probe drift under ``target``
    (binary search on the prefix length, drift being near-monotone in it)."""
    names = probe.sw.nodes
    index = {n: i for i, n in enumerate(names)}

    def drift_without(k: int) -> float:
        mask = np.ones(len(names), np.float32)
        for name, _ in ranking[:k]:
            mask[index[name]] = 0.0
        return probe.drift(mask)

    lo, hi = 0, len(ranking)
    if drift_without(hi) >= target:
        return [n for n, _ in ranking], drift_without(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if drift_without(mid) < target:
            hi = mid
        else:
            lo = mid + 1
    return [n for n, _ in ranking[:lo]], drift_without(lo)


def node_act_inputs(model: onnx.ModelProto, nodes: set[str], ranges: dict) -> dict[str, list[str]]:
    """For each quantized node, its activation inputs that have a calibrated range."""
    return {n.name: [i for i in n.input if i in ranges] for n in model.graph.node if n.name in nodes}


def quantized_nodes(model: onnx.ModelProto, op_types, excluded: set[str], ranges: dict) -> set[str]:
    """Nodes the recipe quantizes: of its op types, not excluded, with a calibrated input."""
    return {
        n.name for n in model.graph.node
        if (not op_types or n.op_type in op_types) and n.name not in excluded
        and any(i in ranges for i in n.input)
    }


@dataclass
class FallbackSearch:
    """What :func:`find_fallback` needs: the model and its calibrated ranges, the quantized nodes,
    the probe inputs and the drift target.

    ``feeds``/``refs``: first-frame input dicts (zero state) and FP32 alphas under the full
    protocol (``frames`` frames, ``states`` carried); ``rank_feeds``/``rank_refs``: single
    warmed-up frames for the cheap ranking; ``session_factory``: model -> onnxruntime session.
    """

    model: onnx.ModelProto
    nodes: set[str]
    ranges: dict[str, tuple[float, float]]
    feeds: list[dict]
    refs: list[np.ndarray]
    rank_feeds: list[dict]
    rank_refs: list[np.ndarray]
    session_factory: Callable[[onnx.ModelProto], Any]
    states: list = field(default_factory=list)
    frames: int = 1
    target: float = 0.0


def find_fallback(search: FallbackSearch, progress: Callable[[int], None] | None = None) -> dict:
    """Fewest quantized nodes to keep in float so the (probe) drift falls under ``search.target``.

    Ranking ("all but one") runs on the rank feeds (single warmed-up frames, cheap); the search
    for the shortest prefix runs the full protocol on the feeds.
    """
    s = search
    sw = switchable_model(s.model, node_act_inputs(s.model, s.nodes, s.ranges),
                          {t: scale_of(*r) for t, r in s.ranges.items()})
    session = s.session_factory(sw.model)
    full = DriftProbe(sw, s.feeds, s.refs, session, s.states, s.frames)
    n = len(sw.nodes)
    before = full.drift(np.ones(n, np.float32))
    if before < s.target:
        return {"probe_before": before, "probe_after": before, "nodes": [], "ranked": 0}
    ranker = DriftProbe(sw, s.rank_feeds, s.rank_refs, session)
    ranking = rank_nodes(ranker, progress)
    keep, after = fewest_to_float(full, ranking, s.target)
    return {"probe_before": before, "probe_after": after, "nodes": keep, "ranked": n,
            "ranking": [(name, gain) for name, gain in ranking[:20]]}
