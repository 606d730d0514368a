"""Build a TensorRT engine from a bundle: ``model.<precision>.engine`` for the GPU in front of you.

Which ONNX and which switches, by TensorRT version (:func:`plan_build`):

============  ======================================  =========================================
precision     TensorRT 8.6 / 10.0                     TensorRT >= 10.1 (and 11.x)
============  ======================================  =========================================
fp32          model.onnx                              model.onnx
fp16          model.onnx + FP16 builder flag          10.x: same; 11.x (no precision flags):
                                                      model.fp16.onnx, strongly typed
int8          model.onnx + INT8 (+FP16 fallback)      model.int8.onnx (Q/DQ), strongly typed
              flags, scales from calib.cache through
              a calibrator that only reads the cache,
              layers outside the recipe pinned FP16,
              the recipe's Convs INT8 with FP16 out
============  ======================================  =========================================

Implicit INT8 (trt_implicit.py): the cache is fed with the running TensorRT's version in its
header, and every layer outside calib.json's INT8 list that has scales on both sides is pinned to
FP16, and calib.json's Convs are constrained to INT8 with FP16 outputs (obey precision
constraints), so the engine runs INT8 exactly where, and as, the Q/DQ model does.
The builder and runtime are created with ``--device``'s CUDA context current (cuda_device.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle import ARTIFACT_FILES, PRECISIONS, TRT_CACHE_FILE, Bundle, engine_artifact, engine_name
from ..bundle.commit import commit
from ..bundle.lock import bundle_lock
from ..bundle.trt_cache import CalibCache, read_cache
from ..errors import MattingDeployError
from ..fileio import atomic_path, check_dir_writable, check_writable, sha256_file, staging_dir
from ..optional import require
from .cuda_device import cuda_gpu, device_context
from .trt_implicit import cache_for, constrain_int8_layers, int8_layers, pin_float_layers
from .trt_logger import make_logger

__all__ = ["CALIBRATORS", "Plan", "build_engine", "cuda_gpu", "make_cache_calibrator", "plan_build",
           "version_tuple"]

CALIB_CACHE = TRT_CACHE_FILE
# calib.cache header algorithm -> the TensorRT calibrator interface that reads it.
CALIBRATORS = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
}


@dataclass(frozen=True)
class Plan:
    """How to build one precision with one TensorRT version."""

    precision: str
    artifact: str  # the bundle artifact parsed (fp32 / fp16 / int8)
    mode: str  # human-readable recipe, recorded in the manifest
    flags: tuple[str, ...] = ()  # BuilderFlag names
    strongly_typed: bool = False
    calib_cache: bool = False


def version_tuple(version: str) -> tuple[int, int]:
    parts = (version.split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except ValueError:
        raise MattingDeployError(f"cannot parse the TensorRT version '{version}'") from None


def plan_build(bundle: Bundle, precision: str, trt_version: str) -> Plan:
    """The recipe for ``precision`` under TensorRT ``trt_version``; checks the bundle's inputs."""
    if precision not in PRECISIONS:
        raise MattingDeployError(
            f"unknown precision '{precision}' (choose {', '.join(PRECISIONS)})")
    if bundle.dynamic:
        raise MattingDeployError(
            f"{bundle.root}: TensorRT engines are built from static bundles (shapes and "
            "downsample_ratio fixed); export again without --dynamic"
        )
    ver = version_tuple(trt_version)
    if precision == "fp32":
        plan = Plan("fp32", "fp32", "fp32")
    elif precision == "fp16" and ver[0] >= 11:
        plan = Plan("fp16", "fp16", "strongly typed model.fp16.onnx (no FP16 flag in TensorRT 11)",
                    strongly_typed=True)
    elif precision == "fp16":
        plan = Plan("fp16", "fp32", "FP16 builder flag on model.onnx", ("FP16",))
    elif ver >= (10, 1):
        plan = Plan("int8", "int8", "explicit INT8: Q/DQ model.int8.onnx, strongly typed",
                    strongly_typed=True)
    else:
        plan = Plan("int8", "fp32", "implicit INT8: INT8+FP16 flags, scales from calib.cache",
                    ("INT8", "FP16"), calib_cache=True)
    if plan.artifact not in bundle.artifacts:
        how = {"fp16": "export with --fp16", "int8": "run 'matting-deploy calibrate --int8'"}
        raise MattingDeployError(
            f"{bundle.root}: {precision} with TensorRT {trt_version} needs the "
            f"'{plan.artifact}' artifact ({ARTIFACT_FILES[plan.artifact]}): "
            f"{how.get(plan.artifact, 'export the bundle again')}"
        )
    if plan.calib_cache and not (bundle.root / CALIB_CACHE).is_file():
        raise MattingDeployError(
            f"{bundle.root / CALIB_CACHE}: missing; implicit INT8 (TensorRT < 10.1) reads its "
            "scales from it: run 'matting-deploy calibrate --int8'"
        )
    return plan





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


def _serialize(trt: Any, plan: Plan, onnx_path: Path, cache: CalibCache | None, int8: dict[str, str],
               workspace_mb: int | None, timing: Path | None, log: Callable[[str], None]):
    """Parse, configure and build under the current CUDA context: (engine bytes, timing cache bytes
    or None, names of the layers pinned to FP16)."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    if builder is None:
        raise MattingDeployError(f"TensorRT cannot create a builder "
                                 f"({logger.errors[-1] if logger.errors else 'no detail'})")
    network = _create_network(trt, builder, plan.strongly_typed)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise MattingDeployError(f"{onnx_path}: TensorRT's ONNX parser failed "
                                 f"({errors[0] if errors else 'no detail'})")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if hasattr(trt, "ProfilingVerbosity"):  # per-layer precisions for the engine inspector
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    calibrator, pinned = None, []
    if cache is not None:
        known = _network_tensors(network)
        covered = len(known & set(cache.scales))
        if covered == 0:
            raise MattingDeployError(f"{CALIB_CACHE}: none of its tensor names are in {onnx_path.name} "
                                     "(made for another model?)")
        log(f"{CALIB_CACHE}: fed as {cache.header}, scales for {covered} of {len(known)} tensors")
        calibrator = make_cache_calibrator(trt, cache)
        config.int8_calibrator = calibrator
        pinned = pin_float_layers(trt, network, cache.scales, int8)
        constrained = constrain_int8_layers(trt, network, int8)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log(f"{len(constrained)} Conv(s) constrained to INT8 with FP16 outputs, {len(pinned)} layer(s) outside "
            "the INT8 recipe pinned to FP16 (obey precision constraints)")
    _timing_cache(config, timing, log)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        hint = f"; is {CALIB_CACHE} from this model?" if cache is not None else ""
        raise MattingDeployError(f"{onnx_path}: TensorRT could not build the {plan.precision} engine "
                                 f"({logger.errors[-1] if logger.errors else 'no detail'}){hint}")
    timing_bytes = bytes(memoryview(config.get_timing_cache().serialize())) if timing else None
    del calibrator
    return bytes(memoryview(serialized)), timing_bytes, pinned


def build_engine(
    bundle_dir: str | os.PathLike,
    precision: str,
    workspace_mb: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    device: int = 0,
    precheck: Callable[[Plan, str], None] | None = None,
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
    onnx_path = bundle.verify(plan.artifact)
    cache, int8 = None, {}
    if plan.calib_cache:  # listed in the manifest, sha256 checked; fed with the running version's header
        cache = cache_for(read_cache(bundle.file_path(CALIB_CACHE)), trt.__version__)
        int8 = int8_layers(bundle.root)
    if precheck is not None:
        precheck(plan, trt.__version__)
    log(f"building {engine_file} from {onnx_path.name} with TensorRT {trt.__version__} on {gpu} "
        f"(device {device}, sm {capability}): {plan.mode}")
    timing = Path(timing_cache) if timing_cache else None
    with device_context(device):
        serialized, timing_bytes, pinned = _serialize(trt, plan, onnx_path, cache, int8, workspace_mb,
                                                      timing, log)
    with staging_dir(bundle.root) as stage:
        (stage / engine_file).write_bytes(serialized)
        info = _info(bundle, plan, onnx_path, cache, trt, gpu, device, capability, workspace_mb,
                     round(time.perf_counter() - start, 2))
        if cache is not None:
            info["pinned_fp16_layers"] = len(pinned)
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


def _info(bundle: Bundle, plan: Plan, onnx_path: Path, cache: CalibCache | None, trt: Any, gpu: str,
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
        "strongly_typed": plan.strongly_typed,
        "workspace_mb": workspace_mb,
        "build_seconds": seconds,
    }
    if cache is not None:
        info["calib_cache_sha256"] = sha256_file(bundle.root / CALIB_CACHE)
        info["calib_cache_fed_as"] = cache.header
    return info
