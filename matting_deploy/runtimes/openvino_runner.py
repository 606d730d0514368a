"""OpenVINO runner: the bundle's ONNX artifacts (or their IR from ``build --target openvino``) on an
Intel CPU, GPU or NPU.

Each artifact runs with one inference-precision hint (:data:`HINTS`): ``fp32`` at f32, ``bf16``
(model.onnx) at bf16 where the device lists BF16, ``int8`` at bf16 around its Q/DQ on a CPU that
lists BF16 (else f32), ``int8-cpu`` at f32 (bf16 costs it fidelity: see the README), ``fp16``
(model.fp16.onnx) at f32 on a CPU (the FP16 file's arithmetic, emulated) and at f16 on devices that
list FP16. Compiled with ``PERFORMANCE_HINT=LATENCY`` and ``INFERENCE_NUM_THREADS`` when given;
compiled models are cached in :func:`cache_dir` (OpenVINO's ``CACHE_DIR``), so the second start
skips the compilation. ONNX files with signed activation Q/DQ are read rewritten
(:mod:`.openvino_qdq`).

RVM's states never leave the runtime: two infer requests take turns, each reading the other's
state outputs as its state inputs (``set_tensor`` of the other request's output tensors).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import BF16, Bundle, StateSpec, file_artifact
from ..errors import MattingDeployError, first_line
from ..optional import require
from . import openvino_qdq
from .base import Runner, caller_feed, zero_state

DEFAULT_DEVICE = "CPU"
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")  # OpenVINO's device combinators: passed through
# artifact -> (hints on a CPU, hints elsewhere), each in order of preference: the first the device
# supports (OPTIMIZATION_CAPABILITIES, see CAPABILITY) is used; none: a one-line refusal. Chosen per
# INT8 file on the official RVM, composite-dev (bench/NOTES-openvino.md): int8 runs bf16 around its
# Q/DQ where the CPU has BF16 (MSE 0.975x FP32 against 0.920x at f32, both within the gates; RVM 4%
# and MODNet 12-14% faster), int8-cpu runs f32 (1.105x; 1.196x with bf16).
HINTS = {"fp32": (("f32",), ("f32",)), "fp16": (("f32",), ("f16",)), "int8": (("bf16", "f32"), ("f32",)),
         "int8-cpu": (("f32",), ("f32",)), BF16: (("bf16",), ("bf16",))}
CAPABILITY = {"bf16": "BF16", "f16": "FP16"}
BF16_CHECK = "grep -o -w 'amx_bf16\\|avx512_bf16' /proc/cpuinfo"

_core = None


def core() -> Any:
    """The process's ``openvino.Core`` (one per process; a one-line error without openvino)."""
    global _core
    if _core is None:
        ov = require("openvino", "--backend openvino")
        _core = ov.Core()
    return _core


def cache_dir() -> Path:
    """Where compiled models are cached: ``$XDG_CACHE_HOME/matting-deploy/openvino`` (default
    ``~/.cache/...``), a folder per model content inside. Not in the bundle: a compiled blob belongs
    to one OpenVINO version, device and CPU, and OpenVINO keys each blob by model, device and
    properties, so one folder serves all bundles."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "matting-deploy" / "openvino"


def check_device(device: str) -> str:
    """``device`` (upper-cased) if OpenVINO has it here (virtual devices like AUTO pass through),
    else one line."""
    device = device.strip().upper()
    if device.split(":")[0].split(".")[0] in VIRTUAL_DEVICES:
        return device
    have = list(core().available_devices)
    if device not in have and not any(d.split(".")[0] == device for d in have):
        raise MattingDeployError(f"--device: OpenVINO device '{device}' is not available "
                                 f"(available: {', '.join(have) or 'none'})")
    return device


def precision_hint(artifact: str, device: str) -> str:
    """The inference-precision hint ``artifact`` runs with on ``device``: its first hint the device
    lists in OPTIMIZATION_CAPABILITIES (virtual devices: the first); a one-line refusal when none."""
    if artifact not in HINTS:
        raise MattingDeployError(f"artifact '{artifact}': not an OpenVINO artifact (choose {', '.join(HINTS)})")
    hints = HINTS[artifact][0 if device.split(".")[0] == "CPU" else 1]
    if device.split(":")[0].split(".")[0] in VIRTUAL_DEVICES:
        return hints[0]
    try:
        caps = list(core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # a device that does not report it: let OpenVINO decide
        return hints[0]
    for hint in hints:
        if CAPABILITY.get(hint) is None or CAPABILITY[hint] in caps:
            return hint
    need = CAPABILITY[hints[-1]]
    how = f" (check the CPU: {BF16_CHECK})" if need == "BF16" and device.startswith("CPU") else ""
    raise MattingDeployError(f"artifact '{artifact}': OpenVINO device {device} has no {need} support "
                             f"(it lists {', '.join(caps)}){how}; run fp32 or int8 instead")


class OvRunner(Runner):
    """Runs one model file (ONNX or IR) in OpenVINO; for RVM two requests hand the states over."""

    def __init__(
        self,
        path: str | os.PathLike,
        states: list[StateSpec] | None = None,
        downsample_ratio: float | None = None,
        dynamic: bool = False,
        *,
        device: str = DEFAULT_DEVICE,
        hint: str = "f32",
        threads: int = 0,
        cache: Path | None = None,
    ):
        self.path = Path(path)
        self.device = check_device(device)
        self.hint = hint
        self.state_specs = list(states or [])
        self.downsample_ratio = downsample_ratio
        self.dynamic = dynamic
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.cache = _usable(cache)
        self.config = dict(config)  # without the cache folder: what bench's profiling compiles with
        if self.cache is not None:
            config["CACHE_DIR"] = str(self.cache)
        try:
            # an ONNX file with signed activation Q/DQ is compiled rewritten (openvino_qdq: OpenVINO
            # mis-executes some signed pairs); else from its path, which OpenVINO's cache keys fastest
            graph, self.rewritten = openvino_qdq.read_model(core(), self.path)
            self.source = graph if self.rewritten else str(self.path)  # what is compiled (bench profiles it)
            self.compiled = core().compile_model(self.source, self.device, config)
        except MattingDeployError:
            raise
        except Exception as e:  # OpenVINO raises RuntimeError for unreadable models and bad configs
            raise MattingDeployError(f"{self.path}: OpenVINO cannot compile the model for {self.device} "
                                     f"({first_line(e)})") from None
        # A compiled port carries every tensor name its optimised-away Identities/Converts had, and
        # get_any_name() may return any of them: name each port by the graph's own input/output name.
        io_names = {n for port in (*graph.inputs, *graph.outputs) for n in port.get_names()}
        self.input_names = [_graph_name(p, io_names) for p in self.compiled.inputs]
        self.output_names = [_graph_name(p, io_names) for p in self.compiled.outputs]
        state_inputs = {s.input for s in self.state_specs}
        self.extra_names = [n for n in self.input_names if n not in {"src", "downsample_ratio", *state_inputs}]
        self.result_names = [n for n in self.output_names if n not in {s.output for s in self.state_specs}]
        self._requests = [self.compiled.create_infer_request() for _ in range(2 if self.state_specs else 1)]
        self._turn = 0
        self._previous: Any = None  # the request that ran the last frame (holds the state outputs)

    @classmethod
    def from_bundle(cls, bundle: Bundle, artifact: str = "fp32", device: str = DEFAULT_DEVICE,
                    threads: int = 0, **options: Any) -> OvRunner:
        """``artifact`` of ``bundle``: its IR when ``build --target openvino`` made a current one, else
        the sha256-checked ONNX file; with the artifact's precision hint on ``device``."""
        device = check_device(device)
        hint = precision_hint(artifact, device)
        source = file_artifact(artifact)
        ir = bundle.openvino_ir(source)
        files = list(ir) if ir is not None else [bundle.verify(source)]  # sha256-checked just now
        path = files[0]
        # OpenVINO keys a blob compiled from a file by the file's path, not its content: one cache
        # folder per content (the files' sha256), so a rewritten model.onnx never meets an old blob.
        key = hashlib.sha256("".join(bundle.manifest["files"][f.name]["sha256"] for f in files).encode())
        options.setdefault("cache", cache_dir() / key.hexdigest()[:16])
        return cls(path, bundle.states, bundle.downsample_ratio, bundle.dynamic, device=device, hint=hint,
                   threads=threads, **options)

    @property
    def capture_note(self) -> str:
        cache = f"model cache {self.cache}" if self.cache is not None else "no model cache"
        states = "; states handed between two requests in OpenVINO" if self.state_specs else ""
        qdq = ", activation Q/DQ read as uint8" if self.rewritten else ""
        return f"OpenVINO {self.device}, {self.hint} ({self.path.name}{qdq}){states}; {cache}"

    def _inputs(self, src: np.ndarray, extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """src and the extra inputs (checked), plus downsample_ratio where the graph takes it."""
        feed = caller_feed(self, src, extra)
        if "downsample_ratio" in self.input_names:
            feed["downsample_ratio"] = np.array([self.downsample_ratio or 1.0], np.float32)
        return feed

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Host copies of the state the next ``run`` feeds (empty after a reset)."""
        if self._previous is None:
            return {}
        return {s.input: self._previous.get_tensor(s.output).data.copy() for s in self.state_specs}

    def model_inputs(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        feed = self._inputs(src, extra)
        state = self.state
        for index, spec in enumerate(self.state_specs):
            feed[spec.input] = state.get(spec.input)
            if feed[spec.input] is None:
                feed[spec.input] = zero_state(self, index, feed["src"])
        return feed

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self.compiled.create_infer_request()  # the runner's requests (and state) untouched
        out = request.infer(inputs)
        return {name: np.array(out[port]) for name, port in zip(self.output_names, self.compiled.outputs,
                                                                 strict=True)}

    def run(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        feed = self._inputs(src, extra)
        request = self._requests[self._turn]
        for index, spec in enumerate(self.state_specs):
            if self._previous is not None:
                request.set_tensor(spec.input, self._previous.get_tensor(spec.output))
            else:
                request.set_tensor(spec.input, _tensor(zero_state(self, index, feed["src"])))
        out = self._execute(request, feed)
        if self.state_specs:
            self._previous = request
            self._turn = 1 - self._turn
        return out

    def _execute(self, request: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The engine call: ``feed`` shared with OpenVINO, the results copied out (states stay)."""
        request.infer(feed, share_inputs=True, share_outputs=True)
        return {name: request.get_tensor(name).data.copy() for name in self.result_names}

    def bare_call(self, src: np.ndarray, **extra: np.ndarray) -> Callable[[], Any]:
        feed = self.model_inputs(src, **extra)
        request = self.compiled.create_infer_request()
        names = self.result_names
        return lambda: [np.array(t) for t in (request.infer(feed, share_inputs=True, share_outputs=True)[n]
                                               for n in names)]

    @contextlib.contextmanager
    def cached_engine(self, src: np.ndarray, **extra: np.ndarray) -> Iterator[None]:
        outputs = self.run(src, **extra)
        self._execute = lambda request, feed: {k: v.copy() for k, v in outputs.items()}  # type: ignore[method-assign]
        try:
            yield
        finally:
            del self._execute  # the class's method again
            self.reset()

    def reset(self) -> None:
        self._previous = None
        self._turn = 0

    def close(self) -> None:
        self._previous = None
        self._requests = []
        self.compiled = None


def _graph_name(port: Any, io_names: set[str]) -> str:
    """The port's name among the model's own input/output names (else OpenVINO's pick)."""
    names = sorted(set(port.get_names()) & io_names)
    return names[0] if names else port.get_any_name()


def _tensor(array: np.ndarray) -> Any:
    import openvino as ov

    return ov.Tensor(np.ascontiguousarray(array))


def _usable(folder: Path | None) -> Path | None:
    """``folder`` made if missing, or None when it cannot be (a read-only home: no cache, no error)."""
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None
