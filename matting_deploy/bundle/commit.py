"""Each stage's output is one commit: files staged, then renamed in with one manifest update.

A stage writes its files into a staging folder inside the bundle (same file system), then
:func:`commit` records a journal (``.commit.json``: the staged names, the files that go stale),
renames the files in, replaces ``manifest.json`` (what readers see: the commit point) and removes
the stale files. SIGINT/SIGTERM wait until the renames are done; if the process is killed
mid-way, the next command that opens the bundle finishes the journal (:func:`recover`), so the
bundle is always the old one or the new one, never a mix. Staging folders of dead processes are
removed by the next stage that stages (``fileio.clear_stale``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import MattingDeployError
from ..fileio import STAGING_PREFIX, deferred_signals, pause_point, write_errors, write_json
from .layout import MANIFEST
from .lock import bundle_lock

JOURNAL = ".commit.json"


def inside(root: Path, name: str) -> Path:
    """``root/name`` for a relative name that stays inside ``root`` (symlinks resolved), else an error."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise MattingDeployError(f"{root / MANIFEST}: bad file name {name!r}")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts:
        raise MattingDeployError(f"{root / MANIFEST}: file name {name!r} points outside the bundle")
    path = root / name
    base = root.resolve()
    if not path.resolve().is_relative_to(base):
        raise MattingDeployError(f"{path}: resolves outside the bundle ({path.resolve()})")
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _roll_forward(root: Path, journal: dict[str, Any]) -> None:
    stage = root / journal["staging"]
    for name in journal["files"]:
        src = stage / name
        if src.exists():
            dst = inside(root, name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    if (stage / MANIFEST).exists():
        os.replace(stage / MANIFEST, root / MANIFEST)
    for name in journal["remove"]:
        _remove(inside(root, name))
    (root / JOURNAL).unlink()
    shutil.rmtree(stage, ignore_errors=True)


def commit(root: Path, stage: Path, manifest: dict[str, Any], files: Iterable[str] = (),
           remove: Iterable[str] = ()) -> None:
    """Move ``files`` (names relative to ``stage``) into ``root``, write ``manifest``, delete ``remove``.

    ``stage`` must be a staging folder directly inside ``root``. Interrupts are held until done.
    """
    root = Path(root)
    journal = {"staging": Path(stage).name, "files": list(files),
               "remove": [n for n in remove if (root / n).exists() or (root / n).is_symlink()]}
    for name in (*journal["files"], *journal["remove"]):
        inside(root, name)
    with write_errors(stage):
        write_json(stage / MANIFEST, manifest)
        with deferred_signals():
            write_json(root / JOURNAL, journal)
            pause_point("commit")
            _roll_forward(root, journal)


def recover(root: Path, log: Callable[[str], None] | None = None) -> bool:
    """Finish a commit a killed process left half-done; True if there was one."""
    root = Path(root)
    if not (root / JOURNAL).exists():
        return False
    with bundle_lock(root):
        try:
            journal = json.loads((root / JOURNAL).read_text())
            ok = (isinstance(journal, dict) and isinstance(journal.get("staging"), str)
                  and journal["staging"].startswith(STAGING_PREFIX) and "/" not in journal["staging"]
                  and all(isinstance(journal.get(k), list) for k in ("files", "remove")))
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise MattingDeployError(f"{root / JOURNAL}: unreadable commit journal (remove it and "
                                     "check the bundle)")
        with write_errors(root):
            _roll_forward(root, journal)
    if log:
        log(f"note: {root}: finished a commit an interrupted run had started")
    return True
