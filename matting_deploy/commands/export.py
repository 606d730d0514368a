"""``matting-deploy export``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--model", type=click.Choice(["modnet", "rvm", "bgm"]), required=True,
              help="Network to export (bgm = Background Matting v1: inputs src, bgr, seg).")
@click.option("--variant", type=click.Choice(["mobilenetv3", "resnet50"]), default="mobilenetv3",
              show_default=True, help="RVM encoder.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Official checkpoint (.ckpt/.pth).")
@click.option("--from-onnx", "from_onnx", type=click.Path(dir_okay=False),
              help="Start from an existing RVM ONNX (e.g. the official rvm_mobilenetv3_fp32.onnx).")
@click.option("--height", type=int, default=None, help="Input height [default: 480; bgm 512].")
@click.option("--width", type=int, default=None, help="Input width [default: 288; bgm 512].")
@click.option("--downsample-ratio", type=float, default=1.0, show_default=True,
              help="RVM only: encoder input scale, baked into static graphs.")
@click.option("--dynamic", is_flag=True, help="Symbolic batch/height/width (static by default).")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@click.option("--force", is_flag=True, help="Overwrite an existing bundle.")
def export(**kw) -> None:
    """Export MODNet, RVM or Background Matting v1 to a bundle: simplified FP32 ONNX (+FP16), parity-checked."""
    from ..export.pipeline import ExportOptions, export_bundle

    kw["out"] = Path(kw["out"])
    export_bundle(ExportOptions(**kw), log=click.echo)
