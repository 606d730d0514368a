"""``matting-deploy infer``: alpha and composites (PNG or video) for an image, a folder or a video."""

from __future__ import annotations

import click

from ..runtimes import OPENVINO
from .options import artifact_option, backend_option, examples


@click.command(epilog=examples(
    "matting-deploy infer --bundle bundles/rvm --input clip.mp4 --out runs/clip   # com.mp4, pha.mp4, fgr.mp4",
    "matting-deploy infer --bundle bundles/rvm --backend openvino --artifact bf16 --input clip.mp4 --out runs/ov",
    "matting-deploy infer --bundle bundles/rvm --artifact int8 --input photos/ --out runs/photos --background white",
    "matting-deploy infer --bundle bundles/modnet --input frames/ --out runs/frames --ofd --output-type png",
    "matting-deploy infer --bundle bundles/bgm --input photo.jpg --bgr plate.jpg --seg-bundle bundles/rvm "
    "--out runs/bgm",
))
@click.option("--bundle", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@artifact_option(many=False, default="fp32", show_default=True,
                 help=" (with --backend tensorrt: the engine of that precision; bf16: OpenVINO only).")
@backend_option(many=False, default="cpu", show_default=True,
                help="Engine: onnxruntime CPU/CUDA/TensorRT provider, a built TensorRT engine, or OpenVINO.")
@click.option("--device", metavar="NAME",
              help="OpenVINO device with --backend openvino: CPU (default), GPU, NPU, AUTO, ...")
@click.option("--input", "input_path", type=click.Path(exists=True), required=True,
              help="An image, a folder of images or numbered frames (natural sort order) or a video (PyAV).")
@click.option("--as", "as_", type=click.Choice(["video", "images"]),
              help="Run a folder or video as one clip (state carried) or as separate images "
                   "[default: a clip for a video or numbered frames (0001.png, frame2.jpg, ...)].")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: alpha/ + composite/ (png) or com.mp4 + pha.mp4 [+ fgr.mp4] (video), "
                   "and infer.json.")
@click.option("--output-type", type=click.Choice(["video", "png"]),
              help="Videos at the source's frame rate and size, or PNG frames "
                   "[default: video for a video input, png otherwise].")
@click.option("--video-mbps", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Bit rate of the written videos, in Mbit/s.")
@click.option("--background", default="green", show_default=True,
              help="Composite background: green, blue, white, black, grey, #RRGGBB or an image.")
@click.option("--ofd", is_flag=True, help="MODNet's one-frame-delay smoothing for sequences.")
@click.option("--ofd-threshold", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="OFD: a pixel is smoothed when it differs from both neighbours by more than this.")
@click.option("--resize", type=click.Choice(["stretch", "letterbox"]), default="stretch",
              show_default=True, help="Fit to the model input by squeezing or with padding.")
@click.option("--warmup-frames", type=click.IntRange(min=1), default=4, show_default=True,
              help="Recurrent models on a still image: runs from zero state, the last kept.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="onnxruntime intra-op / OpenVINO inference threads (0 = default).")
@click.option("--bgr", type=click.Path(exists=True),
              help="BGM: the clean background plate (an image, or a folder with one per frame name).")
@click.option("--seg-bundle", type=click.Path(file_okay=False),
              help="BGM: an RVM or MODNet bundle whose alpha, processed officially, is the mask.")
@click.option("--postprocess", type=click.Choice(["none", "official"]), default="none",
              show_default=True,
              help="BGM: the official post-processing (image as foreground where alpha > 0.975, "
                   "largest connected component of alpha > 0.05).")
@click.option("--force", is_flag=True, help="Replace existing outputs (PNG folders or videos) and infer.json.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def infer(bundle, artifact, backend, device, input_path, as_, out, output_type, video_mbps, background, ofd,
          ofd_threshold, resize, warmup_frames, threads, bgr, seg_bundle, postprocess, force, quiet):
    """Alpha mattes and composites at the source size for an image, a folder or a video."""
    from ..infer.pipeline import run_infer

    if device is not None:
        if backend != OPENVINO:
            raise click.BadParameter(f"an OpenVINO device: use it with --backend {OPENVINO}", param_hint="--device")
        backend = f"{OPENVINO}:{device}"  # open_runner's spelling of backend + device
    run_infer(bundle, input_path, out, artifact, backend, background, ofd, ofd_threshold, resize,
              warmup_frames, threads, force, progress=not quiet, log=click.echo, as_=as_,
              output_type=output_type, video_mbps=video_mbps, bgr=bgr, seg_bundle=seg_bundle,
              postprocess=postprocess)
