"""``bench --anchor torch``: the bundle's network in PyTorch on the runner's device, timed beside it.

On CUDA the anchor is a CUDA graph (``torch.cuda.CUDAGraph``) of the network with the recurrent
states copied back inside the graph, cuDNN autotuning on, and the host I/O the runner has: the
numpy ``src`` through a pinned buffer in, ``pha``/``fgr`` into pinned buffers out
(:attr:`Anchor.host_call`); :attr:`Anchor.device_call` is the replay alone. Background Matting
gets its plate and mask (``bgr``, ``seg``) the same way as ``src``, as its runner does. On CPU it is plain
eager PyTorch (``torch.no_grad``), labelled so. FP16 artifacts get an FP16 network on CUDA (FP32
I/O, cast inside the graph, as the FP16 ONNX has); INT8 and FP32 artifacts an FP32 one.

Weights: the checkpoint the bundle was exported from when its manifest names one that exists,
else random weights of the same architecture (``--from-onnx`` bundles): speed only.
PyTorch is optional: imported on first use with a one-line error when missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..data.preprocess import extra_inputs
from ..errors import MattingDeployError
from ..models.specs import RVM_STATE_CHANNELS, rvm_state_shapes
from ..optional import require

ANCHORS = ("torch",)


@dataclass
class Anchor:
    label: str
    host_call: Callable[[], Any]  # numpy inputs in, host outputs out (the runner's I/O)
    device_call: Callable[[], Any] | None = None  # the network alone on device buffers
    close: Callable[[], None] = lambda: None


def require_anchor(bundle: Bundle) -> Any:
    """The ``torch`` module for the anchor of ``bundle``, or a one-line error: a bundle that is not one
    of this project's networks is refused first (installing PyTorch would not help it)."""
    source, variant = bundle.manifest.get("source"), bundle.manifest.get("variant")
    if not (source == "pytorch" or (isinstance(source, dict) and "onnx" in source)):
        raise MattingDeployError(f"--anchor torch: {bundle.root}: not exported from this project's "
                                 f"networks (source {source!r}): no PyTorch twin to time")
    if bundle.model == "rvm":
        channels = tuple(s.shape[1] for s in bundle.states if s.shape is not None)
        if channels != RVM_STATE_CHANNELS.get(variant):
            raise MattingDeployError(f"--anchor torch: {bundle.root}: RVM variant {variant!r} "
                                     f"with state channels {channels} is not one of ours")
    return require("torch", "--anchor torch")


def _network(bundle: Bundle) -> tuple[Any, str]:
    """The PyTorch module behind the bundle's ONNX contract and where its weights come from."""
    from ..export.torch_export import build_network, wrap

    variant = bundle.manifest.get("variant")
    weights = bundle.manifest.get("weights")
    if weights and not Path(weights).is_file():
        weights = None
    net = build_network(bundle.model, variant, weights)
    graph = wrap(bundle.model, net, bundle.downsample_ratio or 1.0, dynamic=False)
    return graph, ("bundle weights" if weights else "random weights: speed only")


def _state_shapes(bundle: Bundle, src: np.ndarray) -> list[tuple[int, ...]]:
    if bundle.model != "rvm":
        return []
    if all(s.shape is not None for s in bundle.states) and not bundle.dynamic:
        return [tuple(s.shape) for s in bundle.states]
    channels = RVM_STATE_CHANNELS.get(bundle.manifest.get("variant") or "mobilenetv3")
    n, _, h, w = src.shape
    return rvm_state_shapes(channels, h, w, bundle.downsample_ratio or 1.0, n)


def torch_anchor(bundle: Bundle, artifact: str, backend: str, src: np.ndarray,
                 threads: int = 0, extra: dict[str, np.ndarray] | None = None) -> Anchor:
    """The anchor for ``artifact`` of ``bundle`` on the device of ``backend`` (cpu: eager);
    ``extra``: the inputs after ``src`` (BGM's ``bgr`` and ``seg``), by name."""
    torch = require_anchor(bundle)
    graph, weights = _network(bundle)
    inputs = [src, *_extra_inputs(bundle, extra or {})]
    shapes = _state_shapes(bundle, src)
    if backend == "cpu":
        if threads:
            torch.set_num_threads(threads)
        return _eager_cpu(torch, graph, inputs, shapes, f"torch {torch.__version__} eager cpu fp32 "
                                                        f"({weights})")
    if not torch.cuda.is_available():
        raise MattingDeployError(f"--anchor torch: backend '{backend}' needs PyTorch with CUDA "
                                 f"and a GPU (this torch {torch.__version__} sees none)")
    half = artifact.endswith("fp16")
    label = (f"torch {torch.__version__} CUDA graph {'fp16' if half else 'fp32'}, pinned host I/O "
             f"({weights})")
    return _cuda_graph(torch, graph, inputs, shapes, half, label)


def _extra_inputs(bundle: Bundle, extra: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The inputs after ``src`` in the network's argument order (BGM: ``bgr``, ``seg``)."""
    names = extra_inputs(bundle.model)
    missing = [n for n in names if n not in extra]
    if missing:
        raise MattingDeployError(f"--anchor torch: {bundle.root}: the network needs input(s) "
                                 f"{', '.join(missing)} beside src")
    return [extra[n] for n in names]


def _outputs(outs: Any, states: list) -> tuple[list, list]:
    """(matte outputs as the runner returns them, new recurrent states) of one forward."""
    if states:
        fgr, pha, *new = outs
        return [pha, fgr], new
    return (list(outs) if isinstance(outs, tuple) else [outs]), []


def _eager_cpu(torch: Any, graph: Any, inputs: list[np.ndarray], shapes: list,
               label: str) -> Anchor:
    graph = graph.eval()
    states = [torch.zeros(s) for s in shapes]

    def call() -> list[np.ndarray]:
        with torch.no_grad():
            outs, new = _outputs(graph(*(torch.from_numpy(x) for x in inputs), *states), states)
            states[:] = new
            return [o.numpy() for o in outs]

    return Anchor(label, call)


def _cuda_graph(torch: Any, graph: Any, inputs: list[np.ndarray], shapes: list, half: bool,
                label: str) -> Anchor:
    dev, dtype = torch.device("cuda"), (torch.float16 if half else torch.float32)
    benchmark_before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as cuDNN EXHAUSTIVE search on the runner's side
    net = graph.eval().to(dev, dtype)
    static_in = [torch.zeros(x.shape, device=dev) for x in inputs]
    states = [torch.zeros(s, device=dev, dtype=dtype) for s in shapes]

    def step() -> list:
        outs, new = _outputs(net(*(x.to(dtype) for x in static_in), *states), states)
        for old, cur in zip(states, new, strict=True):  # the state update is part of the graph
            old.copy_(cur)
        return [o.float() for o in outs]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):  # warm-up (cuDNN autotuning) off the capture
            step()
    torch.cuda.current_stream().wait_stream(side)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(cuda_graph):
        outs = step()
    pinned_in = [torch.empty(x.shape, dtype=torch.float32, pin_memory=True) for x in inputs]
    pinned_outs = [torch.empty(o.shape, dtype=o.dtype, pin_memory=True) for o in outs]
    stream = torch.cuda.current_stream()

    def host_call() -> list[np.ndarray]:
        for host, dev_in, x in zip(pinned_in, static_in, inputs, strict=True):
            np.copyto(host.numpy(), x)
            dev_in.copy_(host, non_blocking=True)
        cuda_graph.replay()
        for host, out in zip(pinned_outs, outs, strict=True):
            host.copy_(out, non_blocking=True)
        stream.synchronize()
        return [h.numpy() for h in pinned_outs]

    def device_call() -> None:
        cuda_graph.replay()
        stream.synchronize()

    def close() -> None:
        torch.backends.cudnn.benchmark = benchmark_before

    return Anchor(label, host_call, device_call, close)


def make_anchor(kind: str | None, bundle: Bundle, artifact: str, backend: str, src: np.ndarray,
                threads: int = 0, extra: dict[str, np.ndarray] | None = None) -> Anchor | None:
    """The anchor named ``kind`` (None: no anchor); ``extra`` as :func:`torch_anchor`."""
    if kind is None:
        return None
    if kind not in ANCHORS:
        raise MattingDeployError(f"--anchor: unknown anchor '{kind}' (choose {', '.join(ANCHORS)})")
    return torch_anchor(bundle, artifact, backend, src, threads, extra)
