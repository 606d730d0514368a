"""The one video decoder (PyAV, imported only when a video is read) and the one extension list."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from ..errors import MattingDeployError, first_line
from ..optional import require

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
