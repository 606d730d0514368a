"""File output that never leaves half-written results.

Single files are written under a temporary name and renamed (:func:`atomic_path`); several files
are written into a staging folder on the same file system and renamed at the end
(:func:`staging_dir`). Staging folders and temporary folders carry the owner's pid, so a later
run removes the ones whose owner died (:func:`clear_stale`). Write errors (full disk, read-only
folder) become one-line errors naming the file (:func:`write_errors`); outputs get the modes the
umask allows (0644/0755 usually), not ``mkstemp``'s 0600/0700.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import MattingDeployError

STAGING_PREFIX = ".staging-"
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
TEST_PAUSE = "MATTING_DEPLOY_TEST_PAUSE"  # test-only: see pause_point
_OWNED = re.compile(r"(\d+)-[A-Za-z0-9_]+")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_mode(path: str | os.PathLike) -> None:
    """Give a file 0666 or a folder 0777 less the umask (``mkstemp``/``mkdtemp`` use 0600/0700)."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~_umask())


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite an existing file unless ``force`` is set."""
    if path.exists() and not force:
        raise MattingDeployError(f"{path}: already exists (pass --force to overwrite)")


def check_dir_writable(folder: str | os.PathLike) -> None:
    """Fail early, before any work, when ``folder`` (or the nearest existing parent it would be made
    in) is not a folder or cannot take a new file: a probe file is made and removed."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise MattingDeployError(f"{probe}: not a folder (cannot write {folder})")
    try:
        fd, name = tempfile.mkstemp(prefix=".md-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise MattingDeployError(f"{folder}: not writable ({e.strerror or e})") from None


@contextlib.contextmanager
def write_errors(where: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk, quota or permission error into one line naming the file (else ``where``)."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise MattingDeployError(f"{e.filename or where}: {e.strerror}") from None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale(parent: str | os.PathLike, prefix: str = STAGING_PREFIX) -> list[Path]:
    """Remove ``<prefix><pid>-*`` folders and files in ``parent`` whose owner pid is dead."""
    removed = []
    try:
        entries = list(Path(parent).glob(f"{prefix}*"))
    except OSError:
        return removed
    for path in entries:
        m = _OWNED.fullmatch(path.name[len(prefix):])
        if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    check_writable(path, force)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    normal_mode(tmp_path)
    try:
        with write_errors(path):
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def owned_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new folder ``<prefix><pid>-XXXX`` in ``parent`` with a normal mode (stale ones cleared)."""
    clear_stale(parent, prefix)
    with write_errors(parent):
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    normal_mode(path)
    return path


@contextlib.contextmanager
def _owned_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """Made and removed with SIGINT/SIGTERM held: a signal during either acts after it, so it can
    neither leave the folder unregistered nor cut its removal short."""
    tmp: Path | None = None
    try:
        with deferred_signals():
            tmp = owned_dir(parent, prefix)
        with write_errors(tmp):
            yield tmp
    finally:
        if tmp is not None:
            with deferred_signals():
                pause_point(f"cleanup-{prefix}")
                shutil.rmtree(tmp, ignore_errors=True)


def staging_dir(parent: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """A temporary folder inside ``parent`` (same file system, so renames are atomic); removed on
    exit, whatever happens (interrupts included). Write errors inside become one-line errors."""
    parent = Path(parent)
    with write_errors(parent):
        parent.mkdir(parents=True, exist_ok=True)
    return _owned_folder(parent, STAGING_PREFIX)


def temp_dir(prefix: str) -> contextlib.AbstractContextManager[Path]:
    """Like :func:`staging_dir` in the system's temporary folder: ``<prefix><pid>-XXXX``."""
    return _owned_folder(Path(tempfile.gettempdir()), prefix)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a multi-step rename runs; the signal acts right after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in handlers:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


def pause_point(name: str) -> None:
    """Test-only hook: when ``MATTING_DEPLOY_TEST_PAUSE`` names this point, print
    ``test-pause: <name>`` on stderr and wait (at most 60 s) until the file named by
    ``MATTING_DEPLOY_TEST_PAUSE_GO`` exists, so a test can send a signal at a known place."""
    if name not in os.environ.get(TEST_PAUSE, "").split(","):
        return
    print(f"test-pause: {name}", file=sys.stderr, flush=True)
    go = os.environ.get(f"{TEST_PAUSE}_GO")
    end = time.monotonic() + 60
    while time.monotonic() < end and not (go and os.path.exists(go)):
        time.sleep(0.02)


def write_json(path: str | os.PathLike, obj: Any, force: bool = True) -> None:
    """Write JSON atomically (overwrites by default: used for manifests and reports)."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
