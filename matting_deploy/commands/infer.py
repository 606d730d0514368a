"""``matting-deploy infer``: alpha PNGs and composites for an image, frames or a video."""

from __future__ import annotations

import click

from ..runtimes import BACKENDS


@click.command()
@click.option("--bundle", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@click.option("--artifact", default="fp32", show_default=True,
              help="fp32, fp16 or int8 (with --backend tensorrt: the engine of that precision).")
@click.option("--backend", type=click.Choice(BACKENDS),
              default="cpu", show_default=True)
@click.option("--input", "input_path", type=click.Path(exists=True), required=True,
              help="An image, a folder of frames (natural sort order) or a video (PyAV).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: alpha/, composite/ and infer.json.")
@click.option("--background", default="green", show_default=True,
              help="Composite background: green, blue, white, black, grey, #RRGGBB or an image.")
@click.option("--ofd", is_flag=True, help="MODNet's one-frame-delay smoothing for sequences.")
@click.option("--ofd-threshold", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--resize", type=click.Choice(["stretch", "letterbox"]), default="stretch",
              show_default=True, help="Fit to the model input by squeezing or with padding.")
@click.option("--warmup-frames", type=click.IntRange(min=1), default=4, show_default=True,
              help="Recurrent models on a still image: runs from zero state, the last kept.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="onnxruntime intra-op threads (0 = default).")
@click.option("--bgr", type=click.Path(exists=True),
              help="BGM: the clean background plate (an image, or a folder with one per frame name).")
@click.option("--seg-bundle", type=click.Path(file_okay=False),
              help="BGM: an RVM or MODNet bundle whose alpha, processed officially, is the mask.")
@click.option("--postprocess", type=click.Choice(["none", "official"]), default="none",
              show_default=True,
              help="BGM: the official post-processing (image as foreground where alpha > 0.975, "
                   "largest connected component of alpha > 0.05).")
@click.option("--force", is_flag=True, help="Replace existing alpha/, composite/, infer.json.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def infer(bundle, artifact, backend, input_path, out, background, ofd, ofd_threshold, resize,
          warmup_frames, threads, bgr, seg_bundle, postprocess, force, quiet):
    """Alpha mattes and composites at the source size for an image, frames or a video."""
    from ..infer.pipeline import run_infer

    run_infer(bundle, input_path, out, artifact, backend, background, ofd, ofd_threshold, resize,
              warmup_frames, threads, force, progress=not quiet, log=click.echo, bgr=bgr,
              seg_bundle=seg_bundle, postprocess=postprocess)
