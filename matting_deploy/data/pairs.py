"""Scored data sets: still pairs (``image/`` + ``matte/``, PPM-100 layout) and clips
(``frames/`` + ``matte/``), paired by file stem; one implementation for both."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import MattingDeployError, first_line
from .imaging import IMAGE_EXTS

NOTES_FILE = "notes.txt"  # optional, at a data set's root: one note a line (e.g. where its mattes came from)


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


def _match(
    images: dict[str, Path], mattes: dict[str, Path], keep_unmatted: bool = False
) -> tuple[list[Pair], list[Path]]:
    """Pairs by file stem, in name order, plus the files left unmatched (images, then mattes).

    ``keep_unmatted``: images without a matte become pairs with ``matte=None`` instead.
    """
    pairs, unmatched = [], []
    for stem in sorted(images):
        if stem in mattes:
            pairs.append(Pair(stem, images[stem], mattes[stem]))
        elif keep_unmatted:
            pairs.append(Pair(stem, images[stem], None))
        else:
            unmatched.append(images[stem])
    unmatched += [mattes[s] for s in sorted(set(mattes) - set(images))]
    return pairs, unmatched


def _by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in list_images(folder)}


def ppm_pairs(
    root: str | os.PathLike, require_matte: bool = True
) -> tuple[list[Pair], list[Path]]:
    """Pairs of ``root/image/NAME.*`` and ``root/matte/NAME.*``, plus the files left unmatched.

    With ``require_matte=False`` (calibration) images without a matte are kept with ``matte=None``.
    """
    root = Path(root)
    images = _by_stem(root / "image")
    matte_dir = root / "matte"
    mattes = _by_stem(matte_dir) if matte_dir.is_dir() else {}
    if require_matte and not mattes:
        raise MattingDeployError(f"{matte_dir}: no matte files (PPM-100 layout needs image/ and matte/)")
    pairs, unmatched = _match(images, mattes, keep_unmatted=not require_matte)
    if not pairs:
        raise MattingDeployError(f"{root}: no image/matte pairs found")
    return pairs, unmatched


def clip_pairs(folder: Path) -> tuple[list[Pair], list[Path]]:
    """Frames and mattes of a clip folder (``frames/`` + ``matte/``) paired by stem, plus the
    files left unmatched."""
    return _match(_by_stem(folder / "frames"), _by_stem(folder / "matte"))


@dataclass(frozen=True)
class Clip:
    """A clip folder: ``frames/`` and ``matte/`` paired by file stem, in name order."""

    name: str
    root: Path
    frames: list[Pair]


@dataclass
class DataSet:
    root: Path
    images: list[Pair]
    clips: list[Clip]
    notes: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return sum(len(c.frames) for c in self.clips)

    def digest(self) -> str:
        """Short hash of the image and frame names (a reference must come from the same set)."""
        names = [p.name for p in self.images]
        names += [f"{c.name}/{p.name}" for c in self.clips for p in c.frames]
        return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _is_clip(folder: Path) -> bool:
    return (folder / "frames").is_dir() and (folder / "matte").is_dir()


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise MattingDeployError(f"{path}: no such file") from None
    except Exception as e:  # PIL raises several unrelated types for broken files
        raise MattingDeployError(f"{path}: cannot read image ({first_line(e)})") from None


def check_sizes(pairs: list[Pair]) -> None:
    """Every matte must be readable and the size of its image (headers only, no decoding)."""
    for pair in pairs:
        (iw, ih), (mw, mh) = _size(pair.image), _size(pair.matte)
        if (iw, ih) != (mw, mh):
            raise MattingDeployError(
                f"{pair.matte}: matte is {mw}x{mh} but image {pair.image.name} is {iw}x{ih}"
            )


def set_notes(root: Path) -> list[str]:
    """The lines of ``root``'s :data:`NOTES_FILE` (none when absent), which reports carry."""
    path = root / NOTES_FILE
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MattingDeployError(f"{path}: cannot read the data set's notes ({first_line(e)})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_dataset(root: str | Path, limit: int | None = None) -> DataSet:
    """Still pairs (``image/`` + ``matte/``) and clips (``frames/`` + ``matte/``) under ``root``.

    Clips: ``root`` itself or its direct sub-folders. ``limit`` caps the still images and the
    frames of each clip. The notes: the set's own (:data:`NOTES_FILE`), then one line per unmatched file.
    """
    root = Path(root)
    if not root.is_dir():
        raise MattingDeployError(f"{root}: data folder does not exist")
    if limit is not None and limit < 1:
        raise MattingDeployError(f"--limit must be at least 1, got {limit}")
    images: list[Pair] = []
    unmatched: list[Path] = []
    if (root / "image").is_dir():
        images, unmatched = ppm_pairs(root)
    if _is_clip(root):
        clip_dirs = [root]
    else:
        clip_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _is_clip(d))
    clips = []
    for folder in clip_dirs:
        pairs, lost = clip_pairs(folder)
        unmatched += lost
        if len(pairs) >= 2:
            clips.append(Clip(folder.name, folder, pairs[:limit] if limit else pairs))
        else:
            unmatched += [p.image for p in pairs]
    if not images and not clips:
        raise MattingDeployError(
            f"{root}: no image/matte pairs (image/ + matte/) and no clip folder (frames/ + matte/)"
        )
    images = images[:limit] if limit else images
    notes = set_notes(root) + [f"{p}: no matching image or matte, skipped" for p in unmatched]
    data = DataSet(root, images, clips, notes)
    check_sizes(images + [p for c in clips for p in c.frames])
    return data
