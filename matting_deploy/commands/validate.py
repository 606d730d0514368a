"""``matting-deploy validate``: accuracy table of every artifact and backend, with drift gates."""

from __future__ import annotations

from typing import Any

import click

from .options import artifact_option, backend_option, examples


@click.command(epilog=examples(
    "matting-deploy validate --bundle bundles/rvm --data PPM-100",
    "matting-deploy validate --bundle bundles/rvm --data PPM-100 --artifacts fp16,int8 --backends cpu,tensorrt "
    "--reference desktop/report/report.json --report device-report",
))
@click.option("--bundle", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    required=True,
    help="PPM-100 layout (image/ + matte/), and/or clip folders (frames/ + matte/).",
)
@artifact_option(many=True, help=" (default: every ONNX artifact).")
@backend_option(many=True, help=" (default: cpu plus every GPU backend present; missing ones are skipped "
                "with a note).")
@click.option(
    "--limit", type=click.IntRange(min=1), help="Score only the first N images (and frames)."
)
@click.option(
    "--resize",
    type=click.Choice(["stretch", "letterbox"]),
    default="stretch",
    show_default=True,
    help="Squeeze to the input size, or keep the aspect ratio with padding.",
)
@click.option(
    "--warmup-frames",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Recurrent models: frames run per still image from zero state, the last scored.",
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False),
    help="A previous report.json whose FP32 row is the reference (else FP32 runs here).",
)
@click.option(
    "--max-mse-ratio",
    type=float,
    default=1.10,
    show_default=True,
    help="Gate: MSE at most this multiple of FP32's.",
)
@click.option(
    "--max-miou-drop",
    type=float,
    default=0.003,
    show_default=True,
    help="Gate: mIoU at most this much below FP32's.",
)
@click.option(
    "--report", type=click.Path(file_okay=False), help="Report folder (default: BUNDLE/report)."
)
@click.option(
    "--seg-bundle", type=click.Path(file_okay=False),
    help="BGM: an RVM or MODNet bundle whose alpha, processed as the official test script does, "
    "is the person mask (else data/seg/NAME.*).",
)
@click.option("--force", is_flag=True, help="Replace an existing report folder.")
def validate(**kw: Any) -> None:
    """Score every artifact against ground-truth mattes and gate its drift from FP32.

    Exit code 0 when every gate holds, 1 when a drift gate fails, 2 on bad input.
    """
    from ..validate.pipeline import run_validation

    run_validation(**kw, log=click.echo)
