"""``matting-deploy calibrate --int8``: calibrated Q/DQ INT8 model and TensorRT cache, or
(``--target cpu``) the onnxruntime-CPU INT8 model from the same statistics."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..bundle import CALIB_JSON, CPU_INT8_FILE, INT8_FILE, TRT_CACHE_FILE
from ..bundle.trt_cache import DEFAULT_TRT_VERSION
from ..errors import MattingDeployError
from ..quantize import METHOD_HELP
from .options import examples


@click.command("calibrate", epilog=examples(
    "matting-deploy calibrate --int8 --bundle bundles/rvm --data PPM-100",
    "matting-deploy calibrate --int8 --bundle bundles/rvm --data clip.mp4 --num 50 --max-drift 5e-5",
    "matting-deploy calibrate --int8 --bundle bundles/bgm --data PPM-100   # with back/ and seg/ beside image/",
    "matting-deploy calibrate --int8 --target cpu --bundle bundles/rvm --data PPM-100   # same statistics",
))
@click.option("--int8", "int8_flag", is_flag=True,
              help="Calibrate for INT8 (the only mode).  [required]")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder made by 'matting-deploy export'.")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Images: PPM-100 layout, a plain folder, a folder of video frames or a video.")
@click.option("--num", default=100, show_default=True, help="Calibration images to use.")
@click.option("--method", type=click.Choice(list(METHOD_HELP)), default="entropy", show_default=True,
              help="Activation ranges: " + "; ".join(f"{k}: {v}" for k, v in METHOD_HELP.items())
              + " (each on 2048-bin histograms but minmax).")
@click.option("--max-drift", type=float, default=None,
              help="Keep the most sensitive nodes in float until the alpha MSE drift vs FP32 on "
                   "held-out calibration images is below this.")
@click.option("--holdout-by", type=click.Choice(["person", "image"]), default=None,
              help="--max-drift: hold out whole persons (where the data's manifest.csv names them; else "
                   "images) or single images to rank layers on.  [default: person]")
@click.option("--seed", default=0, show_default=True, help="Seed of the image choice.")
@click.option("--warmup-frames", default=4, show_default=True,
              help="RVM: frames run per image so the calibrated frame has real recurrent state.")
@click.option("--trt-version", default=DEFAULT_TRT_VERSION, show_default=True, metavar="X.Y.Z",
              help="TensorRT that reads calib.cache (implicit INT8: 8.5.x, 8.6.x, 10.0.x); its header "
                   "names this version, e.g. 8.5.2 for JetPack 5.1, 8.6.2 for JetPack 6.0.")
@click.option("--target", type=click.Choice(["tensorrt", "cpu"]), default="tensorrt", show_default=True,
              help="tensorrt: model.int8.onnx + calib.cache; cpu: model.int8-cpu.onnx for onnxruntime's "
                   "CPU integer kernels (QLinearConv), from the cached statistics of an identical run.")
@click.option("--seg-bundle", type=click.Path(file_okay=False, path_type=Path),
              help="BGM: an RVM or MODNet bundle whose alpha, processed as the official test "
                   "script does, is the person mask (else data/seg/NAME.*).")
@click.option("--bias-correction/--no-bias-correction", default=None,
              help="TensorRT target: fold each INT8 Conv's mean output error on the calibration images into "
                   "its float bias (no runtime cost).  [default: on]")
@click.option("--weight-rounding/--no-weight-rounding", default=None,
              help="TensorRT target: round each INT8 Conv's weights up or down to minimise its output error "
                   "(AdaRound-style; the implicit build reads pre-snapped FP32 weights).  [default: on]")
@click.option("--augment", type=click.Choice(["none", "flip", "jitter", "flip+jitter"]), default=None,
              help="Also calibrate on the mirror image (flip) and/or a brightness (x0.7-1.3) and zoom "
                   "(75-100% crop) jittered copy (jitter) of every calibration image.  [default: none]")
@click.option("--force", is_flag=True, help="Overwrite existing INT8 artifacts.")
def calibrate(int8_flag, bundle_dir, data, num, method, max_drift, seed, warmup_frames, trt_version, target,
              seg_bundle, bias_correction, weight_rounding, augment, holdout_by, force):
    """Calibrate INT8: writes model.int8.onnx (Q/DQ), calib.cache (TensorRT) and calib.json, or with
    --target cpu model.int8-cpu.onnx."""
    if not int8_flag:
        raise MattingDeployError("--int8: required (INT8 is the only calibrated precision)")
    from ..quantize.options import CalibrateOptions
    from ..quantize.pipeline import run_calibration

    start = time.perf_counter()
    levers = {k: v for k, v in dict(bias_correction=bias_correction, weight_rounding=weight_rounding,
                                    augment=augment, holdout_by=holdout_by).items() if v is not None}
    options = CalibrateOptions.of(num=num, method=method, max_drift=max_drift, seed=seed, warmup_frames=warmup_frames,
                                  force=force, seg_bundle=seg_bundle, trt_version=trt_version, target=target,
                                  **levers)
    report = run_calibration(bundle_dir, data, options, echo=lambda m: click.echo(m, err=True))
    files = f"{CPU_INT8_FILE}, {CALIB_JSON}" if target == "cpu" else f"{INT8_FILE}, {TRT_CACHE_FILE}, {CALIB_JSON}"
    click.echo(
        f"wrote {files} in {report['bundle']} "
        f"({report['images']} images, {report['tensors']} tensors, {report['float_nodes']} nodes "
        f"in float); total {time.perf_counter() - start:.1f} s"
    )
