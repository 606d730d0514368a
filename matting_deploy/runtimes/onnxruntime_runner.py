"""onnxruntime runner (CPU always; CUDA and TensorRT execution providers when installed)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, StateSpec
from ..errors import MattingDeployError, first_line
from ..models.specs import rvm_state_shapes
from .base import Runner

# Backend name -> onnxruntime execution providers, in order of preference.
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def available_backends() -> list[str]:
    """The onnxruntime backends usable on this machine."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [name for name, provs in PROVIDERS.items() if provs[0] in have]


def make_session(path: str | os.PathLike | bytes, backend: str = "cpu", threads: int = 0):
    """An InferenceSession for ``path`` (or serialized model bytes) on ``backend``; a clear error
    if it cannot load."""
    import onnxruntime as ort

    if backend not in PROVIDERS:
        raise MattingDeployError(f"unknown onnxruntime backend '{backend}' ({', '.join(PROVIDERS)})")
    if backend not in available_backends():
        raise MattingDeployError(
            f"backend '{backend}' needs {PROVIDERS[backend][0]}, which this onnxruntime lacks"
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path), opts,
                                    providers=PROVIDERS[backend])
    except Exception as e:  # onnxruntime raises several unrelated types
        where = "in-memory model" if isinstance(path, bytes) else path
        raise MattingDeployError(f"{where}: onnxruntime cannot load the model ({first_line(e)})") from None


class OrtRunner(Runner):
    """Runs an ONNX artifact; for RVM it owns r1..r4 and feeds each output back as the next input."""

    def __init__(
        self,
        path: str | os.PathLike,
        states: list[StateSpec] | None = None,
        downsample_ratio: float | None = None,
        backend: str = "cpu",
        threads: int = 0,
        dynamic: bool = False,
    ):
        self.path = Path(path)
        self.session = make_session(path, backend, threads)
        self.backend = backend
        self.state_specs = list(states or [])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.downsample_ratio = downsample_ratio
        self.dynamic = dynamic
        self.state: dict[str, np.ndarray] = {}

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, artifact: str = "fp32", backend: str = "cpu", threads: int = 0
    ) -> OrtRunner:
        return cls(bundle.artifact_path(artifact), bundle.states, bundle.downsample_ratio,
                   backend, threads, bundle.dynamic)

    def _zero_state(self, index: int, spec: StateSpec, src: np.ndarray) -> np.ndarray:
        if spec.shape is None:  # graphs like the official release broadcast a [N,1,1,1] state
            return np.zeros((src.shape[0], 1, 1, 1), np.float32)
        if not self.dynamic:
            return np.zeros(spec.shape, np.float32)
        channels = tuple(s.shape[1] for s in self.state_specs)
        n, _, h, w = src.shape
        return np.zeros(rvm_state_shapes(channels, h, w, self.downsample_ratio or 1.0, n)[index], np.float32)

    @property
    def extra_names(self) -> list[str]:
        """Inputs fed by the caller besides ``src`` (BGM: ``bgr``, ``seg``)."""
        fixed = {"src", "downsample_ratio", *(s.input for s in self.state_specs)}
        return [n for n in self.input_names if n not in fixed]

    def feed(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        """The full input dict for ``src`` with the current state (what ``run`` passes in)."""
        src = np.ascontiguousarray(src, dtype=np.float32)
        if src.ndim != 4 or src.shape[1] != 3:
            raise MattingDeployError(f"src must be (N, 3, H, W), got {src.shape}")
        feed = {"src": src}
        if extra or self.extra_names:
            self.check_extra(self.extra_names, extra, self.path)
            feed.update(extra_feed(src, extra))
        for index, spec in enumerate(self.state_specs):
            feed[spec.input] = self.state.get(spec.input)
            if feed[spec.input] is None:
                feed[spec.input] = self._zero_state(index, spec, src)
        if "downsample_ratio" in self.input_names:
            feed["downsample_ratio"] = np.array([self.downsample_ratio or 1.0], np.float32)
        return feed

    def model_inputs(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        return self.feed(src, **extra)

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, inputs), strict=True))

    def run(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.run_inputs(self.feed(src, **extra))
        self.state = {spec.input: outs[spec.output] for spec in self.state_specs}
        return outs

    def bare_call(self, src: np.ndarray, **extra: np.ndarray) -> Callable[[], Any]:
        session, feed = self.session, self.feed(src, **extra)
        return lambda: session.run(None, feed)

    @contextlib.contextmanager
    def cached_engine(self, src: np.ndarray, **extra: np.ndarray) -> Iterator[None]:
        real = self.session
        self.session = _CachedSession(real.run(None, self.feed(src, **extra)))
        try:
            yield
        finally:
            self.session = real
            self.reset()

    def reset(self) -> None:
        self.state = {}

    def close(self) -> None:
        self.session = None


def extra_feed(src: np.ndarray, extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Extra inputs as contiguous float32 (N, C, H, W) with src's N, H and W (one-line errors)."""
    out = {}
    for name, value in extra.items():
        arr = np.ascontiguousarray(value, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[0] != src.shape[0] or arr.shape[2:] != src.shape[2:]:
            n, _, h, w = src.shape
            raise MattingDeployError(f"{name} must be ({n}, C, {h}, {w}) like src, got {arr.shape}")
        out[name] = arr
    return out


class _CachedSession:
    """Stands in for an InferenceSession: returns one run's outputs again, in no time."""

    def __init__(self, outputs: list[Any]):
        self.outputs = outputs

    def run(self, names: Any, feed: dict[str, Any]) -> list[Any]:
        return self.outputs
