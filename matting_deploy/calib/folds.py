"""Leave-people-out folds of a PPM-100-layout folder: calibrate on some persons, score the others.

``manifest.csv`` (beside ``image/``) names each composite's person in a ``person_photo`` column
(composite-dev's format; ``person`` is accepted too). Every person lands in exactly one fold, so
a fold is scored on people its calibration never saw.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.pairs import list_images
from ..errors import MattingDeployError

MANIFEST = "manifest.csv"
PERSON_COLUMNS = ("person_photo", "person")


@dataclass(frozen=True)
class Fold:
    """One fold: the persons it scores, their image stems, and the stems calibration may use."""

    index: int
    persons: tuple[str, ...]
    scored: tuple[str, ...]
    calibration: tuple[str, ...]


def persons_of(root: str | os.PathLike) -> dict[str, str]:
    """{image stem: person} for every image of ``root/image`` that ``root/manifest.csv`` names."""
    root = Path(root)
    path = root / MANIFEST
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise MattingDeployError(f"{path}: cannot read ({e.strerror or e})") from None
    column = next((c for c in PERSON_COLUMNS if rows and c in rows[0]), None)
    if column is None or "name" not in rows[0]:
        raise MattingDeployError(f"{path}: needs columns 'name' and one of {', '.join(PERSON_COLUMNS)}")
    named = {r["name"]: r[column] for r in rows if r.get(column)}
    stems = [p.stem for p in list_images(root / "image")]
    missing = [s for s in stems if s not in named]
    if missing:
        raise MattingDeployError(f"{path}: names no person for {', '.join(missing[:3])}"
                                 + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
    return {s: named[s] for s in stems}


def person_folds(root: str | os.PathLike, k: int, seed: int = 0) -> list[Fold]:
    """``k`` folds by person (images as evenly as the persons allow): persons go, in a seeded
    order (seed 0: most images first), to the fold with the fewest images so far."""
    by_person: dict[str, list[str]] = {}
    for stem, person in sorted(persons_of(root).items()):
        by_person.setdefault(person, []).append(stem)
    if not 2 <= k <= len(by_person):
        raise MattingDeployError(f"--folds must be between 2 and the number of persons ({len(by_person)}), got {k}")
    names = sorted(by_person, key=lambda p: (-len(by_person[p]), p))
    if seed:
        names = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    members: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for person in names:
        i = min(range(k), key=lambda j: (sizes[j], j))
        members[i].append(person)
        sizes[i] += len(by_person[person])
    everyone = sorted(s for stems in by_person.values() for s in stems)
    folds = []
    for i, persons in enumerate(members):
        scored = sorted(s for p in persons for s in by_person[p])
        folds.append(Fold(i, tuple(sorted(persons)), tuple(scored),
                          tuple(s for s in everyone if s not in set(scored))))
    return folds
