"""Reproducible choice of calibration images and a fingerprint of the data they came from."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from ..data.sources import CalibItem, CalibSource
from ..errors import MattingDeployError


def choose(items: list[CalibItem], num: int, seed: int = 0) -> list[CalibItem]:
    """``num`` items (all if fewer) picked by a seeded shuffle across the whole folder."""
    if num < 1:
        raise MattingDeployError(f"--num must be at least 1, got {num}")
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[: min(num, len(items))]]


def split_holdout(items: list[CalibItem], fraction: float, seed: int = 0,
                  persons: dict[str, str] | None = None) -> tuple[list, list]:
    """(calibration, held-out): a seeded split; held-out gets round(fraction * n), at least 1.

    ``persons`` ({image stem: person}, naming every item): whole persons are held out instead, in
    a seeded order, as many as fit in that count (at least the smallest one), never all of them,
    so the held-out images show people the calibration does not see."""
    if len(items) < 2:
        raise MattingDeployError("need at least 2 calibration images to hold some out")
    n_hold = min(len(items) - 1, max(1, round(fraction * len(items))))
    rng = np.random.default_rng(seed + 1)
    if persons is not None and len({persons[it.path.stem] for it in items}) > 1:
        return _split_persons(items, n_hold, rng, persons)
    order = rng.permutation(len(items))
    hold = sorted(order[:n_hold])
    keep = sorted(order[n_hold:])
    return [items[i] for i in keep], [items[i] for i in hold]


def _split_persons(items: list[CalibItem], n_hold: int, rng: np.random.Generator,
                   persons: dict[str, str]) -> tuple[list, list]:
    count = Counter(persons[it.path.stem] for it in items)
    names = sorted(count)
    names = [names[i] for i in rng.permutation(len(names))]
    held: set[str] = set()
    for name in names:
        if sum(count[h] for h in held) + count[name] <= n_hold and len(held) < len(names) - 1:
            held.add(name)
    if not held:
        held.add(min(names, key=count.__getitem__))  # the first of the smallest, in the seeded order
    return ([it for it in items if persons[it.path.stem] not in held],
            [it for it in items if persons[it.path.stem] in held])


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
