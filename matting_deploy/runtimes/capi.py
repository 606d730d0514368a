"""The C-compatible surface: md_open / md_run / md_reset / md_close / md_last_error / md_shape,
and md_run_ex for models with extra inputs (Background Matting's ``bgr`` and ``seg``).

Each function is a ctypes ``CFUNCTYPE`` pointer over plain C types with the signatures of
``include/matting_deploy.h``; :func:`api` returns them gathered in that header's ``md_api`` struct.
Handles are small integers from a table (never 0), buffers are the caller's (float32, NCHW), and
no Python exception ever crosses the boundary: every failure is a status code plus
``md_last_error()``.
"""

from __future__ import annotations

import ctypes
import threading
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_float, c_int, c_void_p
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MattingDeployError, first_line

ABI_VERSION = 2  # 2 = 1 plus run_ex at the end of md_api
MD_OK = 0
MD_ERR_ARGUMENT = -1
MD_ERR_HANDLE = -2
MD_ERR_BUNDLE = -3
MD_ERR_RUNTIME = -4

OPEN_FN = CFUNCTYPE(c_int, c_char_p, c_char_p, c_char_p, POINTER(c_void_p))
RUN_FN = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), c_int, c_int, c_int, POINTER(c_float),
                   POINTER(c_float))
RESET_FN = CFUNCTYPE(c_int, c_void_p)
CLOSE_FN = CFUNCTYPE(c_int, c_void_p)
LAST_ERROR_FN = CFUNCTYPE(c_void_p)  # const char *, returned as an address we keep alive
SHAPE_FN = CFUNCTYPE(c_int, c_void_p, POINTER(c_int), POINTER(c_int), POINTER(c_int),
                     POINTER(c_int))
RUN_EX_FN = CFUNCTYPE(c_int, c_void_p, c_int, POINTER(c_char_p), POINTER(POINTER(c_float)), c_int,
                      c_int, c_int, POINTER(c_float), POINTER(c_float))


class MdApi(ctypes.Structure):
    """``struct md_api`` of matting_deploy.h."""

    _fields_ = [
        ("abi_version", c_int),
        ("open", OPEN_FN),
        ("run", RUN_FN),
        ("reset", RESET_FN),
        ("close", CLOSE_FN),
        ("last_error", LAST_ERROR_FN),
        ("shape", SHAPE_FN),
        ("run_ex", RUN_EX_FN),
    ]


class _Failure(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Entry:
    runner: Any
    n: int | None
    h: int | None
    w: int | None
    has_fgr: bool
    channels: dict[str, int] = field(default_factory=dict)  # every caller-fed input, src first
    lock: threading.Lock = field(default_factory=threading.Lock)


_handles: dict[int, _Entry] = {}
_table_lock = threading.Lock()
_next_id = 1
_tls = threading.local()
_EMPTY = ctypes.create_string_buffer(b"")


def _set_error(message: str) -> None:
    _tls.buffer = ctypes.create_string_buffer(message.encode("utf-8", "replace")[:4095])


def _guard(fn):
    """Run ``fn``; map every exception to a status code and md_last_error (never raise)."""

    def wrapper(*args):
        _tls.buffer = None
        try:
            return fn(*args)
        except _Failure as e:
            _set_error(str(e))
            return e.status
        except MattingDeployError as e:
            _set_error(str(e))
            return MD_ERR_BUNDLE
        except BaseException as e:  # noqa: BLE001 - nothing may cross the C boundary
            _set_error(f"{type(e).__name__}: {first_line(e)}")
            return MD_ERR_RUNTIME

    wrapper.__name__ = fn.__name__
    return wrapper


def _text(value: bytes | None, what: str) -> str:
    if value is None:
        raise _Failure(MD_ERR_ARGUMENT, f"{what} is NULL")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _Failure(MD_ERR_ARGUMENT, f"{what} is not UTF-8") from None


def _entry(handle: int | None) -> _Entry:
    entry = _handles.get(handle or 0)
    if entry is None:
        raise _Failure(MD_ERR_HANDLE, f"handle {handle or 0:#x} is not open")
    return entry


@_guard
def _md_open(bundle, artifact, backend, handle_out) -> int:
    global _next_id
    if not handle_out:
        raise _Failure(MD_ERR_ARGUMENT, "handle pointer is NULL")
    from ..bundle import Bundle
    from .open import io_spec, open_runner

    bun = Bundle.open(_text(bundle, "bundle"))
    runner = open_runner(bun, _text(artifact, "artifact"), _text(backend, "backend"))
    spec = io_spec(bun)
    with _table_lock:
        handle, _next_id = _next_id, _next_id + 1
        _handles[handle] = _Entry(runner, spec.n, spec.h, spec.w, spec.has_fgr, _channels(bun))
    handle_out[0] = handle
    return MD_OK


def _channels(bundle) -> dict[str, int]:
    """Channels of each input the caller feeds (src, and BGM's bgr/seg), from the manifest."""
    states = {s.input for s in bundle.states} | {"downsample_ratio"}
    out = {}
    for spec in bundle.manifest.get("inputs", []):
        shape = spec.get("shape") or []
        if spec["name"] not in states:
            out[spec["name"]] = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else 3
    return out or {"src": 3}


def _check_dims(entry: _Entry, n: int, h: int, w: int) -> None:
    for name, got, want in (("n", n, entry.n), ("h", h, entry.h), ("w", w, entry.w)):
        if got <= 0 or (want is not None and got != want):
            raise _Failure(MD_ERR_ARGUMENT,
                           f"{name}={got}, but the model takes {name}={want or 'any > 0'}")


@_guard
def _md_run(handle, src, n, h, w, pha, fgr) -> int:
    entry = _entry(handle)
    if not src or not pha:
        raise _Failure(MD_ERR_ARGUMENT, f"{'src' if not src else 'pha'} is NULL")
    if len(entry.channels) > 1:
        raise _Failure(MD_ERR_ARGUMENT, f"the model takes {', '.join(entry.channels)}: call md_run_ex")
    _check_dims(entry, n, h, w)
    return _run_into(entry, {"src": np.ctypeslib.as_array(src, shape=(n, 3, h, w))}, n, h, w, pha, fgr)


@_guard
def _md_run_ex(handle, count, names, inputs, n, h, w, pha, fgr) -> int:
    entry = _entry(handle)
    if not names or not inputs or not pha:
        what = "names" if not names else "inputs" if not inputs else "pha"
        raise _Failure(MD_ERR_ARGUMENT, f"{what} is NULL")
    if count != len(entry.channels):
        raise _Failure(MD_ERR_ARGUMENT, f"count={count}, but the model takes {len(entry.channels)} "
                                        f"inputs ({', '.join(entry.channels)})")
    _check_dims(entry, n, h, w)
    arrays = {}
    for i in range(count):
        name = _text(names[i], f"names[{i}]")
        if name not in entry.channels or name in arrays:
            raise _Failure(MD_ERR_ARGUMENT, f"names[{i}]='{name}': the model's inputs are "
                                            f"{', '.join(entry.channels)}, each once")
        if not inputs[i]:
            raise _Failure(MD_ERR_ARGUMENT, f"inputs[{i}] ({name}) is NULL")
        arrays[name] = np.ctypeslib.as_array(inputs[i], shape=(n, entry.channels[name], h, w))
    return _run_into(entry, arrays, n, h, w, pha, fgr)


def _run_into(entry: _Entry, arrays: dict[str, np.ndarray], n, h, w, pha, fgr) -> int:
    with entry.lock:
        out = entry.runner.run(**arrays)
    np.copyto(np.ctypeslib.as_array(pha, shape=(n, 1, h, w)),
              np.asarray(out["pha"]).reshape(n, 1, h, w), casting="same_kind")
    if fgr and entry.has_fgr and "fgr" in out:
        np.copyto(np.ctypeslib.as_array(fgr, shape=(n, 3, h, w)),
                  np.asarray(out["fgr"]).reshape(n, 3, h, w), casting="same_kind")
    return MD_OK


@_guard
def _md_reset(handle) -> int:
    entry = _entry(handle)
    with entry.lock:
        entry.runner.reset()
    return MD_OK


@_guard
def _md_close(handle) -> int:
    with _table_lock:
        entry = _handles.pop(handle or 0, None)
    if entry is None:
        raise _Failure(MD_ERR_HANDLE, f"handle {handle or 0:#x} is not open")
    with entry.lock:
        entry.runner.close()
    return MD_OK


@_guard
def _md_shape(handle, n, h, w, fgr_channels) -> int:
    entry = _entry(handle)
    for ptr, value in ((n, entry.n), (h, entry.h), (w, entry.w),
                       (fgr_channels, 3 if entry.has_fgr else 0)):
        if ptr:
            ptr[0] = -1 if value is None else value
    return MD_OK


def _md_last_error() -> int:
    try:
        buffer = getattr(_tls, "buffer", None) or _EMPTY
        return ctypes.addressof(buffer)
    except BaseException:  # noqa: BLE001
        return ctypes.addressof(_EMPTY)


# The function pointers (kept alive for the life of the process).
md_open = OPEN_FN(_md_open)
md_run = RUN_FN(_md_run)
md_reset = RESET_FN(_md_reset)
md_close = CLOSE_FN(_md_close)
md_last_error = LAST_ERROR_FN(_md_last_error)
md_shape = SHAPE_FN(_md_shape)
md_run_ex = RUN_EX_FN(_md_run_ex)

FUNCTIONS = {
    "md_open": md_open,
    "md_run": md_run,
    "md_reset": md_reset,
    "md_close": md_close,
    "md_last_error": md_last_error,
    "md_shape": md_shape,
    "md_run_ex": md_run_ex,
}

_API = MdApi(ABI_VERSION, md_open, md_run, md_reset, md_close, md_last_error, md_shape, md_run_ex)


def api() -> MdApi:
    """The ``md_api`` struct (one per process); pass ``ctypes.byref(api())`` to C."""
    return _API


def api_address() -> int:
    """Address of the ``md_api`` struct, for C code that embeds Python."""
    return ctypes.addressof(_API)


def function_addresses() -> dict[str, int]:
    """Each function pointer as an integer address."""
    return {name: ctypes.cast(fn, c_void_p).value for name, fn in FUNCTIONS.items()}


def last_error() -> str:
    """md_last_error() as a Python string (for Python callers of the pointers)."""
    return ctypes.string_at(md_last_error()).decode("utf-8", "replace")


def header_path() -> Path:
    """The installed matting_deploy.h."""
    root = resources.files("matting_deploy")
    return Path(str(root / "runtimes" / "include" / "matting_deploy.h"))


def open_handles() -> int:
    """How many handles are open (for leak checks)."""
    return len(_handles)
