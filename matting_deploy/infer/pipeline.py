"""``infer`` as a function: alpha PNGs and composites for an image, frames or a video."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..bundle import Bundle
from ..data.bgm import BgmInputs, plate_reader
from ..data.imaging import load_image, resize_image, save_png
from ..data.preprocess import alpha_to_source, preprocess_for
from ..data.sources import open_input
from ..errors import MattingDeployError
from ..fileio import staging_dir, write_json
from ..runtimes.open import open_runner
from ..runtimes.segmenter import segmenter
from .postprocess import COMPONENT, POSTPROCESS, official

COLOURS = {
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "grey": (0.5, 0.5, 0.5),
}
OUTPUTS = ("alpha", "composite")


def background_for(spec: str) -> Callable[[int, int], Any]:
    """``green``/``blue``/``white``/``black``/``grey``, ``#RRGGBB`` or an image path ->
    a function (h, w) -> background (h, w, 3) float32 (images are stretched to the frame)."""
    text = spec.strip()
    colour = COLOURS.get(text.lower())
    if colour is None and re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        colour = tuple(int(text[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
    if colour is not None:
        rgb = np.array(colour, np.float32)
        return lambda h, w: np.broadcast_to(rgb, (h, w, 3))
    path = Path(text)
    if not path.is_file():
        raise MattingDeployError(
            f"{path}: background is neither a colour ({', '.join(COLOURS)}, #RRGGBB) nor an image"
        )
    image = load_image(path)
    cache: dict[tuple[int, int], Any] = {}

    def fit(h: int, w: int):
        if (h, w) not in cache:
            cache[(h, w)] = resize_image(image, h, w)
        return cache[(h, w)]

    return fit


def fgr_to_source(fgr: Any, geo: Any) -> Any:
    """RVM's foreground (1, 3, h, w) -> (H, W, 3) at the source size (same crop as the alpha)."""
    img = np.asarray(fgr, np.float32).reshape(fgr.shape[-3:]).transpose(1, 2, 0)
    img = img[geo.top:geo.top + geo.height, geo.left:geo.left + geo.width]
    return np.clip(resize_image(np.ascontiguousarray(img), *geo.src_hw), 0.0, 1.0)


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
    bgr: str | os.PathLike | None = None,
    seg_bundle: str | os.PathLike | None = None,
    postprocess: str = "none",
) -> dict[str, Any]:
    """Matte every frame of ``input_path``; writes ``out/alpha/*.png`` and ``out/composite/*.png``.

    Frames of a folder or video run in order with the recurrent state carried; a still image on
    a recurrent model runs ``warmup_frames`` times from zero state (the last kept). Output goes to
    a staging folder and is renamed into place at the end: nothing half-written.
    """
    start = time.perf_counter()
    out = Path(out)
    for name in (*OUTPUTS, "infer.json"):
        if (out / name).exists() and not force:
            raise MattingDeployError(f"{out / name}: already exists (pass --force to overwrite)")
    if warmup_frames < 1:
        raise MattingDeployError(f"--warmup-frames must be at least 1, got {warmup_frames}")
    bun = Bundle.open(bundle)
    bg = background_for(background)
    extras, plates = _bgm_inputs(bun, bgr, seg_bundle, postprocess, resize)
    kind, total, frames = open_input(input_path)
    if ofd and kind == "image":
        log("note: --ofd needs a sequence of frames; ignored for a single image")
        ofd = False
    if ofd and bun.model != "modnet":
        log(f"note: OFD is MODNet's smoothing; applying it to {bun.model} as asked")
    preprocess = preprocess_for(bun.model)
    h, w = bun.input_hw
    repeats = warmup_frames if (kind == "image" and bun.recurrent) else 1
    runner = open_runner(bun, artifact, backend, ofd=ofd, ofd_threshold=ofd_threshold,
                         threads=threads)
    count = 0
    with staging_dir(out.parent) as stage:
        for sub in OUTPUTS:
            (stage / sub).mkdir()

        def emit(outs: dict[str, Any], meta: tuple[str, Any, Any]) -> None:
            nonlocal count
            name, image, geo = meta
            alpha = alpha_to_source(outs["pha"], geo)
            fg = fgr_to_source(outs["fgr"], geo) if "fgr" in outs else image
            if postprocess == "official":
                alpha, fg, found = official(alpha, fg, image)
                if not found:
                    empty.append(name)
            a = alpha[..., None]
            save_png(stage / "alpha" / f"{name}.png", alpha)
            save_png(stage / "composite" / f"{name}.png", a * fg + (1.0 - a) * bg(*alpha.shape))
            count += 1

        pending: deque = deque()
        empty: list[str] = []
        bar = tqdm(total=total, desc="infer", unit="frame", file=sys.stderr, disable=not progress)
        try:
            for name, image in frames:
                src, geo = preprocess(image, h, w, resize=resize)
                extra = extras.extra(None, image, plates(name)) if extras else {}
                pending.append((name, image, geo))
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
        if count == 0:
            raise MattingDeployError(f"{input_path}: no frames")
        seconds = time.perf_counter() - start
        write_json(stage / "infer.json", {
            "bundle": str(bun.root), "model": bun.model, "artifact": artifact, "backend": backend,
            "input": str(input_path), "kind": kind, "frames": count, "resize": resize,
            "background": background, "ofd": ofd, "ofd_threshold": ofd_threshold if ofd else None,
            "warmup_frames": repeats, "seconds": round(seconds, 2),
            **({"bgr": str(bgr), "seg_bundle": str(seg_bundle)} if extras else {}),
            "postprocess": postprocess, "no_component": empty,
        })
        out.mkdir(parents=True, exist_ok=True)
        for name in (*OUTPUTS, "infer.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(stage / name, target)
    if empty:
        log(f"note: {len(empty)} frame(s) had no alpha above {COMPONENT} (written as zeros; the "
            f"official script skips them): {', '.join(empty[:5])}")
    log(f"{count} frame(s) -> {out}/alpha, {out}/composite in {seconds:.1f} s "
        f"({count / max(seconds, 1e-9):.1f} frames/s end to end)")
    return {"frames": count, "seconds": seconds, "kind": kind, "out": str(out)}
