"""The one gate for heavy optional dependencies: imported on first use, one install message each.

``require("tensorrt")`` returns the module or raises a one-line :class:`MattingDeployError` that
says what is missing and how to get it; ``unavailable(name)`` gives the same text (or None) for
callers that skip instead of failing. Modelled on Polygraphy's ``mod.lazy_import``.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

from .errors import MattingDeployError, first_line


@dataclass(frozen=True)
class Optional:
    what: str  # how users know it
    install: str


_TRT = Optional("TensorRT", "pip install 'matting-deploy[trt]' (tensorrt, pycuda) on the machine with the "
                            "NVIDIA GPU (on Jetson use JetPack's tensorrt)")
OPTIONAL = {
    "tensorrt": _TRT,
    "pycuda": Optional("pycuda", _TRT.install),
    "openvino": Optional("OpenVINO", "pip install -e '.[openvino]' (or pip install 'matting-deploy[openvino]'; "
                                     "the openvino wheel: Intel CPU, GPU and NPU)"),
    "av": Optional("PyAV", "pip install 'matting-deploy[video]' (PyAV), or extract the frames to a folder"),
    "torch": Optional("PyTorch", "pip install 'matting-deploy[torch]' (CPU-only build: first pip install "
                                 "torch --index-url https://download.pytorch.org/whl/cpu)"),
}


def _spec(module: str) -> Optional:
    return OPTIONAL[module.split(".")[0]]


def require(module: str, where: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``tensorrt``, ``pycuda.driver``, ``av``) or raise a one-line error,
    prefixed with ``where`` (a file or option) when given."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # broken installs raise more than ImportError
        why = missing_message(module, e)
        raise MattingDeployError(f"{where}: {why}" if where else why) from None


def missing_message(module: str, error: BaseException) -> str:
    spec = _spec(module)
    return (f"{spec.what} is not installed here (the {module} Python package is not importable: "
            f"{first_line(error)}): {spec.install}")


def unavailable(module: str) -> str | None:
    """Why ``module`` cannot be imported here (the install message), or None when it can."""
    try:
        importlib.import_module(module)
    except Exception as e:
        return missing_message(module, e)
    return None


def versions(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed version of each distribution (``"not installed"`` when absent)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            try:
                module = importlib.util.find_spec(name.replace("-", "_"))
            except (ImportError, ValueError):  # a broken or blocked install
                module = None
            out[name] = "not installed"
            if module is not None:  # e.g. JetPack's tensorrt has no pip metadata
                out[name] = getattr(importlib.import_module(name.replace("-", "_")), "__version__", "unknown")
    return out
