"""The one video decoder and encoder (PyAV, imported only when a video is read or written) and the
one extension list."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from ..errors import MattingDeployError, first_line
from ..optional import require

DEFAULT_FPS = 30.0  # frames folders have no rate; RVM's own inference writes them at 30 too
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


def decode(path: str | os.PathLike) -> tuple[int | None, Iterator[tuple[int, np.ndarray]]]:
    """(frame count if the container knows it, iterator of (index, uint8 RGB (H, W, 3)))."""
    av = require("av", str(path))
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV raises its own FFmpegError tree and OSError
        raise MattingDeployError(f"{path}: cannot open video ({first_line(e)})") from None
    if not container.streams.video:
        container.close()
        raise MattingDeployError(f"{path}: no video stream")
    stream = container.streams.video[0]

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        try:
            for i, frame in enumerate(container.decode(stream)):
                yield i, frame.to_ndarray(format="rgb24")
        except MattingDeployError:
            raise
        except Exception as e:
            raise MattingDeployError(f"{path}: cannot decode video ({first_line(e)})") from None
        finally:
            container.close()

    return (stream.frames or None), frames()


def count_frames(path: str | os.PathLike) -> int:
    """Number of decodable frames in a video file."""
    _, frames = decode(path)
    return sum(1 for _ in frames)


def read_frames(path: str | os.PathLike, indices: set[int]) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` (0-based) as uint8 RGB (H, W, 3)."""
    out: dict[int, np.ndarray] = {}
    last = max(indices)
    _, frames = decode(path)
    try:
        for i, frame in frames:
            if i in indices:
                out[i] = frame
            if i >= last:
                break
    finally:
        frames.close()
    return out


def float_frames(path: str | os.PathLike) -> tuple[int | None, Iterator[tuple[str, np.ndarray]]]:
    """Like :func:`decode`, frames named ``000000``, ... as float32 RGB in [0, 1]."""
    total, frames = decode(path)
    return total, ((f"{i:06d}", f.astype(np.float32) / 255.0) for i, f in frames)


def frame_rate(path: str | os.PathLike) -> float:
    """Frames per second of a video file's first video stream (30 when the container has none)."""
    av = require("av", str(path))
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except Exception as e:
        raise MattingDeployError(f"{path}: cannot open video ({first_line(e)})") from None
    return float(rate) if rate else DEFAULT_FPS


class VideoWriter:
    """Writes float RGB frames (H, W, 3) in [0, 1] to an H.264 file (MPEG-4 Part 2 without libx264),
    yuv420p at ``fps`` and ``mbps``. yuv420p needs even sizes: an odd last row/column is repeated."""

    def __init__(self, path: str | os.PathLike, fps: float, height: int, width: int, mbps: float):
        from fractions import Fraction

        av = require("av", str(path))
        self.av, self.path = av, path
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        try:
            self.container = av.open(str(path), mode="w")
            self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        except Exception as e:
            raise MattingDeployError(f"{path}: cannot write video ({first_line(e)})") from None
        self.stream.height, self.stream.width = height + height % 2, width + width % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.bit_rate = int(mbps * 1e6)
        self.pad = ((0, height % 2), (0, width % 2), (0, 0))

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame (float RGB in [0, 1], or grey (H, W), at the size given)."""
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        pixels = np.pad(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8), self.pad, mode="edge")
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        """Flush the encoder and close the file."""
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()
