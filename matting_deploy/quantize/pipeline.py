"""``matting-deploy calibrate --int8``: KL-calibrated Q/DQ INT8 model and TensorRT cache."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import MattingDeployError

INT8_FILE = "model.int8.onnx"
TRT_CACHE_FILE = "calib.cache"
CALIB_JSON = "calib.json"
CHUNK = 8  # calibration images per collect_data call (bounds histogram memory)
MAX_HOLDOUT = 8


@click.command("calibrate")
@click.option("--int8", "int8_flag", is_flag=True, help="Calibrate for INT8 (the only mode).")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder made by 'matting-deploy export'.")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Images: PPM-100 layout, a plain folder, a folder of video frames or a video.")
@click.option("--num", default=100, show_default=True, help="Calibration images to use.")
@click.option("--method", type=click.Choice(["entropy", "minmax", "percentile"]),
              default="entropy", show_default=True, help="Range calibration (entropy = KL).")
@click.option("--max-drift", type=float, default=None,
              help="Keep the most sensitive nodes in float until the alpha MSE drift vs FP32 on "
                   "held-out calibration images is below this.")
@click.option("--seed", default=0, show_default=True, help="Seed of the image choice.")
@click.option("--warmup-frames", default=4, show_default=True,
              help="RVM: frames run per image so the calibrated frame has real recurrent state.")
@click.option("--force", is_flag=True, help="Overwrite existing INT8 artifacts.")
def calibrate(int8_flag, bundle_dir, data, num, method, max_drift, seed, warmup_frames, force):
    """Calibrate INT8: writes model.int8.onnx (Q/DQ), calib.cache (TensorRT) and calib.json."""
    if not int8_flag:
        raise MattingDeployError("calibrate: pass --int8 (INT8 is the only calibrated precision)")
    if num < 1:
        raise MattingDeployError(f"--num must be at least 1, got {num}")
    if warmup_frames < 1:
        raise MattingDeployError(f"--warmup-frames must be at least 1, got {warmup_frames}")
    if max_drift is not None and not max_drift > 0:
        raise MattingDeployError(f"--max-drift must be positive, got {max_drift}")
    start = time.perf_counter()
    report = run_calibration(
        bundle_dir, data, num=num, method=method, max_drift=max_drift, seed=seed,
        warmup_frames=warmup_frames, force=force, echo=lambda m: click.echo(m, err=True),
    )
    click.echo(
        f"wrote {INT8_FILE}, {TRT_CACHE_FILE}, {CALIB_JSON} in {report['bundle']} "
        f"({report['images']} images, {report['tensors']} tensors, {report['float_nodes']} nodes "
        f"in float); total {time.perf_counter() - start:.1f} s"
    )


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


def _session(model):
    """A CPU session of an in-memory model (the sensitivity probe's switchable graph)."""
    from ..runtimes.onnxruntime_runner import make_session

    return make_session(model.SerializeToString())


def _protocol_drift(path, bundle, first_feeds, refs, frames) -> float:
    """Alpha MSE of a model file against FP32 refs, each input run ``frames`` frames."""
    import numpy as np

    from ..runtimes.onnxruntime_runner import OrtRunner
    from .sensitivity import alpha_drift

    runner = OrtRunner(path, bundle.states, bundle.downsample_ratio)
    out = []
    for feed, ref in zip(first_feeds, refs, strict=True):
        runner.reset()
        for _ in range(frames if bundle.recurrent else 1):
            res = runner.run(feed["src"])
        out.append(alpha_drift(res["pha"], ref))
    return float(np.mean(out))


def run_calibration(bundle_dir, data, *, num=100, method="entropy", max_drift=None, seed=0,
                    warmup_frames=4, force=False, echo=print) -> dict:
    """The whole calibrate command; returns a summary dict (also written to calib.json)."""
    import json
    import tempfile

    import numpy as np
    import onnx

    from ..bundle import Bundle
    from ..calib.feeder import CalibrationFeeder
    from ..calib.readers import find_source
    from ..calib.sampling import choose, fingerprint, split_holdout
    from ..fileio import atomic_path, check_writable, sha256_file
    from ..runtimes.onnxruntime_runner import OrtRunner
    from . import calibration_cache, int8, sensitivity, trt_cache
    from .recipe import default_recipe, excluded_nodes

    t0 = time.perf_counter()
    bundle = Bundle.open(bundle_dir)
    fp32_path = bundle.verify("fp32")
    root = bundle.root
    for name in (INT8_FILE, TRT_CACHE_FILE, CALIB_JSON):
        check_writable(root / name, force)
    source = find_source(data)
    chosen = choose(source.items, num, seed)
    held: list = []
    if max_drift is not None:
        frac = min(0.2, MAX_HOLDOUT / len(chosen)) if len(chosen) > 1 else 0.0
        chosen, held = split_holdout(chosen, frac, seed)
    model_sha = bundle.manifest["files"].get(fp32_path.name, {}).get("sha256") or sha256_file(fp32_path)
    data_fp = fingerprint(source)
    recipe = default_recipe(bundle.model)
    frames = warmup_frames if bundle.recurrent else 1

    with tempfile.TemporaryDirectory(prefix="md-calib-") as tmp:
        tmp = Path(tmp)
        prepared = int8.prepare_fp32(fp32_path, tmp / "fp32.onnx")
        model = onnx.load(str(prepared))
        excl = excluded_nodes(model, recipe)
        tensors = int8.quantized_tensors(prepared, recipe, excl)
        key = calibration_cache.cache_key(
            model=model_sha, data=data_fp, method=method, num=num, seed=seed, warmup=frames,
            holdout=len(held), recipe={k: v for k, v in recipe.describe().items() if k != "name"},
        )
        runner = OrtRunner(prepared, bundle.states, bundle.downsample_ratio)
        entry = calibration_cache.load(root, key)
        if entry is not None:
            echo(f"calibration: reusing cached ranges from an identical earlier run "
                 f"({calibration_cache.CACHE_DIR}/{key}.json)")
            ranges, sources = entry["ranges"], entry.get("sources", {})
            cal_seconds, cached = entry.get("seconds"), True
        else:
            t = time.perf_counter()
            bar = _bar(len(chosen), f"calibrating ({method})")
            feeder = CalibrationFeeder(runner, source, chosen, bundle.model, bundle.input_hw,
                                       frames, chunk=CHUNK, on_item=lambda _: bar.update(1))
            try:
                ranges, sources = int8.collect_ranges(prepared, method, tensors, recipe, feeder)
            finally:
                bar.close()
            for line in feeder.skipped:
                echo(f"skipped: {line}")
            cal_seconds, cached = round(time.perf_counter() - t, 2), False
            entry = {"key": key, "ranges": ranges, "sources": sources, "seconds": cal_seconds,
                     "images": [it.name for it in feeder.used], "skipped": feeder.skipped}
            calibration_cache.store(root, key, entry)
            echo(f"calibration: {len(feeder.used)} images, {len(ranges)} tensors in "
                 f"{cal_seconds:.1f} s")
        used = entry.get("images", [])

        drift_report = None
        if max_drift is not None:
            drift_report = _fallback(
                bundle, model, prepared, recipe, excl, ranges, method, held, source, runner,
                frames, max_drift, tmp, echo,
            )
            recipe = recipe.with_excluded(drift_report["nodes"])
            excl = excluded_nodes(model, recipe)

        qtmp = tmp / INT8_FILE
        int8.write_qdq(prepared, qtmp, ranges, method, recipe, excl)
        qnodes = sensitivity.quantized_nodes(model, recipe.op_types, excl, ranges)
        scales = {t: int8.scale_of(*ranges[t]) for t in sorted(ranges)}
        summary = {
            "method": method,
            "calibrator": {**int8.DEFAULT_CALIBRATOR_OPTIONS.get(method, {}),
                           **recipe.calibrator_options.get(method, {})},
            "symmetric": True, "per_channel_weights": True, "format": "QDQ",
            "data": {"path": str(Path(data).resolve()), "kind": source.kind,
                     "fingerprint": data_fp, "candidates": len(source.items)},
            "num": num, "seed": seed, "warmup_frames": frames,
            "image_count": len(used), "images": used, "skipped": entry.get("skipped", []),
            "model_sha256": model_sha, "cache_key": key, "cache_hit": cached,
            "calibration_seconds": cal_seconds,
            "recipe": recipe.describe(),
            "float_nodes": sorted(excl),
            "quantized_nodes": len(qnodes),
            "tensors": {t: {"min": ranges[t][0], "max": ranges[t][1], "scale": scales[t],
                            "range_from": sources.get(t, "method")} for t in scales},
            "max_drift": drift_report,
        }
        with atomic_path(root / INT8_FILE, force) as out:
            out.write_bytes(qtmp.read_bytes())
        with atomic_path(root / TRT_CACHE_FILE, force) as out:
            out.write_text(trt_cache.format_cache(scales))
        with atomic_path(root / CALIB_JSON, force) as out:
            out.write_text(json.dumps(summary, indent=2) + "\n")
    bundle.add_file(INT8_FILE, artifact="int8", precision="int8", format="qdq", method=method)
    bundle.add_file(TRT_CACHE_FILE, kind="tensorrt-calibration-cache")
    bundle.add_file(CALIB_JSON, kind="calibration")
    bundle.manifest["calibration"] = {
        "method": method, "images": len(used), "data_fingerprint": data_fp, "seed": seed,
        "warmup_frames": frames, "cache_key": key, "float_nodes": len(excl),
        "max_drift": None if drift_report is None else {
            k: drift_report[k] for k in ("target", "drift_before", "drift_after", "nodes")},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    bundle.save()
    _ = np  # numpy is imported for the helpers' arrays
    return {"bundle": str(root), "images": len(used), "tensors": len(scales),
            "float_nodes": len(excl), "max_drift": drift_report}


def _fallback(bundle, model, prepared, recipe, excl, ranges, method, held, source, runner,
              frames, target, tmp, echo) -> dict:
    """--max-drift: measure, rank, keep the fewest sensitive nodes in float, re-measure."""
    from ..calib.feeder import CalibrationFeeder
    from . import int8, sensitivity

    if not held:
        raise MattingDeployError("--max-drift needs at least 2 calibration images")
    # Held-out inputs: the first frame (zero state) for the protocol, FP32 reference alphas.
    warm = CalibrationFeeder(runner, source, held, bundle.model, bundle.input_hw, frames)
    warm_feeds = warm.all_feeds()  # warmed-up frame (ranking)
    first, refs, warm_refs = [], [], []
    for feed in warm_feeds:
        runner.reset()
        first.append({k: v.copy() for k, v in runner.feed(feed["src"]).items()})
        for _ in range(frames):
            res = runner.run(feed["src"])
        refs.append(res["pha"])
        warm_refs.append(runner_pha(runner, feed))
    if not first:
        raise MattingDeployError("--max-drift: no held-out image could be read")
    q0 = tmp / "before.onnx"
    int8.write_qdq(prepared, q0, ranges, method, recipe, excl)
    before = _protocol_drift(q0, bundle, first, refs, frames)
    echo(f"max-drift: INT8 drift on {len(first)} held-out images = {before:.3g} (target {target:g})")
    report = {"target": target, "held_out": [it.name for it in warm.used],
              "drift_before": before, "drift_after": before, "nodes": []}
    if before < target:
        return report
    nodes = sensitivity.quantized_nodes(model, recipe.op_types, excl, ranges)
    bar = _bar(len(nodes), "ranking nodes")
    try:
        found = sensitivity.find_fallback(
            model, nodes, ranges, int8.scale_of, first, refs, warm_feeds[:4], warm_refs[:4],
            _session, bundle.states, frames, target, progress=bar.update)
    finally:
        bar.close()
    q1 = tmp / "after.onnx"
    int8.write_qdq(prepared, q1, ranges, method, recipe.with_excluded(found["nodes"]),
                   excl | set(found["nodes"]))
    after = _protocol_drift(q1, bundle, first, refs, frames)
    report.update(nodes=found["nodes"], drift_after=after, probe_before=found["probe_before"],
                  probe_after=found["probe_after"])
    echo(f"max-drift: kept {len(found['nodes'])} node(s) in float: {', '.join(found['nodes'])}; "
         f"drift {before:.3g} -> {after:.3g}")
    return report


def runner_pha(runner, feed):
    """FP32 alpha of one (warmed-up) input dict, without touching the runner's state."""
    outs = runner.session.run(None, feed)
    return outs[runner.output_names.index("pha")]
