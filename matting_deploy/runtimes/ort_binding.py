"""onnxruntime I/O binding: every input, output and recurrent state in a fixed buffer on one device.

:class:`BoundSession` is what :class:`~.onnxruntime_runner.OrtRunner` runs through on the CUDA EP
(and on CPU when asked: the same code path, tested for parity with ``session.run``):

- one preallocated ``OrtValue`` per input and output on the device (``OrtValue.
  ortvalue_from_shape_and_type(shape, dtype, "cuda", 0)``), bound once with
  ``IOBinding.bind_ortvalue_input/output``;
- RVM's r1..r4 never leave the device: two buffers per state swap roles every frame (binding 0
  reads A and writes B, binding 1 reads B and writes A), so r_k,out of frame t is r_k,in of t+1;
- with CUDA-graph capture (CUDA EP option ``enable_cuda_graph``) each binding is captured as its
  own graph, selected by the run option ``gpu_graph_id`` (:data:`GRAPH_IDS`); replays read and
  write the captured addresses, so new frames are written *into* the bound buffers;
- host I/O as a C caller has it: ``src`` (and every other caller-fed input, e.g. BGM's ``bgr`` and
  ``seg``, each in its own bound buffer) is copied in and the returned outputs copied out through
  page-locked (pinned) host buffers when pycuda is installed (``PinnedCopies``), else through
  ``OrtValue.update_inplace`` / ``OrtValue.numpy()`` (pageable); on CPU the buffers *are* numpy
  arrays (``NumpyCopies``).

Device-resident I/O (callers that keep frames on the GPU): :meth:`BoundSession.device_inputs`
gives the fixed ``src`` buffer to fill (``OrtValue.update_inplace`` from another device
``OrtValue``, or its ``data_ptr()`` with CuPy/PyTorch), :meth:`BoundSession.run_device` runs and
returns the output ``OrtValue`` s on the device (overwritten by the next run).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..bundle import StateSpec
from ..errors import MattingDeployError, first_line

GRAPH_ID_KEY = "gpu_graph_id"  # onnxruntime run option: which captured CUDA graph (-1: none)
GRAPH_IDS = (1, 2)  # one per ping-pong binding; 0 (the default id) is never used, so a stray
# plain run cannot capture a graph that a binding later replays
SKIP_GRAPH = "-1"
MIN_ORT_GRAPH_IDS = (1, 18)  # gpu_graph_id appeared in onnxruntime 1.18
NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
            "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def run_options(graph_id: int | str | None):
    """RunOptions selecting CUDA graph ``graph_id`` (``"-1"`` skips capture; None: defaults)."""
    import onnxruntime as ort

    opts = ort.RunOptions()
    if graph_id is not None:
        opts.add_run_config_entry(GRAPH_ID_KEY, str(graph_id))
    return opts


def ort_reason(error: BaseException) -> str:
    """onnxruntime's message without its ``[ONNXRuntimeError] : 1 : FAIL :`` prefix, one line."""
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", first_line(error)).strip()


def static_shape(shape: Any) -> tuple[int, ...] | None:
    """``shape`` as ints, or None when any dimension is symbolic."""
    if shape is None or not all(isinstance(d, int) and d > 0 for d in shape):
        return None
    return tuple(shape)


class NumpyCopies:
    """CPU buffers: each OrtValue wraps a numpy array, so host I/O is a plain numpy copy."""

    kind = "numpy (cpu)"

    def __init__(self) -> None:
        self.arrays: dict[int, np.ndarray] = {}

    def alloc(self, shape: tuple[int, ...], dtype: Any):
        import onnxruntime as ort

        array = np.zeros(shape, dtype)
        value = ort.OrtValue.ortvalue_from_numpy(array)
        self.arrays[value.data_ptr()] = array
        return value

    def upload(self, value, array: np.ndarray) -> None:
        np.copyto(self.arrays[value.data_ptr()], array, casting="unsafe")

    def download(self, value) -> np.ndarray:
        return self.arrays[value.data_ptr()]

    def zero(self, value) -> None:
        self.arrays[value.data_ptr()].fill(0)

    def close(self) -> None:
        self.arrays = {}


class PageableCopies:
    """Device buffers filled and read through onnxruntime's own copies (pageable host memory)."""

    kind = "pageable"

    def __init__(self, device: str, device_id: int = 0):
        self.device, self.device_id = device, device_id

    def alloc(self, shape: tuple[int, ...], dtype: Any):
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, self.device,
                                                        self.device_id)

    def upload(self, value, array: np.ndarray) -> None:
        dtype = NP_TYPES.get(value.data_type(), np.float32)
        value.update_inplace(np.ascontiguousarray(array, dtype=dtype))

    def download(self, value) -> np.ndarray:
        return value.numpy()

    def zero(self, value) -> None:
        value.update_inplace(np.zeros(value.shape(), NP_TYPES.get(value.data_type(), np.float32)))

    def close(self) -> None:
        pass


class PinnedCopies(PageableCopies):
    """Device buffers with page-locked host twins (pycuda): DMA copies at full bus speed.

    pycuda works in the device's primary context, the one onnxruntime's CUDA EP uses, so the
    ``OrtValue.data_ptr()`` addresses are valid for its copies. Copies are synchronous: each is
    complete before the run (which starts on the EP's stream) and after it (which ends synced).
    """

    kind = "pinned"

    def __init__(self, device_id: int = 0):
        from ..optional import require

        super().__init__("cuda", device_id)
        self.cuda = require("pycuda.driver")
        self.cuda.init()
        self.ctx = self.cuda.Device(device_id).retain_primary_context()
        self.host: dict[int, np.ndarray] = {}

    def alloc(self, shape: tuple[int, ...], dtype: Any):
        value = super().alloc(shape, dtype)
        self.host[value.data_ptr()] = self.cuda.pagelocked_empty(shape, dtype)
        return value

    def upload(self, value, array: np.ndarray) -> None:
        host = self.host[value.data_ptr()]
        np.copyto(host, array, casting="unsafe")
        self.ctx.push()
        try:
            self.cuda.memcpy_htod(value.data_ptr(), host)
        finally:
            self.ctx.pop()

    def download(self, value) -> np.ndarray:
        host = self.host[value.data_ptr()]
        self.ctx.push()
        try:
            self.cuda.memcpy_dtoh(host, value.data_ptr())
        finally:
            self.ctx.pop()
        return host

    def zero(self, value) -> None:
        self.ctx.push()
        try:
            self.cuda.memset_d8(value.data_ptr(), 0, self.host[value.data_ptr()].nbytes)
        finally:
            self.ctx.pop()

    def close(self) -> None:
        self.host = {}
        if self.ctx is not None:
            self.ctx.detach()
            self.ctx = None


def host_copies(device: str, device_id: int = 0, pinned: bool = True) -> tuple[Any, str | None]:
    """The copier for ``device`` and why pinned copies are not used (None when they are)."""
    if device == "cpu":
        return NumpyCopies(), None
    if not pinned:
        return PageableCopies(device, device_id), "pinned host buffers off"
    try:
        return PinnedCopies(device_id), None
    except Exception as e:  # pycuda missing or unusable: pageable copies still work
        return PageableCopies(device, device_id), f"pageable host buffers ({first_line(e)})"


class BoundSession:
    """A session run through fixed bindings (see the module docstring). ``returned`` outputs come
    back to the host; state outputs stay on the device."""

    def __init__(self, session, states: list[StateSpec], copies: Any, capture: bool,
                 reopen: Callable[[], Any] | None = None):
        self.copies = copies
        self.states = list(states)
        self.reopen = reopen  # a session without capture, for when capture fails at run time
        self.note: str | None = None
        state_outs = {s.output for s in self.states}
        self.input_shapes = self._shapes(session.get_inputs())
        self.output_shapes = self._shapes(session.get_outputs())
        for s in self.states:
            if self.input_shapes.get(s.input) != self.output_shapes.get(s.output):
                raise MattingDeployError(
                    f"state {s.input}/{s.output}: the graph does not declare them with one static "
                    "shape, which I/O binding needs")
        self.returned = [o.name for o in session.get_outputs() if o.name not in state_outs]
        inputs_in_states = {s.input for s in self.states}
        self.values = {name: copies.alloc(shape, dtype) for name, (shape, dtype)
                       in {**self.input_shapes, **self.output_shapes}.items()
                       if name not in inputs_in_states}
        # ping-pong: bufs[s.input][k] is what binding k reads; the other one is what it writes
        self.bufs = {s.input: [self.values.pop(s.output), copies.alloc(*self.input_shapes[s.input])]
                     for s in self.states}
        self.parity = 0
        self.cached = False
        self.bind(session, capture)
        self.reset()

    @staticmethod
    def _shapes(args) -> dict[str, tuple[tuple[int, ...], Any]]:
        out = {}
        for arg in args:
            shape = static_shape(arg.shape)
            if shape is None or arg.type not in NP_TYPES:
                raise MattingDeployError(
                    f"I/O binding needs static shapes and numeric tensors ('{arg.name}' is "
                    f"{arg.type} {list(arg.shape)})")
            out[arg.name] = (shape, NP_TYPES[arg.type])
        return out

    def bind(self, session, capture: bool) -> None:
        """(Re)bind every buffer to ``session``; one binding per state parity."""
        self.session, self.capture = session, capture
        self.bindings, self.options = [], []
        for k in range(2 if self.states else 1):
            binding = session.io_binding()
            for name, value in self.values.items():
                if name in self.input_shapes:
                    binding.bind_ortvalue_input(name, value)
                else:
                    binding.bind_ortvalue_output(name, value)
            for spec in self.states:
                binding.bind_ortvalue_input(spec.input, self.bufs[spec.input][k])
                binding.bind_ortvalue_output(spec.output, self.bufs[spec.input][1 - k])
            self.bindings.append(binding)
            self.options.append(run_options(GRAPH_IDS[k] if capture else SKIP_GRAPH))

    # -------------------------------------------------------------- running

    def execute(self) -> None:
        """The bound engine call for the current parity (no copies, no swap)."""
        if self.cached:
            return
        try:
            self.session.run_with_iobinding(self.bindings[self.parity], self.options[self.parity])
        except Exception as e:
            if not self.capture or self.reopen is None:
                raise
            # A capture the EP accepted at load time failed on the stream: the inputs are
            # untouched (capture records, it does not execute), so rerun without capture.
            self.note = f"no CUDA graph: capture failed at run time ({ort_reason(e)})"
            self.bind(self.reopen(), capture=False)
            self.session.run_with_iobinding(self.bindings[self.parity], self.options[self.parity])

    def upload(self, src: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        """Copy ``src`` and the extra inputs by name (BGM's ``bgr``/``seg``) into their buffers."""
        for name, value in {"src": src, **(extra or {})}.items():
            self.copies.upload(self.values[name], value)

    def download(self) -> dict[str, np.ndarray]:
        """The returned outputs as host arrays (the copier's buffers: copy before keeping)."""
        return {name: self.copies.download(self.values[name]) for name in self.returned}

    def run(self, src: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """One frame from the host (``extra``: the other caller-fed inputs by name): copy in, run,
        swap states, copy out (float32 copies)."""
        self.upload(src, extra)
        self.execute()
        self.swap()
        return {k: v.astype(np.float32, copy=True) for k, v in self.download().items()}

    def swap(self) -> None:
        if self.states:
            self.parity ^= 1

    def device_inputs(self) -> dict[str, Any]:
        """The fixed device buffers a caller may fill in place (``src``; states excluded)."""
        return {name: value for name, value in self.values.items() if name in self.input_shapes}

    def run_device(self, src: Any | None = None) -> dict[str, Any]:
        """Run on device-resident data: ``src`` (an OrtValue on the same device, copied device to
        device) or whatever the caller wrote into :meth:`device_inputs`; returns the output
        OrtValues on the device, valid until the next run."""
        if src is not None:
            self.values["src"].update_inplace(src)
        self.execute()
        self.swap()
        return {name: self.values[name] for name in self.returned}

    def bare_call(self, src: np.ndarray,
                  extra: dict[str, np.ndarray] | None = None) -> Callable[[], list[np.ndarray]]:
        """What a minimal caller of the binding writes: copy in, bound call, the outputs back as
        arrays it owns (as ``session.run`` returns); no state swap, no dict, no checks."""
        def call() -> list[np.ndarray]:
            self.upload(src, extra)
            self.execute()
            return [self.copies.download(self.values[name]).copy() for name in self.returned]
        return call

    # -------------------------------------------------------------- state

    def state(self) -> dict[str, np.ndarray]:
        """Host copies of what the next run reads, by state input name."""
        return {s.input: np.array(self.copies.download(self.bufs[s.input][self.parity]),
                                  dtype=np.float32) for s in self.states}

    def reset(self) -> None:
        """Zero every state buffer in place (captured graphs keep their addresses)."""
        for pair in self.bufs.values():
            for value in pair:
                self.copies.zero(value)
        self.parity = 0

    def close(self) -> None:
        self.bindings, self.values, self.bufs = [], {}, {}
        self.session = None
        self.copies.close()
