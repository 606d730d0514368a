"""What ``infer`` writes: PNG folders (``alpha/``, ``composite/``) or videos (``com.mp4``,
``pha.mp4``, ``fgr.mp4`` as RVM's own inference writes them), and the composite's background."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data.imaging import load_image, resize_image, save_png
from ..data.video import VideoWriter
from ..errors import MattingDeployError

COLOURS = {
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "grey": (0.5, 0.5, 0.5),
}
PNG_OUTPUTS = ("alpha", "composite")
VIDEO_OUTPUTS = ("com.mp4", "pha.mp4", "fgr.mp4")
OUTPUT_TYPES = ("video", "png")


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


class PngOutput:
    """``alpha/<name>.png`` and ``composite/<name>.png``."""

    def __init__(self, folder: Path):
        self.folder = folder
        for sub in PNG_OUTPUTS:
            (folder / sub).mkdir()

    @property
    def names(self) -> tuple[str, ...]:
        return PNG_OUTPUTS

    def write(self, name: str, alpha: np.ndarray, composite: np.ndarray, fgr: np.ndarray | None) -> None:
        save_png(self.folder / "alpha" / f"{name}.png", alpha)
        save_png(self.folder / "composite" / f"{name}.png", composite)

    def close(self) -> None:
        pass


class VideoOutput:
    """``com.mp4`` (composite), ``pha.mp4`` (alpha) and, for models with a foreground output,
    ``fgr.mp4``, at ``fps`` and the first frame's size."""

    def __init__(self, folder: Path, fps: float, mbps: float, foreground: bool):
        self.folder, self.fps, self.mbps = folder, fps, mbps
        self.files = VIDEO_OUTPUTS if foreground else VIDEO_OUTPUTS[:2]
        self.writers: dict[str, VideoWriter] = {}
        self.hw: tuple[int, int] = (0, 0)

    @property
    def names(self) -> tuple[str, ...]:
        return self.files

    def write(self, name: str, alpha: np.ndarray, composite: np.ndarray, fgr: np.ndarray | None) -> None:
        if not self.writers:
            self.hw = alpha.shape
            self.writers = {f: VideoWriter(self.folder / f, self.fps, *self.hw, self.mbps) for f in self.files}
        frames = {"com.mp4": composite, "pha.mp4": alpha, "fgr.mp4": fgr}
        for file, writer in self.writers.items():
            frame = frames[file]
            if frame.shape[:2] != self.hw:  # a folder of frames of mixed sizes: the first one's size
                frame = resize_image(np.asarray(frame, np.float32), *self.hw)
            writer.write(frame)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
