"""onnxruntime runner (CPU always; CUDA and TensorRT execution providers when installed).

On ``cuda`` the runner goes through :class:`~.ort_binding.BoundSession` (I/O binding, states
resident on the GPU, CUDA-graph capture where the session accepts it, cuDNN ``EXHAUSTIVE``
algorithm search); ``capture_note`` says in one line what it does and, when capture is off, why.
Elsewhere it calls ``session.run`` with numpy feeds (``binding=True`` takes the bound path on CPU
too, with numpy-backed buffers).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import CPU_INT8, Bundle, StateSpec
from ..errors import MattingDeployError, first_line
from .base import Runner, caller_feed, zero_state
from .ort_binding import MIN_ORT_GRAPH_IDS, SKIP_GRAPH, BoundSession, host_copies, ort_reason, run_options

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


def cuda_options(capture: bool, cudnn_search: str = "EXHAUSTIVE", device_id: int = 0) -> dict:
    """CUDA EP provider options: graph capture on/off and cuDNN's convolution algorithm search
    (``EXHAUSTIVE`` benchmarks every algorithm once per shape at the first run)."""
    opts = {"device_id": str(device_id), "cudnn_conv_algo_search": cudnn_search}
    if capture:
        opts["enable_cuda_graph"] = "1"
    return opts


def session_options(threads: int = 0, qdq_fusions: bool = False):
    """onnxruntime SessionOptions as every session of this package has them: quiet log,
    ``threads`` intra-op threads (0: onnxruntime's default), and unless ``qdq_fusions``,
    ``session.disable_quant_qdq``: QuantizeLinear and DequantizeLinear then compute exactly what the
    graph says, as TensorRT reads a Q/DQ graph. With them on, onnxruntime's CPU provider rewrites
    Q/DQ groups into its own integer kernels and also quantizes the float bias of a Conv whose input
    and weight come from DequantizeLinear to INT32 at scale input x weight, computed in the graph's
    float type (FP16 in ``model.int8.onnx``), which TensorRT never does; only the ``int8-cpu``
    artifact, made for those kernels, wants them."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if not qdq_fusions:
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return opts


def make_session(path: str | os.PathLike | bytes, backend: str = "cpu", threads: int = 0,
                 options: dict | None = None, raw: bool = False, qdq_fusions: bool = False):
    """An InferenceSession for ``path`` (or serialized model bytes) on ``backend`` with
    :func:`session_options`; a clear error if it cannot load (``raw``: onnxruntime's own
    exception). ``options`` are provider options of the backend's first provider."""
    import onnxruntime as ort

    if backend not in PROVIDERS:
        raise MattingDeployError(f"unknown onnxruntime backend '{backend}' ({', '.join(PROVIDERS)})")
    if backend not in available_backends():
        raise MattingDeployError(
            f"backend '{backend}' needs {PROVIDERS[backend][0]}, which this onnxruntime lacks"
        )
    opts = session_options(threads, qdq_fusions)
    providers: list = list(PROVIDERS[backend])
    if options:
        providers[0] = (providers[0], options)
    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path), opts,
                                    providers=providers)
    except Exception as e:  # onnxruntime raises several unrelated types
        if raw:
            raise
        where = "in-memory model" if isinstance(path, bytes) else path
        raise MattingDeployError(f"{where}: onnxruntime cannot load the model ({first_line(e)})") from None


def graph_ids_supported() -> bool:
    """Whether this onnxruntime selects CUDA graphs by the ``gpu_graph_id`` run option."""
    import onnxruntime as ort

    version = tuple(int(p) for p in re.findall(r"\d+", ort.__version__)[:2])
    return version >= MIN_ORT_GRAPH_IDS


class OrtRunner(Runner):
    """Runs an ONNX artifact; for RVM it owns r1..r4 and feeds each output back as the next input.

    ``binding`` (default: on for ``cuda``) runs through fixed I/O bindings with the states on the
    device; ``capture`` (default: with binding on ``cuda``) asks the CUDA EP for CUDA graphs and
    falls back to binding without capture when the session refuses (e.g. Q/DQ INT8 graphs with
    nodes outside the CUDA EP); ``pinned`` uses page-locked host buffers (pycuda) for the copies;
    ``qdq_fusions``: see :func:`session_options` (on for the bundle's ``int8-cpu`` artifact only).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        states: list[StateSpec] | None = None,
        downsample_ratio: float | None = None,
        backend: str = "cpu",
        threads: int = 0,
        dynamic: bool = False,
        *,
        binding: bool | None = None,
        capture: bool | None = None,
        cudnn_search: str = "EXHAUSTIVE",
        pinned: bool = True,
        qdq_fusions: bool = False,
    ):
        self.path = Path(path)
        self.backend = backend
        self.threads = threads
        self.qdq_fusions = qdq_fusions
        self.cudnn_search = cudnn_search
        self.state_specs = list(states or [])
        self.downsample_ratio = downsample_ratio
        self.dynamic = dynamic
        self._state: dict[str, np.ndarray] = {}
        self.bound: BoundSession | None = None
        self.captures = False
        use_binding = (backend == "cuda" if binding is None else binding) and not dynamic
        capture = use_binding and backend == "cuda" if capture is None else capture and use_binding
        self._note = self._open(capture)
        if dynamic and (binding or backend == "cuda"):
            self._note = "no I/O binding: dynamic shapes (session.run with numpy feeds)"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if use_binding:
            self._bind(pinned)

    def _open(self, capture: bool) -> str | None:
        """Open the session (with capture when asked and possible); the one-line capture note."""
        if self.backend != "cuda":
            self.session = make_session(self.path, self.backend, self.threads, qdq_fusions=self.qdq_fusions)
            return None
        why = "capture off"
        if capture and not graph_ids_supported():
            capture, why = False, (f"onnxruntime < {'.'.join(map(str, MIN_ORT_GRAPH_IDS))} has no "
                                   "gpu_graph_id run option (one graph per state buffer)")
        if capture:
            try:
                self.session = make_session(self.path, "cuda", self.threads,
                                            cuda_options(True, self.cudnn_search), raw=True,
                                            qdq_fusions=self.qdq_fusions)
                self.captures = True
                return None
            except Exception as e:  # refused at load, e.g. nodes outside the CUDA EP
                why = ort_reason(e)
        self.session = self._plain_cuda_session()
        return f"no CUDA graph: {why}"

    def _plain_cuda_session(self):
        return make_session(self.path, "cuda", self.threads, cuda_options(False, self.cudnn_search),
                            qdq_fusions=self.qdq_fusions)

    def _bind(self, pinned: bool) -> None:
        device = "cuda" if self.backend == "cuda" else "cpu"
        copies, why = host_copies(device, pinned=pinned)
        try:
            self.bound = BoundSession(self.session, self.state_specs, copies, self.captures,
                                      reopen=self._plain_cuda_session if self.captures else None)
        except MattingDeployError as e:
            copies.close()
            self._note = f"no I/O binding: {e}"
            return
        self.host_io = copies.kind if why is None else f"{copies.kind} ({why})"

    @property
    def capture_note(self) -> str:
        """One line: binding, CUDA graph, host buffers; and why capture is off when it is."""
        if self.bound is None:
            return self._note or f"session.run ({self.backend})"
        if self.bound.note:  # capture failed at run time
            graph = self.bound.note
        elif self.captures:
            graph = "CUDA graph: on" + (", one per state buffer" if self.state_specs else "")
        else:
            graph = self._note or f"no CUDA graph on {self.backend}"
        return f"I/O binding on {self.backend}; {graph}; host I/O {self.host_io}"

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, artifact: str = "fp32", backend: str = "cpu", threads: int = 0,
        **options: Any,
    ) -> OrtRunner:
        options.setdefault("qdq_fusions", artifact == CPU_INT8)
        return cls(bundle.artifact_path(artifact), bundle.states, bundle.downsample_ratio,
                   backend, threads, bundle.dynamic, **options)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The recurrent state the next ``run`` feeds (host copies when it lives on the device)."""
        return self.bound.state() if self.bound is not None else self._state

    @property
    def extra_names(self) -> list[str]:
        """Inputs fed by the caller besides ``src`` (BGM: ``bgr``, ``seg``)."""
        fixed = {"src", "downsample_ratio", *(s.input for s in self.state_specs)}
        return [n for n in self.input_names if n not in fixed]

    def feed(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        """The full input dict for ``src`` with the current state (what ``run`` passes in)."""
        feed = caller_feed(self, src, extra)
        src = feed["src"]
        state = self.state
        for index, spec in enumerate(self.state_specs):
            feed[spec.input] = state.get(spec.input)
            if feed[spec.input] is None:
                feed[spec.input] = zero_state(self, index, src)
        if "downsample_ratio" in self.input_names:
            feed["downsample_ratio"] = np.array([self.downsample_ratio or 1.0], np.float32)
        return feed

    def model_inputs(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        return self.feed(src, **extra)

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # gpu_graph_id -1: a numpy-fed run must never be captured as a graph a binding replays
        opts = run_options(SKIP_GRAPH) if self.backend == "cuda" else None
        return dict(zip(self.output_names, self.session.run(None, inputs, opts), strict=True))

    def _check_inputs(self, src: np.ndarray, extra: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
        """The bound path's ``src`` and extra inputs, each of its bound shape."""
        self.check_extra(self.extra_names, extra, self.path)
        inputs = {"src": np.asarray(src), **{n: np.asarray(v) for n, v in extra.items()}}
        for name, value in inputs.items():
            want = self.bound.input_shapes[name][0]
            if value.shape != want:
                raise MattingDeployError(f"{self.path}: {name} must be {want}, got {value.shape}")
        return inputs.pop("src"), inputs

    def run(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        if self.bound is not None:
            return self.bound.run(*self._check_inputs(src, extra))
        outs = self.run_inputs(self.feed(src, **extra))
        self._state = {spec.input: outs[spec.output] for spec in self.state_specs}
        return outs

    def device_inputs(self) -> dict[str, Any]:
        """Device-resident I/O: the fixed input buffers (``src``, and BGM's ``bgr``/``seg``;
        onnxruntime OrtValues) to fill in place; see :meth:`run_on_device`. Needs the bound path."""
        return self._need_bound().device_inputs()

    def run_on_device(self, src: Any | None = None) -> dict[str, Any]:
        """Run with device-resident I/O: ``src`` an OrtValue on the runner's device (or None when
        written into :meth:`device_inputs`); returns ``pha``/``fgr`` as OrtValues on the device,
        overwritten by the next run. States advance as with :meth:`run`."""
        return self._need_bound().run_device(src)

    def _need_bound(self) -> BoundSession:
        if self.bound is None:
            raise MattingDeployError(f"{self.path}: device-resident I/O needs I/O binding "
                                     f"({self.capture_note})")
        return self.bound

    def bare_call(self, src: np.ndarray, **extra: np.ndarray) -> Callable[[], Any]:
        if self.bound is not None:
            return self.bound.bare_call(*self._check_inputs(src, extra))
        session, feed = self.session, self.feed(src, **extra)
        opts = run_options(SKIP_GRAPH) if self.backend == "cuda" else None
        return lambda: session.run(None, feed, opts)

    def device_call(self, src: np.ndarray, **extra: np.ndarray) -> Callable[[], Any] | None:
        if self.bound is None:
            return None
        self.bound.upload(*self._check_inputs(src, extra))
        return self.bound.execute

    @contextlib.contextmanager
    def cached_engine(self, src: np.ndarray, **extra: np.ndarray) -> Iterator[None]:
        if self.bound is not None:
            self.bound.run(*self._check_inputs(src, extra))
            self.bound.cached = True
            try:
                yield
            finally:
                self.bound.cached = False
                self.reset()
            return
        real = self.session
        self.session = _CachedSession(real.run(None, self.feed(src, **extra)))
        try:
            yield
        finally:
            self.session = real
            self.reset()

    def reset(self) -> None:
        self._state = {}
        if self.bound is not None:
            self.bound.reset()

    def close(self) -> None:
        if self.bound is not None:
            self.bound.close()
            self.bound = None
        self.session = None


class _CachedSession:
    """Stands in for an InferenceSession: returns one run's outputs again, in no time."""

    def __init__(self, outputs: list[Any]):
        self.outputs = outputs

    def run(self, names: Any, feed: dict[str, Any], options: Any = None) -> list[Any]:
        return self.outputs
