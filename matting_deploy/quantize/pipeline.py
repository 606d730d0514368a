"""``calibrate --int8`` as a function: KL-calibrated Q/DQ INT8 model and TensorRT cache.

data -> sampled items -> CalibrationFeeder (RVM warm-up) -> collect (statistics) -> ranges ->
optional --max-drift fallback (drift.py) -> Q/DQ model (qdq.py) -> calib.cache + calib.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnx

from ..bundle import CALIB_JSON, INT8_FILE, TRT_CACHE_FILE, Bundle, ranges_cache, trt_cache
from ..calib.feeder import CalibrationFeeder
from ..calib.sampling import choose, fingerprint, split_holdout
from ..data.bgm import BgmInputs, require_plates, side_fingerprint
from ..data.sources import CalibSource, find_source
from ..errors import MattingDeployError
from ..fileio import atomic_path, check_writable, sha256_file
from ..runtimes.onnxruntime_runner import OrtRunner
from ..runtimes.segmenter import segmenter
from . import collect, qdq, sensitivity
from .drift import CalibContext, fallback, progress_bar
from .ranges import scale_of
from .recipe import default_recipe, excluded_nodes

CHUNK = 8  # calibration images per collect_data call (bounds histogram memory)
MAX_HOLDOUT = 8


def bgm_inputs(bundle: Bundle, source: CalibSource, seg_bundle: str | Path | None) -> BgmInputs | None:
    """BGM's plate/mask provider for calibration images (None for other models)."""
    if bundle.model != "bgm":
        if seg_bundle:
            raise MattingDeployError(f"--seg-bundle: only Background Matting bundles take a mask "
                                     f"({bundle.root} is {bundle.model})")
        return None
    if source.kind == "video":
        raise MattingDeployError(f"{source.root}: BGM calibrates on images with clean plates "
                                 "(PPM-100 layout plus back/), not a video")
    require_plates([it.path for it in source.items])
    return BgmInputs(*bundle.input_hw, mask_fn=segmenter(seg_bundle))


def _bgm_key(extras: BgmInputs | None, source: CalibSource, seg_bundle: str | Path | None) -> dict:
    """BGM's part of the ranges cache key: the plates and masks (or the segmenter's FP32 model)."""
    if extras is None:
        return {}
    seg = Bundle.open(seg_bundle) if seg_bundle else None
    return {"bgm": side_fingerprint([it.path for it in source.items]),
            "seg": seg and seg.manifest["files"].get(seg.artifacts.get("fp32", ""), {}).get("sha256")}


def run_calibration(bundle_dir: str | Path, data: str | Path, *, num: int = 100, method: str = "entropy",
                    max_drift: float | None = None, seed: int = 0, warmup_frames: int = 4,
                    force: bool = False, seg_bundle: str | Path | None = None,
                    echo: Callable[[str], None] = print) -> dict:
    """The whole calibrate command; returns a summary dict (also written to calib.json)."""
    if num < 1:
        raise MattingDeployError(f"--num must be at least 1, got {num}")
    if warmup_frames < 1:
        raise MattingDeployError(f"--warmup-frames must be at least 1, got {warmup_frames}")
    if max_drift is not None and not max_drift > 0:
        raise MattingDeployError(f"--max-drift must be positive, got {max_drift}")
    t0 = time.perf_counter()
    bundle = Bundle.open(bundle_dir)
    fp32_path = bundle.verify("fp32")
    root = bundle.root
    for name in (INT8_FILE, TRT_CACHE_FILE, CALIB_JSON):
        check_writable(root / name, force)
    source = find_source(data)
    extras = bgm_inputs(bundle, source, seg_bundle)
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
        prepared = qdq.prepare_fp32(fp32_path, tmp / "fp32.onnx")
        model = onnx.load(str(prepared))
        excl = excluded_nodes(model, recipe)
        tensors = qdq.quantized_tensors(prepared, recipe, excl)
        key = ranges_cache.cache_key(
            model=model_sha, data=data_fp, method=method, num=num, seed=seed, warmup=frames,
            holdout=len(held), **_bgm_key(extras, source, seg_bundle),
            recipe={k: v for k, v in recipe.describe().items() if k != "name"},
        )
        runner = OrtRunner(prepared, bundle.states, bundle.downsample_ratio)
        entry = ranges_cache.load(root, key)
        if entry is not None:
            echo(f"calibration: reusing cached ranges from an identical earlier run "
                 f"({ranges_cache.CACHE_DIR}/{key}.json)")
            ranges, sources = entry["ranges"], entry.get("sources", {})
            cal_seconds, cached = entry.get("seconds"), True
        else:
            t = time.perf_counter()
            bar = progress_bar(len(chosen), f"calibrating ({method})")
            feeder = CalibrationFeeder(runner, source, chosen, bundle.model, bundle.input_hw,
                                       frames, chunk=CHUNK, on_item=lambda _: bar.update(1),
                                       extras=extras)
            try:
                ranges, sources = collect.collect_ranges(prepared, method, tensors, recipe, feeder)
            finally:
                bar.close()
            for line in feeder.skipped:
                echo(f"skipped: {line}")
            cal_seconds, cached = round(time.perf_counter() - t, 2), False
            entry = {"key": key, "ranges": ranges, "sources": sources, "seconds": cal_seconds,
                     "images": [it.name for it in feeder.used], "skipped": feeder.skipped}
            ranges_cache.store(root, key, entry)
            echo(f"calibration: {len(feeder.used)} images, {len(ranges)} tensors in "
                 f"{cal_seconds:.1f} s")
        used = entry.get("images", [])

        drift_report = None
        if max_drift is not None:
            ctx = CalibContext(bundle, model, prepared, recipe, excl, ranges, method, source, runner,
                               frames, tmp, echo, extras)
            drift_report = fallback(ctx, held, max_drift)
            recipe = recipe.with_excluded(drift_report["nodes"])
            excl = excluded_nodes(model, recipe)

        qtmp = tmp / INT8_FILE
        qdq.write_qdq(prepared, qtmp, ranges, method, recipe, excl)
        qnodes = sensitivity.quantized_nodes(model, recipe.op_types, excl, ranges)
        scales = {t: scale_of(*ranges[t]) for t in sorted(ranges)}
        summary = {
            "method": method,
            "calibrator": {**collect.DEFAULT_CALIBRATOR_OPTIONS.get(method, {}),
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
    return {"bundle": str(root), "images": len(used), "tensors": len(scales),
            "float_nodes": len(excl), "max_drift": drift_report}
