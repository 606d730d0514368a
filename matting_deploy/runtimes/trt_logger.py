"""The one TensorRT logger of the process, and per build/load capture of what it reports.

TensorRT keeps a single logger: every Builder/Runtime after the first is handed the first logger
passed (NVIDIA/TensorRT#1475), so a logger per object would leave a second runner's errors in the
first one's list, and the first logger must outlive them all. :func:`trt_logger` makes one
module-level ``trt.ILogger`` on first use; :func:`capture` collects the errors and warnings it
reports while a build or load runs (every open capture gets each message).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_LOCK = threading.Lock()
_LOGGER: Any = None
_CAPTURES: list[Capture] = []


@dataclass
class Capture:
    """Errors and warnings reported while a capture was open."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def last_error(self) -> str:
        return self.errors[-1] if self.errors else "no detail"


def trt_logger(trt: Any) -> Any:
    """The process's one ``trt.ILogger`` (made on first use; needs tensorrt)."""
    global _LOGGER
    with _LOCK:
        if _LOGGER is None:
            _LOGGER = _make(trt)
        return _LOGGER


make_logger = trt_logger  # the name earlier callers used


def _make(trt: Any) -> Any:
    severity = trt.ILogger.Severity

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, sev, msg):
            text = str(msg).strip()
            with _LOCK:
                captures = list(_CAPTURES)
            for cap in captures:
                if sev in (severity.ERROR, severity.INTERNAL_ERROR):
                    cap.errors.append(text)
                elif sev == severity.WARNING:
                    cap.warnings.append(text)

    return Logger()


@contextmanager
def capture() -> Iterator[Capture]:
    """Collect what the logger reports until the block ends."""
    cap = Capture()
    with _LOCK:
        _CAPTURES.append(cap)
    try:
        yield cap
    finally:
        with _LOCK:
            _CAPTURES.remove(cap)
