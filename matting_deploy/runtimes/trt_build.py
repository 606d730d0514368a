"""Build a TensorRT engine from a bundle: ``model.<precision>.engine`` for the GPU in front of you.

What is parsed, which flags and which layer constraints: the build plan
(:func:`matting_deploy.bundle.trt_plan.plan_build`, pure Python; `build --trtexec` renders the same
plan as a trtexec command). Here it is applied: the flags (TF32 cleared), the implicit INT8 cache fed
re-headed for the running TensorRT through a calibrator that only reads it, the layer constraints
(:func:`.trt_implicit.apply_plan`) with OBEY_PRECISION_CONSTRAINTS. The builder and runtime are
created with ``--device``'s CUDA context current (cuda_device.py); TensorRT's messages go to the
process's one logger, captured per build (trt_logger.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..bundle import PRECISIONS, TRT_CACHE_FILE, Bundle, engine_artifact, engine_name
from ..bundle.commit import commit
from ..bundle.lock import bundle_lock
from ..bundle.trt_cache import CalibCache, read_cache
from ..bundle.trt_plan import BuildPlan, plan_build, version_tuple
from ..errors import MattingDeployError
from ..fileio import atomic_path, check_dir_writable, check_writable, sha256_file, staging_dir
from ..optional import require
from .cuda_device import cuda_gpu, device_context
from .trt_implicit import apply_plan, cache_for
from .trt_logger import capture, trt_logger

__all__ = ["CALIBRATORS", "BuildPlan", "build_engine", "cuda_gpu", "make_cache_calibrator", "plan_build",
           "version_tuple"]

CALIB_CACHE = TRT_CACHE_FILE
# calib.cache header algorithm -> the TensorRT calibrator interface that reads it.
CALIBRATORS = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
}


def make_cache_calibrator(trt: Any, cache: CalibCache) -> Any:
    """A calibrator that only hands TensorRT the cache: no batches, no device memory, no images."""
    base_name = CALIBRATORS.get(cache.algorithm)
    if base_name is None or not hasattr(trt, base_name):
        raise MattingDeployError(
            f"{CALIB_CACHE}: algorithm '{cache.algorithm}' is not supported here "
            f"(supported: {', '.join(CALIBRATORS)})"
        )
    base = getattr(trt, base_name)

    class CacheOnlyCalibrator(base):
        def __init__(self, blob: bytes):
            base.__init__(self)
            self._blob = blob

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names, *args):
            return None  # never calibrate on the device: the cache is the only source

        def read_calibration_cache(self, *args):
            return self._blob

        def write_calibration_cache(self, cache, *args):
            return None

    return CacheOnlyCalibrator(cache.blob)


def _network_tensors(network) -> set[str]:
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        names |= {layer.get_output(j).name for j in range(layer.num_outputs)}
    return names


def _create_network(trt, builder, strongly_typed: bool):
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    major = version_tuple(trt.__version__)[0]
    if major < 10 and hasattr(creation, "EXPLICIT_BATCH"):  # default (and deprecated) from 10.0
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if strongly_typed and major < 11:  # always on (flag deprecated, ignored) in 11.x
        if not hasattr(creation, "STRONGLY_TYPED"):
            raise MattingDeployError(f"TensorRT {trt.__version__} has no strongly typed networks")
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return builder.create_network(flags)


def _timing_cache(config: Any, path: Path | None, log: Callable[[str], None]) -> None:
    """Load the timing cache file into ``config``; one made on another GPU or TensorRT is refused
    by TensorRT (set_timing_cache returns False): say so and start a new one."""
    if path is None:
        return
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if data and (cache is None or not config.set_timing_cache(cache, False)):
        log(f"note: {path}: timing cache made on another GPU or TensorRT version; starting a new one")
        data = b""
        cache = config.create_timing_cache(b"")
    if not data and not config.set_timing_cache(cache, False):
        raise MattingDeployError(f"{path}: TensorRT refused a new timing cache")


def _serialize(trt: Any, plan: BuildPlan, onnx_path: Path, cache: CalibCache | None, workspace_mb: int | None,
               timing: Path | None, log: Callable[[str], None]):
    """Parse, configure and build under the current CUDA context: (engine bytes, timing cache bytes
    or None, {why: layers constrained})."""
    with capture() as msgs:
        builder = trt.Builder(trt_logger(trt))
        if builder is None:
            raise MattingDeployError(f"TensorRT cannot create a builder ({msgs.last_error()})")
        network = _create_network(trt, builder, plan.strongly_typed)
        parser = trt.OnnxParser(network, trt_logger(trt))
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            raise MattingDeployError(f"{onnx_path}: TensorRT's ONNX parser failed "
                                     f"({errors[0] if errors else 'no detail'})")
        config = builder.create_builder_config()
        if workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        for flag in plan.flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if not plan.tf32 and hasattr(trt.BuilderFlag, "TF32"):  # on by default: FP32 means FP32 here
            config.clear_flag(trt.BuilderFlag.TF32)
        if hasattr(trt, "ProfilingVerbosity"):  # per-layer precisions for the engine inspector
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        calibrator, counts = None, {}
        if cache is not None:
            known = _network_tensors(network)
            covered = len(known & set(cache.scales))
            if covered == 0:
                raise MattingDeployError(f"{CALIB_CACHE}: none of its tensor names are in {onnx_path.name} "
                                         "(made for another model?)")
            log(f"{CALIB_CACHE}: fed as {cache.header}, scales for {covered} of {len(known)} tensors")
            calibrator = make_cache_calibrator(trt, cache)
            config.int8_calibrator = calibrator
        if plan.rules:
            counts = apply_plan(trt, network, plan)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            log("layer constraints (obey): " + ", ".join(f"{n} {why}" for why, n in sorted(counts.items())))
        _timing_cache(config, timing, log)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            hint = f"; is {CALIB_CACHE} from this model?" if cache is not None else ""
            raise MattingDeployError(f"{onnx_path}: TensorRT could not build the {plan.precision} engine "
                                     f"({msgs.last_error()}){hint}")
        timing_bytes = bytes(memoryview(config.get_timing_cache().serialize())) if timing else None
    del calibrator
    return bytes(memoryview(serialized)), timing_bytes, counts


def build_engine(
    bundle_dir: str | os.PathLike,
    precision: str,
    workspace_mb: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    device: int = 0,
    precheck: Callable[[BuildPlan, str], None] | None = None,
) -> Path:
    """Build ``model.<precision>.engine`` on CUDA device ``device`` and record it in the manifest.

    ``precheck(plan, tensorrt_version)`` runs before anything is built (the command layer passes
    the TensorRT rule check). Raises MattingDeployError (nothing written) when TensorRT or a GPU is
    missing, the bundle lacks what the recipe needs, or TensorRT fails to parse or build. Holds the
    bundle's lock; the engine is staged and committed with one manifest update.
    """
    check_dir_writable(bundle_dir)
    with bundle_lock(bundle_dir, log):
        return _build(bundle_dir, precision, workspace_mb, timing_cache, force, log, device, precheck)


def _build(bundle_dir, precision, workspace_mb, timing_cache, force, log, device, precheck) -> Path:
    start = time.perf_counter()
    bundle = Bundle.open(bundle_dir, log)
    if precision not in PRECISIONS:
        raise MattingDeployError(
            f"unknown precision '{precision}' (choose {', '.join(PRECISIONS)})")
    engine_file = engine_name(precision)
    engine_path = bundle.engine_path(precision)
    check_writable(engine_path, force)
    trt = require("tensorrt")
    gpu, capability = cuda_gpu(device)
    plan = plan_build(bundle, precision, trt.__version__)
    onnx_path = bundle.file_path(plan.onnx_file)
    cache = None
    if plan.calib_cache:  # listed in the manifest, sha256 checked; fed with the running version's header
        cache = cache_for(read_cache(bundle.file_path(CALIB_CACHE)), trt.__version__)
    if precheck is not None:
        precheck(plan, trt.__version__)
    log(f"building {engine_file} from {onnx_path.name} with TensorRT {trt.__version__} on {gpu} "
        f"(device {device}, sm {capability}): {plan.mode}")
    timing = Path(timing_cache) if timing_cache else None
    with device_context(device):
        serialized, timing_bytes, counts = _serialize(trt, plan, onnx_path, cache, workspace_mb, timing, log)
    with staging_dir(bundle.root) as stage:
        (stage / engine_file).write_bytes(serialized)
        info = _info(bundle, plan, onnx_path, cache, trt, gpu, device, capability, workspace_mb,
                     round(time.perf_counter() - start, 2))
        info["layer_constraints"] = counts
        bundle.add_file(engine_file, artifact=engine_artifact(precision), folder=stage, **info)
        bundle.manifest.setdefault("engines", {})[precision] = {
            "file": engine_file, "sha256": bundle.manifest["files"][engine_file]["sha256"], **info}
        commit(bundle.root, stage, bundle.manifest, [engine_file])
    if timing is not None and timing_bytes is not None:
        with atomic_path(timing, force=True) as tmp:
            tmp.write_bytes(timing_bytes)
    seconds = bundle.manifest["engines"][precision]["build_seconds"]
    log(f"wrote {engine_path} ({engine_path.stat().st_size / 1e6:.1f} MB) in {seconds:.1f} s")
    return engine_path


def _info(bundle: Bundle, plan: BuildPlan, onnx_path: Path, cache: CalibCache | None, trt: Any, gpu: str,
          device: int, capability: str, workspace_mb: int | None, seconds: float) -> dict[str, Any]:
    """The engine's record for the manifest (``files`` and ``engines`` entries)."""
    info = {
        "precision": plan.precision,
        "tensorrt": trt.__version__,
        "gpu": gpu,
        "device": device,
        "compute_capability": capability,
        "source": onnx_path.name,
        "source_sha256": sha256_file(onnx_path),
        "mode": plan.mode,
        "flags": list(plan.flags),
        "tf32": plan.tf32,
        "strongly_typed": plan.strongly_typed,
        "workspace_mb": workspace_mb,
        "build_seconds": seconds,
    }
    if cache is not None:
        info["calib_cache_sha256"] = sha256_file(bundle.root / CALIB_CACHE)
        info["calib_cache_fed_as"] = cache.header
    return info
