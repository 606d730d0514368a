"""Native TensorRT engine runner (``tensorrt`` + ``pycuda``, the ``trt`` extra).

Loads ``model.<precision>.engine`` of a bundle. Buffers are allocated once; the RVM states live on
the GPU in two buffers per state that swap roles after every frame (r_k,out of frame t becomes
r_k,in of frame t+1 without a copy), so only ``src`` goes up and ``pha``/``fgr`` come down, through
page-locked host buffers, all on one CUDA stream (async copies, one synchronize per frame).
Uses the tensor-name API (``set_tensor_address`` + ``execute_async_v3``, TensorRT 8.5 and later,
the only one in 10.x/11.x) and falls back to bindings + ``execute_async_v2`` on older 8.x.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, StateSpec, engine_artifact
from ..errors import MattingDeployError, first_line
from ..optional import require
from .base import Runner
from .trt_logger import capture, trt_logger


def _import_trt():
    return require("tensorrt"), require("pycuda.driver")


class TrtRunner(Runner):
    """Runs a serialized TensorRT engine; for RVM it owns r1..r4 on the device."""

    def __init__(
        self,
        path: str | os.PathLike,
        states: list[StateSpec] | None = None,
        downsample_ratio: float | None = None,
        device: int = 0,
        built_with: str | None = None,
    ):
        trt, cuda = _import_trt()
        self.path = Path(path)
        self.backend = "tensorrt"
        self.capture_note = "TensorRT engine; one stream; host I/O pinned"
        self._trt, self._cuda = trt, cuda
        if not self.path.is_file():
            raise MattingDeployError(
                f"{self.path}: no engine (make it with 'matting-deploy build')")
        try:
            cuda.init()
            if cuda.Device.count() <= device:
                raise MattingDeployError(f"{self.path}: no CUDA device {device} on this machine")
            self._ctx = cuda.Device(device).retain_primary_context()
        except MattingDeployError:
            raise
        except Exception as e:
            raise MattingDeployError(
                f"{self.path}: CUDA is not usable here ({first_line(e)})") from None
        self._ctx.push()
        try:
            self._load(states or [], downsample_ratio, built_with)
        except BaseException:
            self._release()
            raise
        finally:
            self._ctx.pop()

    @classmethod
    def from_bundle(cls, bundle: Bundle, precision: str = "fp16", device: int | None = None) -> TrtRunner:
        """The engine ``model.<precision>.engine`` of ``bundle`` (from ``matting-deploy build``), on
        ``device`` (default: the CUDA device the manifest says it was built on)."""
        if engine_artifact(precision) in bundle.artifacts:  # recorded by build: check its sha256
            bundle.verify(engine_artifact(precision))
        info = bundle.manifest.get("engines", {}).get(precision, {})
        if device is None:  # the device `build --device` built it on (engines are tied to a GPU)
            device = int(info.get("device", 0))
        return cls(bundle.engine_path(precision), bundle.states, bundle.downsample_ratio, device,
                   info.get("tensorrt"))

    # ------------------------------------------------------------------ setup

    def _load(self, states: list[StateSpec], ratio: float | None, built_with: str | None) -> None:
        trt, cuda = self._trt, self._cuda
        with capture() as log:  # this load's errors (the logger is the process's one)
            self._runtime = trt.Runtime(trt_logger(trt))
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            why = f"built with TensorRT {built_with}, this is {trt.__version__}; " if (
                built_with and built_with != trt.__version__) else ""
            detail = log.last_error()
            raise MattingDeployError(
                f"{self.path}: TensorRT cannot load the engine ({why}{detail}); engines are tied "
                "to the TensorRT version and GPU: rebuild with 'matting-deploy build --force'"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise MattingDeployError(f"{self.path}: cannot create an execution context")
        self._stream = cuda.Stream()
        self._tensor_api = hasattr(self._engine, "num_io_tensors") and hasattr(
            self._context, "execute_async_v3")
        self._io = self._describe_io()
        self._dev: dict[str, Any] = {}
        self._host: dict[str, np.ndarray] = {}
        self._allocs: list[Any] = []
        self.state_specs = [s for s in states if s.input in self._io and s.output in self._io]
        state_names = {s.input for s in self.state_specs} | {s.output for s in self.state_specs}
        for name, (_, shape, dtype) in self._io.items():
            if any(d < 0 for d in shape):
                raise MattingDeployError(
                    f"{self.path}: tensor '{name}' has dynamic shape {shape}; build the engine "
                    "from a static bundle"
                )
            nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            self._dev[name] = self._alloc(nbytes)
            if name not in state_names:  # src, downsample_ratio and the returned outputs
                self._host[name] = cuda.pagelocked_empty(shape, dtype)
        if "downsample_ratio" in self._io:
            self._host["downsample_ratio"][...] = ratio or 1.0
            cuda.memcpy_htod(self._dev["downsample_ratio"], self._host["downsample_ratio"])
        # Ping-pong: r_k,in reads buffer A while r_k,out writes buffer B; swapped after each run.
        self._state_bufs = {s.input: [self._dev[s.input], self._dev[s.output]]
                            for s in self.state_specs}
        self.input_names = [n for n, (is_in, _, _) in self._io.items() if is_in]
        self.output_names = [n for n, (is_in, _, _) in self._io.items()
                             if not is_in and n not in state_names]
        if "src" not in self._io:
            raise MattingDeployError(f"{self.path}: engine has no 'src' input")
        self.src_shape = tuple(self._io["src"][1])
        # Inputs the caller feeds besides src (BGM: bgr, seg), each with its own host buffer.
        self.extra_names = [n for n in self.input_names
                            if n not in ("src", "downsample_ratio") and n not in state_names]
        self._zero_states()

    def _describe_io(self) -> dict[str, tuple[bool, tuple[int, ...], Any]]:
        trt, eng = self._trt, self._engine
        io = {}
        if self._tensor_api:
            for i in range(eng.num_io_tensors):
                name = eng.get_tensor_name(i)
                is_input = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                io[name] = (is_input, tuple(eng.get_tensor_shape(name)),
                            trt.nptype(eng.get_tensor_dtype(name)))
        else:  # TensorRT < 8.5
            for i in range(eng.num_bindings):
                name = eng.get_binding_name(i)
                io[name] = (eng.binding_is_input(i), tuple(eng.get_binding_shape(i)),
                            trt.nptype(eng.get_binding_dtype(i)))
        return io

    def _alloc(self, nbytes: int):
        mem = self._cuda.mem_alloc(nbytes)
        self._allocs.append(mem)
        return mem

    def _zero_states(self) -> None:
        for spec in self.state_specs:
            shape, dtype = self._io[spec.input][1], self._io[spec.input][2]
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            for buf in self._state_bufs[spec.input]:
                self._cuda.memset_d8(buf, 0, nbytes)

    # ------------------------------------------------------------------ running

    def _addresses(self) -> dict[str, int]:
        addr = {name: int(mem) for name, mem in self._dev.items()}
        for spec in self.state_specs:
            a, b = self._state_bufs[spec.input]
            addr[spec.input], addr[spec.output] = int(a), int(b)
        return addr

    def _execute(self) -> None:
        addr = self._addresses()
        with capture() as log:
            if self._tensor_api:
                for name, ptr in addr.items():
                    self._context.set_tensor_address(name, ptr)
                ok = self._context.execute_async_v3(stream_handle=self._stream.handle)
            else:
                bindings = [addr[self._engine.get_binding_name(i)]
                            for i in range(self._engine.num_bindings)]
                ok = self._context.execute_async_v2(bindings=bindings,
                                                    stream_handle=self._stream.handle)
        if not ok:
            raise MattingDeployError(f"{self.path}: TensorRT execution failed ({log.last_error()})")

    def run(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        """One frame batch (plus the extra inputs by name, e.g. BGM's ``bgr`` and ``seg``);
        returns ``pha`` (and ``fgr``) as float32 host arrays."""
        self._enqueue(self._check_inputs(src, extra))
        for spec in self.state_specs:  # this frame's r_k,out is the next frame's r_k,in
            bufs = self._state_bufs[spec.input]
            bufs.reverse()
        return {name: self._host[name].astype(np.float32, copy=True) for name in self.output_names}

    def _check_inputs(self, src: np.ndarray, extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """src and every extra input by name, each of the engine's shape for it."""
        self.check_extra(self.extra_names, extra, self.path)
        inputs = {"src": np.asarray(src), **{n: np.asarray(v) for n, v in extra.items()}}
        for name, value in inputs.items():
            if value.shape != tuple(self._io[name][1]):
                raise MattingDeployError(f"{self.path}: {name} must be {tuple(self._io[name][1])} "
                                         f"for this engine, got {value.shape}")
        return inputs

    def _enqueue(self, inputs: dict[str, np.ndarray]) -> None:
        """On the one stream: pinned inputs up, the engine, pinned outputs down; then wait."""
        cuda = self._cuda
        self._ctx.push()
        try:
            for name, value in inputs.items():
                np.copyto(self._host[name], value, casting="unsafe")
                cuda.memcpy_htod_async(self._dev[name], self._host[name], self._stream)
            self._execute()
            for name in self.output_names:
                cuda.memcpy_dtoh_async(self._host[name], self._dev[name], self._stream)
            self._stream.synchronize()
        finally:
            self._ctx.pop()

    def bare_call(self, src: np.ndarray, **extra: np.ndarray):
        """Pinned copies and engine, outputs back as owned arrays, no state swap or checks: the
        bench's baseline for the runner's overhead."""
        inputs = self._check_inputs(src, extra)

        def call() -> list[np.ndarray]:
            self._enqueue(inputs)
            return [self._host[name].copy() for name in self.output_names]
        return call

    def device_call(self, src: np.ndarray, **extra: np.ndarray):
        return self.execute_only

    def execute_only(self) -> None:
        """Enqueue the engine and wait, without copies or state swap (the engine alone)."""
        self._ctx.push()
        try:
            self._execute()
            self._stream.synchronize()
        finally:
            self._ctx.pop()

    def state(self) -> dict[str, np.ndarray]:
        """Copy of the current recurrent state (what the next ``run`` feeds), by input name."""
        out = {}
        self._ctx.push()
        try:
            for spec in self.state_specs:
                _, shape, dtype = self._io[spec.input]
                host = np.empty(shape, dtype)
                self._cuda.memcpy_dtoh(host, self._state_bufs[spec.input][0])
                out[spec.input] = host.astype(np.float32)
        finally:
            self._ctx.pop()
        return out

    def reset(self) -> None:
        self._ctx.push()
        try:
            self._zero_states()
        finally:
            self._ctx.pop()

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.push()
        try:
            self._release()
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None

    def _release(self) -> None:
        """Free everything made in the CUDA context (call with it pushed): the stream, device
        memory, then execution context, engine and runtime."""
        self._stream = None  # a stream freed after its context is popped would leak or fail
        for mem in getattr(self, "_allocs", []):
            mem.free()
        self._allocs = []
        self._dev, self._host = {}, {}
        for attr in ("_context", "_engine", "_runtime"):  # context before engine before runtime
            if hasattr(self, attr):
                delattr(self, attr)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
