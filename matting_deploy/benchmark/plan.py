"""Which (artifact, backend) cases a bench times, checked before any timing starts.

Every refusal is one line (exit 2) printed before the first "timing ..." line: a backend this
machine lacks names the package to install, ``tensorrt`` without engines says to run ``build``,
an artifact no asked backend runs is refused by name.
"""

from __future__ import annotations

from ..bundle import HINTED, Bundle, engine_precision
from ..errors import MattingDeployError
from ..optional import require
from ..runtimes import BACKENDS, OPENVINO, ORT_BACKENDS
from ..runtimes.open import backend_artifacts

# What to install for an onnxruntime execution provider this onnxruntime lacks.
ORT_PACKAGES = {
    "cuda": "pip install onnxruntime-gpu (in place of onnxruntime; needs CUDA and cuDNN)",
    "ort-trt": "pip install onnxruntime-gpu (in place of onnxruntime) and the TensorRT libraries",
}


def parse_backends(backend: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"cpu,openvino"`` or a list -> checked backend names, order kept, duplicates dropped."""
    names = backend.split(",") if isinstance(backend, str) else list(backend)
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    for name in names:
        if name.split(":")[0] not in BACKENDS:
            raise MattingDeployError(f"--backend: unknown backend '{name}' (choose {', '.join(BACKENDS)})")
    if not names:
        raise MattingDeployError(f"--backend: empty (choose {', '.join(BACKENDS)})")
    return names


def check_backend(bundle: Bundle, backend: str) -> None:
    """One-line error when ``backend`` cannot run here (before any timing)."""
    if backend in ORT_BACKENDS and backend != "cpu":
        from ..runtimes.onnxruntime_runner import PROVIDERS, available_backends

        if backend not in available_backends():
            raise MattingDeployError(f"--backend {backend}: this onnxruntime has no {PROVIDERS[backend][0]}: "
                                     f"{ORT_PACKAGES[backend]}")
    elif backend == "tensorrt" and not bundle.engines():
        raise MattingDeployError(f"--backend tensorrt: {bundle.root} has no TensorRT engine yet: run "
                                 f"matting-deploy build --bundle {bundle.root} --precision fp16 (or fp32, int8) "
                                 "on the machine with the GPU first")
    elif backend.split(":")[0] == OPENVINO:
        require("openvino", f"--backend {OPENVINO}")


def plan_cases(bundle: Bundle, artifacts: list[str] | None, backends: list[str],
               log=print) -> list[tuple[str, str]]:
    """(artifact, backend) pairs to time, backend by backend. Default: every artifact each backend
    runs (:func:`backend_artifacts`); named artifacts a backend cannot run are skipped there with a
    note when another asked backend runs them, else refused."""
    if artifacts and backends == ["tensorrt"]:
        for name in artifacts:
            engine_precision(name)  # int8-cpu, bf16: "not a TensorRT artifact", before the engine check
    for backend in backends:
        check_backend(bundle, backend)
    runs = {b: backend_artifacts(bundle, b) for b in backends}
    if artifacts is None:
        cases = [(a, b) for b in backends for a in runs[b]]
    else:
        cases = []
        for name in artifacts:
            takers = [b for b in backends if _runs(name, b, runs[b])]
            if not takers:
                raise MattingDeployError(_refusal(bundle, name, backends, runs))
            skipped = [b for b in backends if b not in takers]
            if skipped:
                log(f"note: {name}: not run on {', '.join(skipped)} (no such artifact there)")
        cases = [(a, b) for b in backends for a in artifacts if _runs(a, b, runs[b])]
    if not cases:
        raise MattingDeployError(f"{bundle.root}: nothing to benchmark on {', '.join(backends)}")
    return cases


def _runs(name: str, backend: str, have: list[str]) -> bool:
    if backend == "tensorrt":
        try:
            return engine_precision(name) in have
        except MattingDeployError:
            return False
    return name in have


def _refusal(bundle: Bundle, name: str, backends: list[str], runs: dict[str, list[str]]) -> str:
    if backends == ["tensorrt"]:
        return (f"--artifacts: {bundle.root} has no TensorRT engine for '{name}' (has: "
                f"{', '.join(runs['tensorrt']) or 'none'}): run matting-deploy build --bundle {bundle.root} "
                f"--precision {name.removeprefix('trt-')}")
    if name in HINTED:
        return f"--artifacts: '{name}' is an OpenVINO execution precision: add --backend {OPENVINO}"
    have = sorted({a for b in backends for a in runs[b]})
    return f"--artifacts: {bundle.root} has no '{name}' artifact for {', '.join(backends)} (has: {', '.join(have)})"
