"""One writer per bundle: an exclusive ``flock`` on ``BUNDLE/.lock``.

The kernel drops the lock when its process dies, so a lock file left by a killed run (its pid no
longer running) is simply taken over. A second writer fails at once with the holder's pid. The
lock is re-entrant within a process (``demo`` runs export, calibrate and validate in one).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import MattingDeployError
from ..fileio import pid_alive, write_errors

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # resolved bundle root -> nesting depth in this process


def holder(root: str | os.PathLike) -> int | None:
    """The pid written in ``root/.lock`` (None if absent or unreadable)."""
    try:
        return int((Path(root) / LOCK_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def held(root: str | os.PathLike) -> bool:
    """Whether this process holds the lock of ``root``."""
    return Path(root).resolve() in _held


def _acquire(path: Path) -> int:
    """An fd holding an exclusive lock on ``path`` (the file the path names now, not an old one)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder(path.parent)
            who = f"pid {pid}" if pid else "another process"
            raise MattingDeployError(
                f"{path.parent}: locked by {who} (another matting-deploy command is writing this "
                "bundle); wait for it to finish"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and flock: retry


@contextlib.contextmanager
def bundle_lock(root: str | os.PathLike, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the bundle's write lock for the block (``root`` must exist)."""
    key = Path(root).resolve()
    if not key.is_dir():
        raise MattingDeployError(f"{root}: bundle folder does not exist")
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path = key / LOCK_FILE
    stale = holder(key) if path.exists() else None
    with write_errors(path):
        fd = _acquire(path)
    try:
        with write_errors(path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        if stale is not None and stale != os.getpid() and log is not None:
            state = "no longer running" if not pid_alive(stale) else "lock released"
            log(f"note: taking over the lock left by pid {stale} ({state})")
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
