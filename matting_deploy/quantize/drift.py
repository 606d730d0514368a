"""``--max-drift``: measure INT8 drift on held-out images, keep the fewest sensitive nodes in float.

Drift is the alpha MSE against FP32 under the validation protocol
(:func:`matting_deploy.validate.scoring.still_outputs`: K frames from zero state, the last kept).
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
from . import qdq, sensitivity
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


def fallback(ctx: CalibContext, held: list[CalibItem], target: float) -> dict:
    """Measure, rank, keep the fewest sensitive nodes in float, re-measure."""
    if not held:
        raise MattingDeployError("--max-drift needs at least 2 calibration images")
    bundle, runner, frames = ctx.bundle, ctx.runner, ctx.frames
    # Held-out inputs: the first frame (zero state) for the protocol, FP32 reference alphas.
    warm = CalibrationFeeder(runner, ctx.source, held, bundle.model, bundle.input_hw, frames,
                             extras=ctx.extras)
    warm_feeds = warm.all_feeds()  # warmed-up frame (ranking)
    first, refs, warm_refs = [], [], []
    for feed in warm_feeds:
        runner.reset()
        first.append({k: v.copy() for k, v in runner.model_inputs(feed["src"], **_extra(runner, feed)).items()})
        refs.append(_protocol(runner, feed, frames)["pha"])
        warm_refs.append(runner.run_inputs(feed)["pha"])
    if not first:
        raise MattingDeployError("--max-drift: no held-out image could be read")
    srcs = [{"src": f["src"], **_extra(runner, f)} for f in first]
    q0 = ctx.workdir / "before.onnx"
    qdq.write_qdq(ctx.prepared, q0, ctx.ranges, ctx.method, ctx.recipe, ctx.excluded)
    before = protocol_drift(q0, bundle, srcs, refs, frames)
    ctx.echo(f"max-drift: INT8 drift on {len(first)} held-out images = {before:.3g} (target {target:g})")
    report = {"target": target, "held_out": [it.name for it in warm.used],
              "drift_before": before, "drift_after": before, "nodes": []}
    if before < target:
        return report
    nodes = sensitivity.quantized_nodes(ctx.model, ctx.recipe.op_types, ctx.excluded, ctx.ranges)
    bar = progress_bar(len(nodes), "ranking nodes")
    try:
        found = sensitivity.find_fallback(sensitivity.FallbackSearch(
            ctx.model, nodes, ctx.ranges, first, refs, warm_feeds[:4], warm_refs[:4], _session,
            bundle.states, frames, target), progress=bar.update)
    finally:
        bar.close()
    q1 = ctx.workdir / "after.onnx"
    qdq.write_qdq(ctx.prepared, q1, ctx.ranges, ctx.method, ctx.recipe.with_excluded(found["nodes"]),
                  ctx.excluded | set(found["nodes"]))
    after = protocol_drift(q1, bundle, srcs, refs, frames)
    report.update(nodes=found["nodes"], drift_after=after, probe_before=found["probe_before"],
                  probe_after=found["probe_after"])
    ctx.echo(f"max-drift: kept {len(found['nodes'])} node(s) in float: {', '.join(found['nodes'])}; "
             f"drift {before:.3g} -> {after:.3g}")
    return report
