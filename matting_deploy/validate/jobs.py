"""Which rows a validation runs: each artifact on each backend that can run here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..bundle import HINTED, Bundle, file_artifact
from ..errors import MattingDeployError, first_line
from ..optional import unavailable
from ..runtimes import BACKENDS, OPENVINO, ORT_BACKENDS


@dataclass(frozen=True)
class Job:
    """One table row: an artifact (precision) on a backend, and the file it runs."""

    artifact: str
    backend: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.artifact} ({self.backend})"


def plan_jobs(
    bundle: Bundle, artifacts: list[str], backends: list[str] | None
) -> tuple[list[Job], list[str]]:
    """Rows to run, and one-line notes for backends skipped here.

    ``backends=None`` means automatic: cpu, every GPU provider this onnxruntime has, and TensorRT
    when the bundle holds engines (OpenVINO only when named: a note says so where it is installed).
    Named backends that cannot run are skipped with a note too. ``openvino`` runs the ONNX
    artifacts and ``bf16`` (model.onnx at OpenVINO's BF16 precision; other backends skip it).
    """
    from ..runtimes.onnxruntime_runner import PROVIDERS, available_backends

    onnx = bundle.onnx_artifacts()
    for name in artifacts:
        if file_artifact(name) not in onnx and not bundle.engine_path(name).is_file():
            raise MattingDeployError(
                f"{bundle.root}: bundle has no '{name}' artifact (has: {', '.join(onnx) or 'none'})"
            )
    have = available_backends()
    auto = backends is None
    wanted = [b for b in BACKENDS if b != OPENVINO] if auto else backends
    for b in wanted:
        if b not in BACKENDS:
            raise MattingDeployError(f"--backends: unknown backend '{b}' (choose from {', '.join(BACKENDS)})")
    jobs: list[Job] = []
    notes: list[str] = []
    lacking = [b for b in wanted if b in ORT_BACKENDS and b not in have]
    if lacking:
        notes.append(
            f"{', '.join(lacking)}: skipped (this onnxruntime has no "
            f"{', '.join(PROVIDERS[b][0] for b in lacking)})"
        )
    if auto and unavailable("openvino") is None:
        notes.append(f"{OPENVINO}: installed but not validated (add --backends cpu,{OPENVINO})")
    hinted = [a for a in artifacts if a in HINTED]
    if hinted and OPENVINO not in wanted:
        notes.append(f"{', '.join(hinted)}: skipped (an OpenVINO execution precision: add --backends {OPENVINO})")
    for backend in wanted:
        if backend in ORT_BACKENDS and backend in have:
            jobs += [Job(a, backend, bundle.root / onnx[a]) for a in artifacts if a in onnx]
        elif backend == OPENVINO:
            reason = unavailable("openvino")
            if reason:
                notes.append(f"{OPENVINO}: skipped ({reason})")
                continue
            jobs += [Job(a, OPENVINO, bundle.root / onnx[file_artifact(a)]) for a in artifacts
                     if file_artifact(a) in onnx]
        elif backend == "tensorrt":
            engines = [a for a in artifacts if bundle.engine_path(a).is_file()]
            if not engines:
                if not auto:
                    notes.append(
                        "tensorrt: skipped (no model.<precision>.engine for "
                        f"{', '.join(artifacts)}; make one with 'matting-deploy build')"
                    )
                continue
            reason = tensorrt_unavailable()
            if reason:
                notes.append(f"tensorrt: skipped ({reason})")
                continue
            jobs += [Job(a, "tensorrt", bundle.engine_path(a)) for a in engines]
    return jobs, notes


def default_artifacts(bundle: Bundle, backends: list[str] | None) -> list[str]:
    """Every ONNX artifact, plus the OpenVINO execution precisions (bf16) when ``openvino`` is asked."""
    names = list(bundle.onnx_artifacts())
    if backends and OPENVINO in backends:
        names += [a for a, source in HINTED.items() if source in names]
    return names


def tensorrt_unavailable() -> str | None:
    """Why TensorRT engines cannot run here, or None when they can."""
    reason = unavailable("tensorrt")
    if reason:
        return reason
    try:
        importlib.import_module("matting_deploy.runtimes.tensorrt_runner")
    except Exception as e:
        return f"matting_deploy.runtimes.tensorrt_runner cannot be imported ({first_line(e)})"
    return None
