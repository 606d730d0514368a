"""`build --trtexec`: the build plan (:mod:`matting_deploy.bundle.trt_plan`) as a trtexec command line,
for machines with nothing but TensorRT (JetPack's ``/usr/src/tensorrt/bin/trtexec``). Needs no
TensorRT here; writes ``trtexec.<precision>.<version>.sh`` (and, when calib.cache is headed for
another version, ``calib.<version>.cache``, the same scales re-headed) into the bundle in one commit.

Each flag is used only by the trtexec versions that have it (``samples/common/sampleOptions.cpp``
of NVIDIA/TensorRT at 8.5.2, v8.6.1, v9.1.0, v10.0.1, v10.3.0, v11.0): ``--stronglyTyped`` from 9.1
(a no-op from 11, left out there); ``--skipInference`` from 8.6 (``--buildOnly`` before); ``--noTF32``,
``--fp16``, ``--int8``, ``--calib``, ``--precisionConstraints``, ``--layerPrecisions``,
``--layerOutputTypes``, ``--timingCacheFile``, ``--saveEngine`` in all of them (the precision ones are
never needed from 11: those plans are strongly typed). ``--memPoolSize=workspace:N`` (``build --workspace``)
in all of them, N in MiB as ``build`` sets it: up to 10.0 the size is a plain number of MiB (8.5.2
"in MiB"; ``roundToBytes`` multiplies by 1 << 20, ``samples/common/sampleEngines.cpp``), from 10.1 a
number without a unit suffix gets ``M`` (``addDefaultUnitSuffixIfNotSpecified(strPoolSize, 'M')``), so
the suffix-free number means the same everywhere. Layer specs: trtexec splits the list at every
``,``, then name and value at the last ``:`` (a name may hold ``:``), and reads ``'`` as quoting, so a
layer name holding ``,`` or ``'`` (or named ``*``, trtexec's "every other layer") cannot be written:
refused with its name.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from ..bundle import TRT_CACHE_FILE, Bundle
from ..bundle.commit import commit
from ..bundle.layout import RETARGETED_CACHE, TRTEXEC_SCRIPT
from ..bundle.lock import bundle_lock
from ..bundle.trt_cache import format_cache, read_cache
from ..bundle.trt_plan import BuildPlan, cache_code, plan_build, version_tuple
from ..errors import MattingDeployError
from ..fileio import check_dir_writable, check_writable, staging_dir

TRTEXEC = "trtexec"
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin"  # where JetPack installs trtexec


def script_name(precision: str, trt_version: str) -> str:
    return TRTEXEC_SCRIPT.format(precision=precision, version=trt_version)


def _spec_name(name: str) -> str:
    if "," in name or "'" in name or name == "*":
        raise MattingDeployError(
            f"layer '{name}': trtexec cannot name it in --layerPrecisions/--layerOutputTypes (it splits the list "
            "at ',' and reads \"'\" as quoting); rename the ONNX node or build with 'matting-deploy build'")
    return name


def trtexec_args(plan: BuildPlan, calib: str | None, timing_cache: str | None = "trtexec-timing.cache",
                 device: int = 0, workspace_mb: int | None = None) -> list[str]:
    """The trtexec arguments (argv) that build what ``build`` builds with ``plan`` (and
    ``--workspace``: ``workspace_mb``); paths are relative to the bundle folder."""
    ver = version_tuple(plan.trt_version)
    args = [TRTEXEC, f"--onnx={plan.onnx_file}"]
    if plan.strongly_typed and ver < (11, 0):
        if ver < (9, 1):
            raise MattingDeployError(f"trtexec {plan.trt_version} has no --stronglyTyped")
        args.append("--stronglyTyped")
    args += [f"--{flag.lower()}" for flag in plan.flags]  # --int8 --fp16
    if not plan.tf32:
        args.append("--noTF32")
    if plan.calib_cache:
        args.append(f"--calib={calib}")
    if plan.rules:
        precisions = [f"{_spec_name(r.node)}:{r.precision}" for r in plan.rules if r.precision]
        outputs = [f"{_spec_name(r.node)}:{r.output_type}" for r in plan.rules if r.output_type]
        args.append("--precisionConstraints=obey")
        if precisions:
            args.append("--layerPrecisions=" + ",".join(precisions))
        if outputs:
            args.append("--layerOutputTypes=" + ",".join(outputs))
    if workspace_mb:
        args.append(f"--memPoolSize=workspace:{int(workspace_mb)}")  # MiB in every trtexec (module docstring)
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    if device:
        args.append(f"--device={device}")
    args += [f"--saveEngine={plan.engine_file}", "--skipInference" if ver >= (8, 6) else "--buildOnly"]
    return args


def _script(plan: BuildPlan, args: list[str]) -> str:
    counts = ", ".join(f"{n} {why}" for why, n in sorted(plan.counts().items())) or "none"
    return (
        "#!/bin/sh\n"
        f"# matting-deploy build --trtexec: {plan.engine_file} with TensorRT {plan.trt_version}: {plan.mode}\n"
        f"# layer constraints: {counts}\n"
        "# run on the target machine from anywhere: it builds in this bundle's folder\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        f'PATH="$PATH:{JETPACK_TRTEXEC}"\n'
        + shlex.join(args) + "\n"
    )


def write_trtexec(bundle_dir: str | os.PathLike, precision: str, trt_version: str, force: bool = False,
                  timing_cache: str | None = None, device: int = 0,
                  log: Callable[[str], None] = print, workspace_mb: int | None = None) -> tuple[Path, list[str]]:
    """Write ``trtexec.<precision>.<version>.sh`` (listed in the manifest with its sha256) and
    return (its path, the trtexec argv)."""
    check_dir_writable(bundle_dir)
    with bundle_lock(bundle_dir, log):
        bundle = Bundle.open(bundle_dir, log)
        plan = plan_build(bundle, precision, trt_version)
        name = script_name(precision, trt_version)
        check_writable(bundle.root / name, force)
        files, calib = [name], None
        with staging_dir(bundle.root) as stage:
            if plan.calib_cache:
                cache = read_cache(bundle.file_path(TRT_CACHE_FILE))
                code = cache_code(trt_version)
                calib = TRT_CACHE_FILE
                if not cache.header.startswith(f"TRT-{code}-"):  # TensorRT skips a cache for another version
                    calib = RETARGETED_CACHE.format(version=trt_version)
                    check_writable(bundle.root / calib, force)
                    (stage / calib).write_text(format_cache(cache.scales, code, cache.algorithm))
                    bundle.add_file(calib, folder=stage, kind="tensorrt-calibration-cache", tensorrt=trt_version,
                                    source=TRT_CACHE_FILE)
                    files.append(calib)
            args = trtexec_args(plan, calib, timing_cache or "trtexec-timing.cache", device, workspace_mb)
            (stage / name).write_text(_script(plan, args))
            (stage / name).chmod(0o755)
            made_from = {"source": plan.onnx_file, "source_sha256": bundle.manifest["files"][plan.onnx_file]["sha256"]}
            if plan.calib_cache:  # a new calibration makes this script stale: the hashes tell
                made_from["calib_cache_sha256"] = bundle.manifest["files"][TRT_CACHE_FILE]["sha256"]
            bundle.add_file(name, folder=stage, kind="trtexec-command", precision=precision, tensorrt=trt_version,
                            mode=plan.mode, layer_constraints=plan.counts(), workspace_mb=workspace_mb, **made_from)
            commit(bundle.root, stage, bundle.manifest, files)
    return bundle.root / name, args
