"""``--max-drift``: measure INT8 drift on held-out images, keep the fewest sensitive nodes in float.

Drift is the alpha MSE against FP32 under the validation protocol
(:func:`matting_deploy.validate.scoring.still_outputs`: K frames from zero state, the last kept),
measured on the model as calibrate writes it (:func:`written_model`: FP16 outside Q/DQ); the node
ranking probes the FP32-outside graph, which is faster to switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..bundle import Bundle
from ..calib.feeder import CalibrationFeeder
from ..data.bgm import BgmInputs
from ..data.sources import CalibItem, CalibSource
from ..errors import MattingDeployError
from ..runtimes.base import Runner
from ..runtimes.onnxruntime_runner import OrtRunner, make_session
from ..validate.scoring import still_outputs
from . import qdq, sensitivity, typed
from .recipe import Recipe


@dataclass
class CalibContext:
    """One calibration run: the bundle, the prepared FP32 model, the recipe and the ranges."""

    bundle: Bundle
    model: onnx.ModelProto
    prepared: Path  # FP32 at opset >= 13 with shapes
    recipe: Recipe
    excluded: set[str]
    ranges: dict[str, tuple[float, float]]
    method: str
    source: CalibSource
    runner: Runner  # FP32 runner on ``prepared``
    frames: int  # warm-up frames per image
    workdir: Path
    echo: Callable[[str], None] = print
    extras: BgmInputs | None = None  # BGM: bgr and seg of each image


def progress_bar(total: int, desc: str):
    from ..progress import bar

    return bar(total, desc)


def _session(model: onnx.ModelProto):
    """A CPU session of an in-memory model (the sensitivity probe's switchable graph)."""
    return make_session(model.SerializeToString())


def _extra(runner: Runner, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The caller-fed inputs besides src in ``feed`` (BGM's bgr and seg; none for RVM/MODNet)."""
    return {k: feed[k] for k in getattr(runner, "extra_names", ())}


def _protocol(runner: Runner, feed: dict[str, np.ndarray], frames: int) -> dict[str, np.ndarray]:
    extra = _extra(runner, feed)
    return still_outputs(runner, feed["src"], frames, lambda s: runner.run(s, **extra))


def protocol_drift(path: Path, bundle: Bundle, srcs: list[dict[str, np.ndarray]],
                   refs: list[np.ndarray], frames: int) -> float:
    """Alpha MSE of a model file against FP32 refs, each input dict run under the protocol."""
    runner = OrtRunner(path, bundle.states, bundle.downsample_ratio)
    out = [sensitivity.alpha_drift(_protocol(runner, feed, frames if bundle.recurrent else 1)["pha"], ref)
           for feed, ref in zip(srcs, refs, strict=True)]
    return float(np.mean(out))


def written_model(ctx: CalibContext, path: Path, recipe: Recipe, excluded: set[str]) -> Path:
    """The Q/DQ model at ``path`` as calibrate writes model.int8.onnx: Q/DQ on the FP32 graph, then
    FP16 outside Q/DQ (the recurrent update FP32)."""
    fp32_outside = path.with_name(path.stem + "-fp32.onnx")
    qdq.write_qdq(ctx.prepared, fp32_outside, ctx.ranges, ctx.method, recipe, excluded)
    onnx.save(typed.fp16_outside(onnx.load(str(fp32_outside)), ctx.bundle.states), str(path))
    return path


def written_drift(ctx: CalibContext, held: list[CalibItem], path: Path) -> float:
    """The protocol drift of the model file at ``path`` (as finally written, e.g. with calibrate's
    parameter levers applied after the fallback chose its float nodes) on the held-out images."""
    ho = held_out(ctx.runner, ctx.source, held, ctx.bundle, ctx.frames, ctx.extras)
    return protocol_drift(path, ctx.bundle, ho.srcs, ho.refs, ctx.frames)


@dataclass
class HeldOut:
    """The held-out images' inputs and FP32 alphas."""

    srcs: list[dict[str, np.ndarray]]  # first frame (zero state) per image: src (+ BGM's bgr, seg)
    refs: list[np.ndarray]  # FP32 alpha under the protocol
    first: list[dict[str, np.ndarray]]  # every model input of the first frame (states at zero)
    warm_feeds: list[dict[str, np.ndarray]]  # the warmed-up frame (ranking)
    warm_refs: list[np.ndarray]
    names: list[str]


def held_out(runner: Runner, source: CalibSource, held: list[CalibItem], bundle: Bundle, frames: int,
             extras: BgmInputs | None = None) -> HeldOut:
    """Run the held-out images through the FP32 ``runner``: what every drift is measured against."""
    warm = CalibrationFeeder(runner, source, held, bundle.model, bundle.input_hw, frames, extras=extras)
    warm_feeds = warm.all_feeds()
    first, refs, warm_refs = [], [], []
    for feed in warm_feeds:
        runner.reset()
        first.append({k: v.copy() for k, v in runner.model_inputs(feed["src"], **_extra(runner, feed)).items()})
        refs.append(_protocol(runner, feed, frames)["pha"])
        warm_refs.append(runner.run_inputs(feed)["pha"])
    srcs = [{"src": f["src"], **_extra(runner, f)} for f in first]
    return HeldOut(srcs, refs, first, warm_feeds, warm_refs, [it.name for it in warm.used])


def fallback(ctx: CalibContext, held: list[CalibItem], target: float) -> dict:
    """Measure, rank, keep the fewest sensitive nodes in float, re-measure."""
    if not held:
        raise MattingDeployError("--max-drift needs at least 2 calibration images")
    bundle, frames = ctx.bundle, ctx.frames
    ho = held_out(ctx.runner, ctx.source, held, bundle, frames, ctx.extras)
    if not ho.first:
        raise MattingDeployError("--max-drift: no held-out image could be read")
    first, refs, srcs = ho.first, ho.refs, ho.srcs
    q0 = written_model(ctx, ctx.workdir / "before.onnx", ctx.recipe, ctx.excluded)
    before = protocol_drift(q0, bundle, srcs, refs, frames)
    ctx.echo(f"max-drift: INT8 drift on {len(first)} held-out images = {before:.3g} (target {target:g})")
    report = {"target": target, "held_out": ho.names,
              "drift_before": before, "drift_after": before, "nodes": []}
    if before < target:
        return report
    nodes = sensitivity.quantized_nodes(ctx.model, ctx.recipe.op_types, ctx.excluded, ctx.ranges)
    bar = progress_bar(len(nodes), "ranking nodes")
    try:
        found = sensitivity.find_fallback(sensitivity.FallbackSearch(
            ctx.model, nodes, ctx.ranges, first, refs, ho.warm_feeds[:4], ho.warm_refs[:4], _session,
            bundle.states, frames, target), progress=bar.update)
    finally:
        bar.close()
    q1 = written_model(ctx, ctx.workdir / "after.onnx", ctx.recipe.with_excluded(found["nodes"]),
                       ctx.excluded | set(found["nodes"]))
    after = protocol_drift(q1, bundle, srcs, refs, frames)
    report.update(nodes=found["nodes"], drift_after=after, probe_before=found["probe_before"],
                  probe_after=found["probe_after"])
    ctx.echo(f"max-drift: kept {len(found['nodes'])} node(s) in float: {', '.join(found['nodes'])}; "
             f"drift {before:.3g} -> {after:.3g}")
    return report
