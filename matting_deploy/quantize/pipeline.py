"""``calibrate --int8`` as a function: calibrated Q/DQ INT8 model and TensorRT cache.

data -> sampled items -> CalibrationFeeder (RVM warm-up) -> collect (statistics) -> ranges ->
optional --max-drift fallback (drift.py) -> Q/DQ model (qdq.py), made FP16 outside Q/DQ
(typed.py) -> calib.cache + calib.json, checked against TensorRT's rules (check.gate) before
anything is written.

Ranges are collected for the Conv inputs the recipe quantizes and, for implicit INT8 (TensorRT
8.5/8.6/10.0), for the (fused) output of every INT8 Conv (implicit.py): calib.cache holds both
sides of each INT8 layer, headed for ``--trt-version``. The pass also covers the tensors of the
onnxruntime-CPU layout (cpu_target.py), so ``--target cpu`` writes ``model.int8-cpu.onnx`` from the
same cached statistics without a second pass over the images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from ..bundle import (
    CALIB_JSON,
    CPU_INT8,
    CPU_INT8_FILE,
    IMPLICIT_FILE,
    IMPLICIT_KEY,
    INT8_FILE,
    TRT_CACHE_FILE,
    Bundle,
    engine_artifact,
    engine_name,
    ranges_cache,
    trt_cache,
)
from ..bundle.commit import commit
from ..bundle.layout import CALIBRATION_DERIVED_PATTERNS, matching
from ..bundle.lock import bundle_lock
from ..calib.feeder import CalibrationFeeder
from ..calib.folds import MANIFEST, persons_of
from ..calib.sampling import choose, fingerprint, split_holdout
from ..check import int8_mac_share
from ..check.gate import check_calibration
from ..check.support import target_for_version
from ..data.bgm import BgmInputs, require_plates, side_fingerprint
from ..data.pairs import is_ppm_layout
from ..data.preprocess import alpha_plane
from ..data.sources import CalibSource, find_source, readable_only
from ..errors import MattingDeployError
from ..fileio import check_dir_writable, pause_point, staging_dir, temp_dir
from ..runtimes.onnxruntime_runner import OrtRunner
from ..runtimes.segmenter import segmenter
from . import METHOD_HELP, collect, cpu_target, implicit, qdq, sensitivity, typed
from .adjust import Levers, apply_levers
from .drift import CalibContext, fallback, progress_bar, written_drift
from .options import TARGETS, CalibrateOptions  # noqa: F401 (TARGETS: re-exported)
from .ranges import scale_of
from .recipe import default_recipe, excluded_nodes

CHUNK = 8  # calibration images per collect_data call (bounds histogram memory)
MAX_HOLDOUT = 8


OUTPUTS = {"tensorrt": (INT8_FILE, TRT_CACHE_FILE), "cpu": (CPU_INT8_FILE,)}  # calib.json: shared
# What the statistics pass covers (part of the ranges-cache key): 2 = TensorRT Conv inputs, implicit
# INT8 Conv outputs and the CPU layout's tensors.
STATS_VERSION = 2


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


def holdout_persons(source: CalibSource, holdout_by: str, echo: Callable[[str], None]) -> dict[str, str] | None:
    """{image stem: person} from the data's manifest.csv when ``--max-drift`` holds out persons and
    the folder names them; None otherwise (images are held out)."""
    if (holdout_by != "person" or source.kind != "images" or not is_ppm_layout(source.root)
            or not (source.root / MANIFEST).is_file()):
        return None
    try:
        return persons_of(source.root)
    except MattingDeployError as e:
        echo(f"note: {e}; --max-drift holds out images, not persons")
        return None


def _bgm_key(extras: BgmInputs | None, source: CalibSource, seg_bundle: str | Path | None) -> dict:
    """BGM's part of the ranges cache key: the plates and masks (or the segmenter's FP32 model)."""
    if extras is None:
        return {}
    seg = Bundle.open(seg_bundle) if seg_bundle else None
    return {"bgm": side_fingerprint([it.path for it in source.items]),
            "seg": seg and seg.manifest["files"].get(seg.artifacts.get("fp32", ""), {}).get("sha256")}


def run_calibration(bundle_dir: str | Path, data: str | Path, options: CalibrateOptions | None = None, *,
                    echo: Callable[[str], None] = print, **changes) -> dict:
    """The whole calibrate command; returns a summary dict (also written to calib.json).

    ``options`` (:class:`~.options.CalibrateOptions`; keyword ``changes`` override its fields):
    ``target`` ``tensorrt`` writes model.int8.onnx + calib.cache (and, with a parameter lever,
    the implicit-INT8 FP32 file), ``cpu`` model.int8-cpu.onnx (reusing cached statistics when an
    identical run made them); calib.json describes both. ``trt_version``: the TensorRT that reads
    calib.cache. ``seg_bundle`` (BGM): an RVM or MODNet bundle making the person masks.
    Holds the bundle's lock; the outputs are staged and committed with one manifest update.
    """
    opts = CalibrateOptions.of(options, **changes)
    opts.check()
    target_for_version(opts.trt_version)  # a bad --trt-version is an error before the lock
    check_dir_writable(bundle_dir)
    with bundle_lock(bundle_dir, echo):
        return _calibrate(bundle_dir, data, opts, echo)


def _calibrate(bundle_dir, data, opts: CalibrateOptions, echo: Callable[[str], None]) -> dict:
    num, method, max_drift, seed, force = opts.num, opts.method, opts.max_drift, opts.seed, opts.force
    trt_version, goal, seg_bundle = opts.trt_version, opts.target, opts.seg_bundle
    levers = Levers(opts.bias_correction, opts.weight_rounding) if goal == "tensorrt" else Levers(False, False)
    target = target_for_version(trt_version)
    t0 = time.perf_counter()
    bundle = Bundle.open(bundle_dir, echo)
    fp32_path = bundle.verify("fp32")
    root = bundle.root
    for name in (*OUTPUTS[goal], CALIB_JSON):
        if bundle.has_file(name) and not force and name != CALIB_JSON:
            raise MattingDeployError(f"{root / name}: already exists (pass --force to overwrite)")
        if (root / name).exists() and not bundle.has_file(name):
            echo(f"note: {root / name}: not in manifest.json (left by an interrupted run); replacing it")
    source = find_source(data)
    source = readable_only(source)
    for line in source.skipped:
        echo(f"skipped: {line}")
    extras = bgm_inputs(bundle, source, seg_bundle)
    chosen = choose(source.items, num, seed)
    if num > len(source.items):
        echo(f"calibration: --num {num} but {data} has {len(source.items)} readable images; using all "
             f"{len(source.items)}")
    held: list = []
    if max_drift is not None:
        frac = min(0.2, MAX_HOLDOUT / len(chosen)) if len(chosen) > 1 else 0.0
        persons = holdout_persons(source, opts.holdout_by, echo)
        chosen, held = split_holdout(chosen, frac, seed, persons)
        if persons:
            echo(f"calibration: --max-drift ranks layers on {len(held)} images of "
                 f"{', '.join(sorted({persons[it.path.stem] for it in held}))}, persons not calibrated on")
    model_sha = bundle.manifest["files"][bundle.artifacts["fp32"]]["sha256"]
    data_fp = fingerprint(source)
    recipe = default_recipe(bundle.model)
    frames = opts.warmup_frames if bundle.recurrent else 1

    with temp_dir("md-calib-") as tmp, staging_dir(root) as stage:
        prepared = qdq.prepare_fp32(fp32_path, tmp / "fp32.onnx")
        model = onnx.load(str(prepared))
        excl = excluded_nodes(model, recipe)
        tensors = qdq.quantized_tensors(prepared, recipe, excl)
        outputs = implicit.planned_outputs(model, tensors, excl, recipe.op_types)
        cpu_excl = cpu_target.cpu_float_nodes(model, excl)
        cpu = cpu_target.cpu_tensors(prepared, cpu_excl)
        key = ranges_cache.cache_key(
            collect="quantized+int8-outputs", histograms="pow2-order-free", stats=STATS_VERSION,
            model=model_sha, data=data_fp, method=method, images=ranges_cache.image_key(chosen), warmup=frames,
            holdout=len(held), **_bgm_key(extras, source, seg_bundle),
            **({"augment": opts.augment} if opts.augment != "none" else {}),
            recipe={k: v for k, v in recipe.describe().items() if k != "name"},
        )
        runner = OrtRunner(prepared, bundle.states, bundle.downsample_ratio)
        _check_output_contract(runner, bundle, fp32_path)
        if not tensors | outputs | cpu:
            raise MattingDeployError(f"{fp32_path}: nothing to quantize (no {', '.join(recipe.op_types)} "
                                     "with float weights)")
        entry = ranges_cache.load(root, key, tensors | outputs | cpu, echo)
        staged = [*OUTPUTS[goal], CALIB_JSON]
        if entry is not None:
            echo(f"calibration: reusing cached ranges from an identical earlier run "
                 f"({ranges_cache.entry_name(key)})")
            ranges, sources = entry["ranges"], entry.get("sources", {})
            cal_seconds, cached = entry.get("seconds"), True
        else:
            t = time.perf_counter()
            echo(f"calibration: {method} ranges ({METHOD_HELP[method]}) of {len(tensors | outputs | cpu)} "
                 f"tensors on {len(chosen)} images"
                 + (f", {frames} frames each" if frames > 1 else ""))
            bar = progress_bar(len(chosen), f"calibrating ({method})")
            feeder = CalibrationFeeder(runner, source, chosen, bundle.model, bundle.input_hw,
                                       frames, chunk=CHUNK, on_item=lambda _: bar.update(1),
                                       extras=extras, augment=opts.augment)
            pause_point("calibrate-collect")
            try:
                ranges, sources = collect.collect_ranges(prepared, method, tensors | outputs | cpu,
                                                         recipe, feeder)
            finally:
                bar.close()
            for line in feeder.skipped:
                echo(f"skipped: {line}")
            cal_seconds, cached = round(time.perf_counter() - t, 2), False
            entry = {"key": key, "ranges": ranges, "sources": sources, "seconds": cal_seconds,
                     "images": [it.name for it in feeder.used], "skipped": feeder.skipped}
            (stage / ranges_cache.CACHE_DIR).mkdir()
            (stage / ranges_cache.entry_name(key)).write_text(json.dumps(entry, indent=2) + "\n")
            staged.append(ranges_cache.entry_name(key))
            echo(f"calibration: {len(feeder.used)} images, {len(ranges)} tensors in "
                 f"{cal_seconds:.1f} s")
        used = entry.get("images", [])
        all_ranges = ranges
        calib = {"method": method, "images": len(used), "augment": opts.augment, "data_fingerprint": data_fp,
                 "seed": seed, "warmup_frames": frames, "cache_key": key}
        if goal == "cpu":
            _write_cpu(bundle, stage, prepared, all_ranges, cpu_excl, cpu, calib, cached, echo)
            pause_point("calibrate-staged")
            commit(root, stage, bundle.manifest, staged, [])
            return {"bundle": str(root), "images": len(used), "tensors": len(cpu),
                    "float_nodes": len(cpu_excl), "max_drift": None, "cache_hit": cached}
        ranges = {t: r for t, r in all_ranges.items() if t in tensors}  # what the Q/DQ model uses

        drift_report = None
        if max_drift is not None:
            ctx = CalibContext(bundle, model, prepared, recipe, excl, ranges, method, source, runner,
                               frames, tmp, echo, extras)
            drift_report = fallback(ctx, held, max_drift)
            recipe = recipe.with_excluded(drift_report["nodes"])
            excl = excluded_nodes(model, recipe)

        qnodes = sensitivity.quantized_nodes(model, recipe.op_types, excl, ranges)
        source_model, implicit_model, lever_report = prepared, None, None
        if levers.any:
            echo(f"calibration: {'bias correction' if levers.bias_correction else ''}"
                 f"{' and ' if levers.bias_correction and levers.weight_rounding else ''}"
                 f"{'weight rounding' if levers.weight_rounding else ''} of the INT8 Convs")
            feeds = CalibrationFeeder(runner, source, chosen, bundle.model, bundle.input_hw, frames,
                                      extras=extras).all_feeds()
            source_model = tmp / "levers-fp32.onnx"
            implicit_model, lever_report = apply_levers(prepared, fp32_path, qnodes, ranges, feeds, levers,
                                                        source_model, seed)
            onnx.save(implicit_model, str(stage / IMPLICIT_FILE))
            if lever_report["convs_rounded_to_nearest"]:
                echo(f"calibration: {len(lever_report['convs_rounded_to_nearest'])} Conv(s) with too many "
                     "inputs per output for weight rounding keep round-to-nearest")
        echo("calibration: writing the Q/DQ model, calib.cache and calib.json")
        qdq.write_qdq(source_model, tmp / "qdq-fp32.onnx", ranges, method, recipe, excl)
        qfp32 = onnx.load(str(tmp / "qdq-fp32.onnx"))
        names, sides = implicit.cache_tensors(model, qfp32)
        # What strongly typed TensorRT (>= 10.1) builds: FP16 outside Q/DQ, recurrent update FP32.
        qmodel = typed.fp16_outside(qfp32, bundle.states)
        onnx.save(qmodel, str(stage / INT8_FILE))
        if drift_report is not None and levers.any:  # the drift of the file as written, levers included
            drift_report["drift_after"] = written_drift(ctx, held, stage / INT8_FILE)
            echo(f"max-drift: with the levers, INT8 drift on the held-out images = {drift_report['drift_after']:.3g}")
        missing = [t for t in names if t not in all_ranges]
        if missing:
            raise MattingDeployError(f"calibration collected no range for {', '.join(missing[:3])} "
                                     "(needed by calib.cache): a bug, please report it")
        scales = {t: scale_of(*all_ranges[t]) for t in names}
        cache_text = trt_cache.format_cache(scales, target.cache_code)
        check_calibration(implicit_model or onnx.load(str(fp32_path)), qmodel, cache_text, trt_version,
                          set(sides), echo)
        share = int8_mac_share(qmodel)
        echo(f"INT8: {share['int8_convs']} of {share['convs']} Convs, {share['share']:.1%} of "
             f"convolution MACs; {TRT_CACHE_FILE} for TensorRT {target.version_text} "
             f"({len(scales)} tensors, both sides of every INT8 Conv)")
        role = {t: [] for t in scales}
        for conv in sides.values():
            for side, tensor in conv.items():  # input, output (fused), raw_output
                role[tensor].append(side)
        summary = {
            "method": method, "ranges": METHOD_HELP[method], "range_guard_applied": method in collect.GUARDED,
            "calibrator": {**collect.DEFAULT_CALIBRATOR_OPTIONS.get(method, {}),
                           **recipe.calibrator_options.get(method, {})},
            "symmetric": True, "per_channel_weights": True, "format": "QDQ",
            "data": {"path": str(Path(data).resolve()), "kind": source.kind,
                     "fingerprint": data_fp, "candidates": len(source.items)},
            "num": num, "seed": seed, "warmup_frames": frames, "augment": opts.augment,
            "image_count": len(used), "images": used, "skipped": entry.get("skipped", []),
            "model_sha256": model_sha, "cache_key": key, "cache_hit": cached,
            "calibration_seconds": cal_seconds,
            "recipe": recipe.describe(),
            "float_nodes": sorted(excl),
            "quantized_nodes": len(qnodes),
            "tensors": {t: {"min": all_ranges[t][0], "max": all_ranges[t][1], "scale": scales[t],
                            "range_from": sources.get(t, "method"),
                            "side": sorted(set(role[t])) or ["quantized"]} for t in sorted(scales)},
            "tensorrt": {"cache_version": target.version_text, "cache_header": cache_text.splitlines()[0],
                         "int8_convs": sorted(sides), "conv_sides": sides, "int8_mac_share": share},
            "max_drift": drift_report,
            "levers": lever_report,
        }
        summary["tensorrt"]["onnx"] = IMPLICIT_FILE if implicit_model is not None else bundle.artifacts["fp32"]
        if "cpu" in _previous(bundle):  # model.int8-cpu.onnx stays: it was made from its own ranges
            summary["cpu"] = _previous(bundle)["cpu"]
        (stage / TRT_CACHE_FILE).write_text(cache_text)
        (stage / CALIB_JSON).write_text(json.dumps(summary, indent=2) + "\n")
        bundle.add_file(INT8_FILE, artifact="int8", folder=stage, precision="int8", format="qdq",
                        method=method)
        bundle.add_file(TRT_CACHE_FILE, folder=stage, kind="tensorrt-calibration-cache")
        bundle.add_file(CALIB_JSON, folder=stage, kind="calibration")
        if implicit_model is not None:
            bundle.add_file(IMPLICIT_FILE, folder=stage, kind="tensorrt-implicit-fp32")
            staged.append(IMPLICIT_FILE)
        stale = _drop_int8_engine(bundle) + _drop_trtexec_int8(bundle)
        if implicit_model is None and bundle.manifest["files"].pop(IMPLICIT_FILE, None) is not None:
            stale.append(IMPLICIT_FILE)
        previous_cpu = bundle.manifest.get("calibration", {}).get("cpu")
        bundle.manifest["calibration"] = {
            **calib, "float_nodes": len(excl),
            "tensorrt": target.version_text, "int8_mac_share": round(share["share"], 4),
            "max_drift": None if drift_report is None else {
                k: drift_report[k] for k in ("target", "drift_before", "drift_after", "nodes")},
            "seconds": round(time.perf_counter() - t0, 2),
            IMPLICIT_KEY: IMPLICIT_FILE if implicit_model is not None else None,
            **({"cpu": previous_cpu} if previous_cpu else {}),
        }
        pause_point("calibrate-staged")
        commit(root, stage, bundle.manifest, staged, stale)
    if stale:
        echo(f"removed {', '.join(stale)} (built from the previous calibration)")
    return {"bundle": str(root), "images": len(used), "tensors": len(scales),
            "float_nodes": len(excl), "max_drift": drift_report, "cache_hit": cached}


def _check_output_contract(runner: OrtRunner, bundle: Bundle, where: Path) -> None:
    """One zero frame through the FP32 graph before any calibration work: an alpha that breaks the
    (1, 1, H, W) contract (e.g. 3 channels) is a one-line error here, not a failure deep inside."""
    h, w = bundle.input_hw
    shapes = {i.name: i.shape for i in runner.session.get_inputs()}
    extra = {name: np.zeros((1, shapes[name][1] if isinstance(shapes[name][1], int) else 1, h, w), np.float32)
             for name in runner.extra_names}
    alpha_plane(runner.run(np.zeros((1, 3, h, w), np.float32), **extra)["pha"], str(where))
    runner.reset()


def _previous(bundle: Bundle) -> dict:
    """The bundle's calib.json ({} when absent, changed since it was committed, or unreadable)."""
    try:
        return json.loads(bundle.file_path(CALIB_JSON).read_text()) if bundle.has_file(CALIB_JSON) else {}
    except (MattingDeployError, OSError, ValueError):
        return {}


def _write_cpu(bundle: Bundle, stage: Path, prepared: Path, ranges: dict, excl: set[str], cpu: set[str],
               calib: dict, cached: bool, echo: Callable[[str], None]) -> None:
    """Stage model.int8-cpu.onnx and calib.json (its ``cpu`` section; the TensorRT part kept)."""
    echo(f"calibration: writing {CPU_INT8_FILE} (onnxruntime CPU: Q/DQ on Conv inputs and outputs, "
         f"uint8 activations, {len(excl)} nodes in float)")
    cpu_target.write_cpu_int8(prepared, stage / CPU_INT8_FILE, ranges, excl, tensors=cpu)
    section = {**calib, "file": CPU_INT8_FILE, "layout": "qdq-conv-in-out",
               "op_types": list(cpu_target.DEFAULT_OP_TYPES), "activations": f"{cpu_target.ACTIVATION} asymmetric",
               "weights": "int8 symmetric per-channel", "tensors": len(cpu), "float_nodes": sorted(excl),
               "cache_hit": cached}
    summary = {**_previous(bundle), "cpu": section}
    (stage / CALIB_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    bundle.add_file(CPU_INT8_FILE, artifact=CPU_INT8, folder=stage, precision="int8", format="qdq",
                    method=calib["method"], target="onnxruntime-cpu")
    bundle.add_file(CALIB_JSON, folder=stage, kind="calibration")
    bundle.manifest.setdefault("calibration", {})["cpu"] = {**calib, "float_nodes": len(excl),
                                                            "tensors": len(cpu)}


def _drop_int8_engine(bundle: Bundle) -> list[str]:
    """Forget the INT8 engine (built from the previous calibration); returns the file to remove."""
    name = engine_name("int8")
    bundle.manifest["files"].pop(name, None)
    bundle.manifest["artifacts"].pop(engine_artifact("int8"), None)
    bundle.manifest.get("engines", {}).pop("int8", None)
    return [name] if (bundle.root / name).exists() else []


def _drop_trtexec_int8(bundle: Bundle) -> list[str]:
    """Forget what `build --trtexec` made from the previous calibration (INT8 scripts, calib.cache
    re-headed for other versions); returns the files to remove."""
    names = matching(bundle.root, bundle.manifest["files"], CALIBRATION_DERIVED_PATTERNS)
    for name in names:
        bundle.manifest["files"].pop(name, None)
    return [n for n in names if (bundle.root / n).exists()]
