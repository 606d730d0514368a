"""Reproducible choice of calibration images and a fingerprint of the data they came from."""

from __future__ import annotations

import hashlib

import numpy as np

from ..data.sources import CalibItem, CalibSource
from ..errors import MattingDeployError


def choose(items: list[CalibItem], num: int, seed: int = 0) -> list[CalibItem]:
    """``num`` items (all if fewer) picked by a seeded shuffle across the whole folder."""
    if num < 1:
        raise MattingDeployError(f"--num must be at least 1, got {num}")
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[: min(num, len(items))]]


def split_holdout(items: list[CalibItem], fraction: float, seed: int = 0) -> tuple[list, list]:
    """(calibration, held-out): a seeded split; held-out gets round(fraction * n), at least 1."""
    if len(items) < 2:
        raise MattingDeployError("need at least 2 calibration images to hold some out")
    n_hold = min(len(items) - 1, max(1, round(fraction * len(items))))
    order = np.random.default_rng(seed + 1).permutation(len(items))
    hold = sorted(order[:n_hold])
    keep = sorted(order[n_hold:])
    return [items[i] for i in keep], [items[i] for i in hold]


def fingerprint(source: CalibSource) -> str:
    """sha256 over every candidate file's name and content (a video: its bytes), order-free.

    Same files -> same fingerprint, wherever the folder lives; any changed, added or removed
    image changes it.
    """
    def rel(path) -> str:
        return path.name if path == source.root else path.relative_to(source.root).as_posix()

    h = hashlib.sha256()
    h.update(source.kind.encode())
    for path in sorted({it.path for it in source.items}, key=rel):
        h.update(rel(path).encode() + b"\0")
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            h.update(f"unreadable:{e.errno}".encode())
        h.update(b"\0")
    return h.hexdigest()
