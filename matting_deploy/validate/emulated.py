"""The ``int8 implicit-emulated (cpu)`` row: implicit INT8 (TensorRT 8.5/8.6/10.0) as the engine
will run it (its FP32 file, :func:`matting_deploy.bundle.implicit_onnx`, + calib.cache,
on onnxruntime CPU; and the share of convolution MACs each INT8 row runs in INT8."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from ..bundle import TRT_CACHE_FILE, Bundle, implicit_onnx
from ..bundle.trt_cache import int8_convs, read_cache
from ..bundle.trt_plan import recurrent_nodes
from ..check import int8_mac_share
from ..check.emulate import implicit_emulation
from ..runtimes.onnxruntime_runner import OrtRunner
from .jobs import Job

EMULATED = "int8 implicit-emulated"


def emulated_job(bundle: Bundle, artifacts: list[str], jobs: list[Job]) -> Job | None:
    """The emulation row when int8 is validated on cpu and the bundle has calib.cache."""
    cache = bundle.root / TRT_CACHE_FILE
    if "int8" in artifacts and cache.is_file() and any(j.backend == "cpu" for j in jobs):
        return Job(EMULATED, "cpu", cache)
    return None


def _inputs(bundle: Bundle):
    model = onnx.load(str(bundle.file_path(implicit_onnx(bundle.manifest))))  # what the implicit build parses
    return model, read_cache(bundle.root / TRT_CACHE_FILE).scales, int8_convs(bundle.root)


def open_emulated(bundle: Bundle, threads: int = 0) -> OrtRunner:
    """An onnxruntime CPU runner on the emulation model (built in memory, loaded from a temp file);
    ``threads``: onnxruntime's intra-op threads (0: its default). The recurrent update stays FP32, as
    the build plan pins it."""
    model, scales, layers = _inputs(bundle)
    model = implicit_emulation(model, scales, layers, fp32_nodes=recurrent_nodes(model, bundle.states))
    with tempfile.TemporaryDirectory(prefix="md-emu-") as tmp:
        path = Path(tmp) / "implicit-emulated.onnx"
        onnx.save(model, str(path))
        return OrtRunner(path, bundle.states, bundle.downsample_ratio, threads=threads)


def mac_shares(bundle: Bundle, jobs: list[Job]) -> dict[str, dict]:
    """{row label: int8_mac_share} for the INT8 rows (Q/DQ artifact, implicit emulation)."""
    out = {}
    for job in jobs:
        if job.artifact == EMULATED:
            model, scales, layers = _inputs(bundle)
            out[job.label] = int8_mac_share(model, scales, layers)
        elif job.artifact == "int8" and os.fspath(job.path).endswith(".onnx"):
            out[job.label] = int8_mac_share(onnx.load(str(job.path)))
    return out
