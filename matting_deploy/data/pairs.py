"""PPM-100-layout data sets: ``image/`` and ``matte/`` folders paired by file stem."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import MattingDeployError
from .imaging import IMAGE_EXTS


@dataclass(frozen=True)
class Pair:
    name: str
    image: Path
    matte: Path | None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MattingDeployError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def is_ppm_layout(root: str | os.PathLike) -> bool:
    return (Path(root) / "image").is_dir()


def ppm_pairs(
    root: str | os.PathLike, require_matte: bool = True
) -> tuple[list[Pair], list[Path]]:
    """Pairs of ``root/image/NAME.*`` and ``root/matte/NAME.*``, plus the files left unmatched.

    With ``require_matte=False`` (calibration) images without a matte are kept with ``matte=None``.
    """
    root = Path(root)
    images = {p.stem: p for p in list_images(root / "image")}
    matte_dir = root / "matte"
    mattes = {p.stem: p for p in list_images(matte_dir)} if matte_dir.is_dir() else {}
    if require_matte and not mattes:
        raise MattingDeployError(f"{matte_dir}: no matte files (PPM-100 layout needs image/ and matte/)")
    pairs, unmatched = [], []
    for stem in sorted(images):
        if stem in mattes:
            pairs.append(Pair(stem, images[stem], mattes[stem]))
        elif require_matte:
            unmatched.append(images[stem])
        else:
            pairs.append(Pair(stem, images[stem], None))
    unmatched += [mattes[s] for s in sorted(set(mattes) - set(images))]
    if not pairs:
        raise MattingDeployError(f"{root}: no image/matte pairs found")
    return pairs, unmatched
