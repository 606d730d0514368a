"""Inputs that are not scored pairs: calibration sources (:func:`find_source`) and what
``infer`` reads (:func:`open_input`); both decode videos with :mod:`.video`.

Accepted calibration sources:

- a PPM-100-layout folder (``image/`` and optional ``matte/``): the images in ``image/``;
- a plain folder of images (JPEG/PNG/..., RGB/RGBA/grey, 8- or 16-bit);
- a folder of video frames (every file stem is a number, e.g. ``0000.jpg``): a sequence;
- a video file (``.mp4``, ``.mov``, ...), decoded with PyAV (imported only when needed).

Items of a sequence remember their position so that recurrent models (RVM) can be warmed up on
the frames before them; still images are warmed up on themselves. Unreadable files are reported
by name and skipped; an empty set is an error.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MattingDeployError
from .imaging import IMAGE_EXTS, check_image, load_image
from .pairs import is_ppm_layout, list_images
from .video import VIDEO_EXTS, count_frames, float_frames, frame_rate, read_frames


@dataclass(frozen=True)
class CalibItem:
    """One calibration image: a still image, or frame ``index`` of a sequence."""

    name: str
    path: Path
    index: int | None = None  # position in the sequence; None for still images


@dataclass
class CalibSource:
    """What a data folder holds: its items, their kind and the files that had to be skipped."""

    root: Path
    kind: str  # 'images' | 'frames' | 'video'
    items: list[CalibItem]
    skipped: list[str] = field(default_factory=list)  # "file: problem" lines

    @property
    def sequential(self) -> bool:
        """Frames of one clip (warm-up uses the preceding frames) rather than still images."""
        return self.kind in ("frames", "video")


def _is_frame_folder(paths: list[Path]) -> bool:
    return len(paths) > 1 and all(p.stem.isdigit() for p in paths)


def find_source(data: str | os.PathLike) -> CalibSource:
    """Classify ``data`` and list its calibration items (nothing is decoded yet)."""
    data = Path(data)
    if not data.exists():
        raise MattingDeployError(f"{data}: no such file or folder")
    if data.is_file():
        if data.suffix.lower() not in VIDEO_EXTS:
            raise MattingDeployError(
                f"{data}: not a folder of images or a video file ({', '.join(VIDEO_EXTS)})"
            )
        count = count_frames(data)
        items = [CalibItem(f"{data.name}#{i}", data, i) for i in range(count)]
        return _checked(CalibSource(data, "video", items))
    folder = data / "image" if is_ppm_layout(data) else data
    paths = list_images(folder)
    if _is_frame_folder(paths):
        paths.sort(key=lambda p: int(p.stem))
        items = [CalibItem(p.name, p, i) for i, p in enumerate(paths)]
        return _checked(CalibSource(data, "frames", items))
    return _checked(CalibSource(data, "images", [CalibItem(p.name, p) for p in paths]))


def _checked(source: CalibSource) -> CalibSource:
    if not source.items:
        if source.kind == "video":
            raise MattingDeployError(f"{source.root}: no calibration images found (the video has no frames)")
        where = "in image/ " if is_ppm_layout(source.root) else ""
        raise MattingDeployError(
            f"{source.root}: no calibration images found {where}(accepted: {' '.join(IMAGE_EXTS)} files, "
            f"numbered frames, the PPM-100 layout with image/, or a video file: {' '.join(VIDEO_EXTS)})")
    return source


def readable_only(source: CalibSource) -> CalibSource:
    """The source without image files that fail a cheap readability check (listed in
    ``skipped``), so that ``--num`` picks among readable images; an error naming the folder if
    none is readable. Frames are renumbered; videos are checked when decoded."""
    if source.kind == "video":
        return source
    good, skipped = [], list(source.skipped)
    for item in source.items:
        try:
            check_image(item.path)
            good.append(item)
        except MattingDeployError as e:
            skipped.append(str(e))
    if not good:
        raise MattingDeployError(f"{source.root}: no calibration image could be read "
                                 f"({len(source.items)} tried; first: {skipped[-len(source.items)]})")
    if source.kind == "frames":
        good = [CalibItem(it.name, it.path, i) for i, it in enumerate(good)]
    return CalibSource(source.root, source.kind, good, skipped)


class FrameLoader:
    """Loads item pixels as float32 RGB (H, W, 3) in [0, 1].

    Video frames are decoded in one pass per :meth:`prefetch` and kept as uint8 until used.
    """

    def __init__(self, source: CalibSource):
        self.source = source
        self._video: dict[int, np.ndarray] = {}

    def prefetch(self, items: Iterable[CalibItem]) -> None:
        """Decode the video frames ``items`` will need (no-op for image files)."""
        if self.source.kind == "video":
            wanted = {it.index for it in items if it.index is not None} - set(self._video)
            if wanted:
                self._video.update(read_frames(self.source.root, wanted))

    def has(self, item: CalibItem) -> bool:
        return self.source.kind != "video" or item.index in self._video

    def load(self, item: CalibItem) -> np.ndarray:
        if self.source.kind == "video":
            if item.index not in self._video:
                self.prefetch([item])
            if item.index not in self._video:
                raise MattingDeployError(f"{item.path}: frame {item.index} could not be decoded")
            return self._video[item.index].astype(np.float32) / 255.0
        return load_image(item.path)

    def forget(self, keep: set[int]) -> None:
        """Drop decoded video frames not in ``keep`` (bounds memory)."""
        self._video = {i: f for i, f in self._video.items() if i in keep}


def load_readable(
    items: list[CalibItem], load: Callable[[CalibItem], np.ndarray], skipped: list[str]
) -> list[tuple[CalibItem, np.ndarray]]:
    """Load each item; unreadable ones are appended to ``skipped`` (one line each) and dropped."""
    out = []
    for item in items:
        try:
            out.append((item, load(item)))
        except MattingDeployError as e:
            skipped.append(str(e))
    return out


def warmup_items(source: CalibSource, item: CalibItem, frames: int) -> list[CalibItem]:
    """The ``frames - 1`` items run before ``item`` so recurrent state is real, not zero.

    Still images repeat themselves; frames of a sequence use the frames before them (fewer at the
    start of the clip).
    """
    n = max(0, frames - 1)
    if not source.sequential or item.index is None:
        return [item] * n
    start = max(0, item.index - n)
    return source.items[start : item.index]


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def numbered_frames(paths: list[Path]) -> bool:
    """True for the frames of one clip: two or more names that differ only by a trailing number,
    the numbers evenly spaced (``0001.png``, ``0002.png``, ... or ``frame1``, ``frame2``, ...)."""
    parts = [re.fullmatch(r"(.*?)(\d+)", p.stem) for p in paths]
    if len(paths) < 2 or not all(parts) or len({m.group(1) for m in parts}) != 1:
        return False
    numbers = sorted(int(m.group(2)) for m in parts)
    steps = {b - a for a, b in zip(numbers, numbers[1:], strict=False)}
    return len(steps) == 1 and steps != {0}


@dataclass
class InferInput:
    """What ``infer`` reads: frames in order, and whether they are one clip (state carried) or
    unrelated stills (each run on its own)."""

    path: Path
    kind: str  # 'image' (one file), 'frames' (a folder run as a clip), 'images' (a folder of stills), 'video'
    count: int | None  # frames, when known up front
    frames: Iterator[tuple[str, np.ndarray]]  # (name, RGB float32 (H, W, 3) in [0, 1])
    clip: bool  # frames of one sequence
    fps: float | None = None  # video files only


def open_input(path: str | os.PathLike, as_: str | None = None) -> InferInput:
    """Open an image, a folder or a video for ``infer``.

    A folder is a clip when its images are numbered frames (:func:`numbered_frames`), else a set of
    unrelated images; ``as_`` ('video' or 'images') overrides that, for folders and videos alike.
    Folders run in natural sort order (``frame2`` before ``frame10``).
    """
    path = Path(path)
    if as_ not in (None, "video", "images"):
        raise MattingDeployError(f"--as {as_}: choose video or images")
    if path.is_dir():
        files = sorted(list_images(path), key=_natural_key)
        if not files:
            raise MattingDeployError(f"{path}: no images ({', '.join(IMAGE_EXTS)})")
        clip = as_ == "video" or (as_ is None and numbered_frames(files))
        stems = Counter(p.stem for p in files)  # a.jpg and a.png must not share one output name
        names = [p.stem if stems[p.stem] == 1 else f"{p.stem}.{p.suffix[1:]}" for p in files]
        frames = ((n, load_image(p)) for n, p in zip(names, files, strict=True))
        return InferInput(path, "frames" if clip else "images", len(files), frames, clip)
    if not path.is_file():
        raise MattingDeployError(f"{path}: no such file or folder")
    if path.suffix.lower() in IMAGE_EXTS:
        return InferInput(path, "image", 1, iter([(path.stem, load_image(path))]), False)
    if path.suffix.lower() in VIDEO_EXTS:
        count, frames = float_frames(path)
        return InferInput(path, "video", count, frames, as_ != "images", frame_rate(path))
    raise MattingDeployError(
        f"{path}: not an image ({', '.join(IMAGE_EXTS)}), video ({', '.join(VIDEO_EXTS)}) "
        "or folder of frames"
    )
