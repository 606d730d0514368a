"""``open_runner(bundle, artifact, backend)``: one entry point over every runner.

Backends: ``cpu``, ``cuda``, ``ort-trt`` run the bundle's ONNX artifacts (``fp32``, ``fp16``,
``int8``, ``int8-cpu``) in onnxruntime; ``tensorrt`` runs the native engine ``model.<precision>.engine`` that
``matting-deploy build`` made, chosen by the same precision name (``trt-fp16`` is accepted as an
alias of ``fp16`` with ``tensorrt``); ``openvino`` runs the ONNX artifacts (or their IR from
``build --target openvino``) and the execution precision ``bf16`` on an OpenVINO device (``CPU``
by default; ``device="GPU"`` or the backend spelled ``openvino:GPU``, e.g. through the C surface).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..bundle import HINTED, TRT_PREFIX, Bundle, engine_precision
from ..errors import MattingDeployError
from . import BACKENDS, OPENVINO, ORT_BACKENDS
from .base import Runner


@dataclass(frozen=True)
class IOSpec:
    """What a caller must feed and what comes back: src (n, 3, h, w); None = any size."""

    n: int | None
    h: int | None
    w: int | None
    has_fgr: bool


def io_spec(bundle: Bundle) -> IOSpec:
    """The src shape and outputs of a bundle, from its manifest."""
    shape = next((i.get("shape") for i in bundle.manifest.get("inputs", []) if i["name"] == "src"),
                 None)
    if shape and len(shape) == 4:
        n, h, w = (d if isinstance(d, int) and d > 0 else None for d in (shape[0], *shape[2:]))
    else:
        n, (h, w) = 1, bundle.input_hw
    if bundle.dynamic:
        h = w = None
    outputs = {o["name"] for o in bundle.manifest.get("outputs", [])}
    return IOSpec(n, h, w, "fgr" in outputs or bundle.model == "rvm")


def open_runner(
    bundle: Bundle | str | os.PathLike,
    artifact: str = "fp32",
    backend: str = "cpu",
    *,
    ofd: bool = False,
    ofd_threshold: float = 0.1,
    threads: int = 0,
    device: str | None = None,
) -> Runner:
    """A runner (run / reset / close; a context manager) for ``artifact`` of ``bundle`` on ``backend``.

    ONNX artifacts are sha256-checked against the manifest first. ``ofd=True`` wraps the runner
    in MODNet's one-frame-delay smoothing (:class:`~.ofd.OfdRunner`: one frame of latency).
    ``device``: the OpenVINO device (``CPU``, ``GPU``, ``NPU``, ``AUTO``; backend ``openvino`` only).
    """
    bun = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    if backend.startswith(f"{OPENVINO}:"):  # openvino:GPU
        backend, device = OPENVINO, backend.split(":", 1)[1] or device
    if device is not None and backend != OPENVINO:
        raise MattingDeployError(f"--device: '{device}' is an OpenVINO device (backend {OPENVINO} only)")
    if artifact in HINTED and backend != OPENVINO:
        raise MattingDeployError(f"artifact '{artifact}' is an execution precision of OpenVINO "
                                 f"({HINTED[artifact]}'s file with a {artifact} hint): open it with backend {OPENVINO}")
    if artifact.startswith(TRT_PREFIX) and backend != "tensorrt":
        raise MattingDeployError(
            f"artifact '{artifact}' is a TensorRT engine: open it with backend 'tensorrt'"
        )
    if backend == "tensorrt":
        precision = engine_precision(artifact)  # int8-cpu: not a TensorRT artifact
        from .tensorrt_runner import TrtRunner

        runner = TrtRunner.from_bundle(bun, precision)
    elif backend in ORT_BACKENDS:
        from .onnxruntime_runner import OrtRunner

        bun.verify(artifact)
        runner = OrtRunner.from_bundle(bun, artifact, backend, threads)
    elif backend == OPENVINO:
        from .openvino_runner import DEFAULT_DEVICE, OvRunner

        runner = OvRunner.from_bundle(bun, artifact, device or DEFAULT_DEVICE, threads)
    else:
        raise MattingDeployError(f"unknown backend '{backend}' (choose {', '.join(BACKENDS)})")
    if ofd:
        from .ofd import OfdRunner

        return OfdRunner(runner, ofd_threshold)
    return runner


def backend_artifacts(bundle: Bundle, backend: str) -> list[str]:
    """The artifacts of ``bundle`` that ``backend`` runs, fp32 first (``openvino``: the ONNX ones
    and ``bf16`` where the bundle has model.onnx; onnxruntime: the ONNX ones; ``tensorrt``: the
    precisions whose engine exists)."""
    if backend == "tensorrt":
        return bundle.engines()
    names = list(bundle.onnx_artifacts())
    if backend.split(":")[0] == OPENVINO:
        names += [a for a, source in HINTED.items() if source in names]
    return names
