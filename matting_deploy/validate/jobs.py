"""Which rows a validation runs: each artifact on each backend that can run here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..bundle import Bundle
from ..errors import MattingDeployError, first_line
from ..optional import unavailable
from ..runtimes import BACKENDS, ORT_BACKENDS


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
    when the bundle holds engines. Named backends that cannot run are skipped with a note too.
    """
    from ..runtimes.onnxruntime_runner import PROVIDERS, available_backends

    onnx = bundle.onnx_artifacts()
    for name in artifacts:
        if name not in onnx and not bundle.engine_path(name).is_file():
            raise MattingDeployError(
                f"{bundle.root}: bundle has no '{name}' artifact (has: {', '.join(onnx) or 'none'})"
            )
    have = available_backends()
    auto = backends is None
    wanted = list(BACKENDS) if auto else backends
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
    for backend in wanted:
        if backend in ORT_BACKENDS and backend in have:
            jobs += [Job(a, backend, bundle.root / onnx[a]) for a in artifacts if a in onnx]
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
