"""The one TensorRT logger: keeps errors (and warnings) for one-line messages."""

from __future__ import annotations

from typing import Any


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` with ``errors`` and ``warnings`` lists (built lazily: needs tensorrt)."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg).strip())
            elif severity == trt.ILogger.Severity.WARNING:
                self.warnings.append(str(msg).strip())

    return Logger()
