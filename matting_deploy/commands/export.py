"""``matting-deploy export``."""

from __future__ import annotations

from pathlib import Path

import click

from ..models.specs import RVM_VARIANTS
from .options import examples


@click.command(epilog=examples(
    "matting-deploy export --model rvm --from-onnx rvm_mobilenetv3_fp32.onnx --fp16 --out bundles/rvm",
    "matting-deploy export --model modnet --from-onnx modnet.onnx --height 512 --width 288 --out bundles/modnet",
    "matting-deploy export --model modnet --weights modnet_photographic_portrait_matting.ckpt --out bundles/modnet",
    "matting-deploy export --model bgm --height 256 --width 256 --fp16 --out bundles/bgm",
))
@click.option("--model", type=click.Choice(["modnet", "rvm", "bgm"]), required=True,
              help="Network to export (bgm = Background Matting v1: inputs src, bgr, seg).")
@click.option("--variant", type=click.Choice(RVM_VARIANTS), default="mobilenetv3",
              show_default=True, help="RVM encoder.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Official checkpoint (.ckpt/.pth); needs PyTorch, the [torch] extra.")
@click.option("--from-onnx", "from_onnx", type=click.Path(dir_okay=False),
              help="Start from an existing ONNX: the official RVM release (rvm_mobilenetv3_fp32.onnx) or "
                   "the official MODNet export (input 'input' in [-1, 1], output 'output'). No PyTorch needed.")
@click.option("--height", type=int, default=None,
              help="Input height in pixels (MODNet: divisible by 32) [default: 480; bgm 512].")
@click.option("--width", type=int, default=None,
              help="Input width in pixels (MODNet: divisible by 32) [default: 288; bgm 512].")
@click.option("--downsample-ratio", type=float, default=1.0, show_default=True,
              help="RVM only: encoder input scale, baked into static graphs.")
@click.option("--dynamic", is_flag=True, help="Symbolic batch/height/width (static by default).")
@click.option("--opset", type=int, default=17, show_default=True,
              help="ONNX opset of the bundle (13 or later; older source graphs are converted up).")
@click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@click.option("--force", is_flag=True, help="Overwrite an existing bundle.")
def export(**kw) -> None:
    """Export MODNet, RVM or Background Matting v1 to a bundle: simplified FP32 ONNX (+FP16), parity-checked."""
    from ..export.pipeline import ExportOptions, export_bundle

    kw["out"] = Path(kw["out"])
    export_bundle(ExportOptions(**kw), log=click.echo)
