"""``infer`` as a function: alpha mattes and composites for an image, a folder or a video.

A folder of numbered frames (or a video) runs as one clip with the recurrent state carried; a
folder of other images runs each image on its own (``as_`` overrides). Clips are written as
videos by default for video input (``com.mp4``, ``pha.mp4``, ``fgr.mp4``), PNG folders otherwise.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..bundle import Bundle
from ..data.bgm import BgmInputs, plate_reader
from ..data.preprocess import alpha_plane, alpha_to_source, preprocess_for
from ..data.sources import InferInput, open_input
from ..data.video import DEFAULT_FPS
from ..errors import MattingDeployError
from ..fileio import check_dir_writable, deferred_signals, pause_point, staging_dir, write_json
from ..progress import bar as progress_bar
from ..runtimes.open import open_runner
from ..runtimes.segmenter import segmenter
from .outputs import OUTPUT_TYPES, PNG_OUTPUTS, VIDEO_OUTPUTS, PngOutput, VideoOutput, background_for, fgr_to_source
from .postprocess import COMPONENT, POSTPROCESS, official


def describe(source: InferInput, recurrent: bool, repeats: int, asked: bool = False) -> str:
    """One line saying how the input is run (and how to change it); ``asked``: chosen by --as."""
    n = source.count
    if source.kind == "image":
        how = f"{repeats} frames from zero state, the last kept" if repeats > 1 else "one run"
        return f"input: image {source.path.name} ({how})"
    what = {"frames": f"{n} numbered frames in {source.path}", "images": f"{n} images in {source.path}",
            "video": f"video {source.path.name}" + (f" ({n} frames)" if n else "")}[source.kind]
    if source.clip:
        state = ", state carried from frame to frame" if recurrent else ""
        how = "(--as video)" if asked else "(--as images runs each frame on its own)"
        return f"input: {what}, run as one clip{state} {how}"
    reason = " (--as images)" if asked else "" if source.kind == "video" else " (names are not numbered frames)"
    each = f"{repeats} frames from zero state each" if repeats > 1 else "each on its own"
    return f"input: {what}, run as separate images{reason}, {each} (--as video runs them as a clip)"


def _check_outputs(out: Path, names: tuple[str, ...], force: bool) -> None:
    for name in (*names, "infer.json"):
        if (out / name).exists() and not force:
            raise MattingDeployError(f"{out / name}: already exists (pass --force to overwrite)")


def _bgm_inputs(bun: Bundle, bgr: Any, seg_bundle: Any, postprocess: str, resize: str) -> tuple:
    """BGM's (plate/mask provider, plate by frame name); (None, None) for the other models."""
    if postprocess not in POSTPROCESS:
        raise MattingDeployError(f"--postprocess {postprocess}: choose {', '.join(POSTPROCESS)}")
    if bun.model != "bgm":
        for flag, value in (("--bgr", bgr), ("--seg-bundle", seg_bundle),
                            ("--postprocess", postprocess != "none")):
            if value:
                raise MattingDeployError(f"{flag}: Background Matting only ({bun.root} is {bun.model})")
        return None, None
    if not bgr:
        raise MattingDeployError("--bgr: a Background Matting bundle needs the clean plate "
                                 "(an image, or a folder with one per frame name)")
    if not seg_bundle:
        raise MattingDeployError("--seg-bundle: a Background Matting bundle needs a person mask: "
                                 "name an RVM or MODNet bundle")
    plates = plate_reader(bgr)
    return BgmInputs(*bun.input_hw, resize, mask_fn=segmenter(seg_bundle)), plates


def run_infer(
    bundle: str | os.PathLike,
    input_path: str | os.PathLike,
    out: str | os.PathLike,
    artifact: str = "fp32",
    backend: str = "cpu",
    background: str = "green",
    ofd: bool = False,
    ofd_threshold: float = 0.1,
    resize: str = "stretch",
    warmup_frames: int = 4,
    threads: int = 0,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    as_: str | None = None,
    output_type: str | None = None,
    video_mbps: float = 4.0,
    bgr: str | os.PathLike | None = None,
    seg_bundle: str | os.PathLike | None = None,
    postprocess: str = "none",
) -> dict[str, Any]:
    """Matte every frame of ``input_path`` into ``out`` (PNG folders or videos, plus infer.json).

    Frames of a clip run in order with the recurrent state carried; a still image on a recurrent
    model runs ``warmup_frames`` times from zero state (the last kept). ``output_type`` 'video'
    or 'png' (default: video for a video file, png otherwise). Output goes to a staging folder and
    is renamed into place at the end: nothing half-written.
    """
    start = time.perf_counter()
    out = Path(out)
    if warmup_frames < 1:
        raise MattingDeployError(f"--warmup-frames must be at least 1, got {warmup_frames}")
    if output_type not in (None, *OUTPUT_TYPES):
        raise MattingDeployError(f"--output-type {output_type}: choose {' or '.join(OUTPUT_TYPES)}")
    if not video_mbps > 0:
        raise MattingDeployError(f"--video-mbps must be positive, got {video_mbps}")
    check_dir_writable(out)
    bun = Bundle.open(bundle, log)
    bg = background_for(background)
    extras, plates = _bgm_inputs(bun, bgr, seg_bundle, postprocess, resize)
    source = open_input(input_path, as_)
    output_type = output_type or ("video" if source.kind == "video" and source.clip else "png")
    if output_type == "video" and not source.clip:
        raise MattingDeployError(f"{input_path}: --output-type video needs a clip (a video or numbered "
                                 "frames; --as video makes a folder one)")
    _check_outputs(out, PNG_OUTPUTS if output_type == "png" else VIDEO_OUTPUTS, force)
    if ofd and not source.clip:
        log("note: --ofd smooths a clip over time; ignored for images run on their own")
        ofd = False
    if ofd and bun.model != "modnet":
        log(f"note: OFD is MODNet's smoothing; applying it to {bun.model} as asked")
    preprocess = preprocess_for(bun.model)
    h, w = bun.input_hw
    repeats = 1 if source.clip or not bun.recurrent else warmup_frames
    log(describe(source, bun.recurrent, repeats, asked=as_ is not None))
    runner = open_runner(bun, artifact, backend, ofd=ofd, ofd_threshold=ofd_threshold, threads=threads)
    fps = (source.fps or DEFAULT_FPS) if output_type == "video" else None
    count = 0
    with staging_dir(out.parent) as stage:
        sink = (PngOutput(stage) if output_type == "png"
                else VideoOutput(stage, fps, video_mbps, foreground="fgr" in runner_outputs(bun)))

        def emit(outs: dict[str, Any], meta: tuple[str, Any, Any]) -> None:
            nonlocal count
            name, image, geo = meta
            alpha = alpha_to_source(alpha_plane(outs["pha"], f"{bun.root} ({artifact})"), geo)
            fgr = fgr_to_source(outs["fgr"], geo) if "fgr" in outs else None
            if postprocess == "official":  # BGM (always has fgr): the official test script's step
                alpha, fgr, found = official(alpha, image if fgr is None else fgr, image)
                if not found:
                    empty.append(name)
            a = alpha[..., None]
            fg = image if fgr is None else fgr
            sink.write(name, alpha, a * fg + (1.0 - a) * bg(*alpha.shape), fgr)
            count += 1
            pause_point("infer-frames")

        pending: deque = deque()
        empty: list[str] = []
        bar = progress_bar(source.count, "infer", unit="frame" if source.clip else "image", enabled=progress)
        try:
            for name, image in source.frames:
                src, geo = preprocess(image, h, w, resize=resize)
                extra = extras.extra(None, image, plates(name)) if extras else {}
                pending.append((name, image, geo))
                if not source.clip:
                    runner.reset()
                for _ in range(repeats):
                    outs = runner.run(src, **extra)
                if outs:  # with OFD the first frame's result comes one call later
                    emit(outs, pending.popleft())
                bar.update()
            if ofd:
                last = runner.flush()
                if last:
                    emit(last, pending.popleft())
        finally:
            bar.close()
            runner.close()
            sink.close()
        if count == 0:
            raise MattingDeployError(f"{input_path}: no frames")
        seconds = time.perf_counter() - start
        write_json(stage / "infer.json", {
            "bundle": str(bun.root), "model": bun.model, "artifact": artifact, "backend": backend,
            "input": str(input_path), "kind": source.kind, "clip": source.clip, "frames": count,
            "resize": resize, "background": background, "ofd": ofd,
            "ofd_threshold": ofd_threshold if ofd else None, "warmup_frames": repeats,
            "output_type": output_type, "fps": fps, "video_mbps": video_mbps if fps else None,
            **({"bgr": str(bgr), "seg_bundle": str(seg_bundle)} if extras else {}),
            "postprocess": postprocess, "no_component": empty,
            "outputs": list(sink.names), "seconds": round(seconds, 2),
        })
        out.mkdir(parents=True, exist_ok=True)
        with staging_dir(out.parent) as trash, deferred_signals():
            for name in (*sink.names, "infer.json"):  # infer.json last: it says the run completed
                if (out / name).exists():
                    os.replace(out / name, trash / name)
                os.replace(stage / name, out / name)
    unit = "frame" if source.clip else "image"  # separate photos are images, a clip's are frames
    if empty:
        log(f"note: {_count(len(empty), unit)} had no alpha above {COMPONENT} (written as zeros; the "
            f"official script skips them): {', '.join(empty[:5])}")
    written = ", ".join(f"{out}/{n}" for n in sink.names)
    log(f"{_count(count, unit)} -> {written} in {seconds:.1f} s ({count / max(seconds, 1e-9):.1f} {unit}s/s "
        "end to end)")
    return {"frames": count, "seconds": seconds, "kind": source.kind, "clip": source.clip, "out": str(out)}


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def runner_outputs(bundle: Bundle) -> set[str]:
    """Output names of the bundle's graphs (from the manifest)."""
    return {o["name"] for o in bundle.manifest.get("outputs", [])}
