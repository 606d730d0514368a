"""The CUDA driver (libcuda, through ctypes) for `build`: which GPU, and making device N current.

TensorRT's builder and runtime work on the calling thread's current CUDA context; pushing device
N's primary context (the one the CUDA runtime API uses for that device) before creating them is
what makes ``build --device N`` build on GPU N.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator
from typing import Any

from ..errors import MattingDeployError

HINT = ("run 'matting-deploy build' on the target machine, with its NVIDIA GPU and driver, after pip "
        "install 'matting-deploy[trt]' (engines are tied to the GPU and TensorRT version)")


def libcuda() -> Any:
    """The CUDA driver library, or a one-line error saying it is missing."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise MattingDeployError(f"no NVIDIA GPU here (the NVIDIA driver, {names[0]}, is not installed): {HINT}")


def _device(lib: Any, device: int) -> ctypes.c_int:
    count, dev = ctypes.c_int(0), ctypes.c_int(0)
    status = lib.cuInit(0)
    if status == 0:
        status = lib.cuDeviceGetCount(ctypes.byref(count))
    if status != 0 or count.value <= device:
        raise MattingDeployError(
            f"no usable NVIDIA GPU {device} here (CUDA driver status {status}, {count.value} device(s)): {HINT}")
    lib.cuDeviceGet(ctypes.byref(dev), device)
    return dev


def cuda_gpu(device: int = 0, lib: Any = None) -> tuple[str, str]:
    """(name, compute capability) of CUDA device ``device``, asked from the driver."""
    lib = lib or libcuda()
    dev = _device(lib, device)
    buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(buf, 256, dev)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
    return buf.value.decode(errors="replace"), f"{major.value}.{minor.value}"


@contextlib.contextmanager
def device_context(device: int, lib: Any = None) -> Iterator[None]:
    """Device ``device``'s primary context current on this thread for the block (retained, pushed,
    then popped and released)."""
    lib = lib or libcuda()
    dev = _device(lib, device)
    ctx = ctypes.c_void_p()
    status = lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)
    if status != 0:
        raise MattingDeployError(f"cannot open CUDA device {device} (CUDA driver status {status})")
    try:
        status = lib.cuCtxPushCurrent_v2(ctx)
        if status != 0:
            raise MattingDeployError(f"cannot make CUDA device {device} current (CUDA driver status {status})")
        try:
            yield
        finally:
            lib.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
    finally:
        lib.cuDevicePrimaryCtxRelease_v2(dev)
