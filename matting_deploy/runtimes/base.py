"""The runner base every backend implements, with the few hooks callers need.

``with open_runner(bundle, "int8", "cpu") as r: r.run(src)`` runs frames and closes the engine
at the end. Models with extra inputs (Background Matting: the plate ``bgr`` and the mask ``seg``)
take them by name: ``r.run(src, bgr=plate, seg=mask)``; a missing one is a one-line error.
Beyond ``run``/``reset``/``close`` a runner may offer:

- :meth:`Runner.model_inputs`: the complete input dict the engine gets for ``src`` (states
  included), e.g. a calibration sample;
- :meth:`Runner.run_inputs`: the engine on such a dict, outputs by name, state untouched;
- :meth:`Runner.bare_call`: the engine call with only the host copies a minimal caller makes
  (the bench's baseline for the runner's overhead);
- :meth:`Runner.device_call`: the engine alone on device-resident buffers (no host copies);
- :attr:`Runner.capture_note`: one line on how the engine is driven (binding, CUDA graph and why
  not), or None;
- :meth:`Runner.cached_engine`: a context in which the engine returns cached outputs, so that
  timing ``run`` measures the runner's own cost.

Backends without one raise :class:`NotImplementedError` (or return None where noted).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from ..errors import MattingDeployError


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


def caller_feed(runner: Runner, src: np.ndarray, extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``src`` (checked, contiguous float32) and the caller's extra inputs (checked against
    ``runner.extra_names``): the part of a feed every ONNX-graph runner takes from its caller."""
    src = np.ascontiguousarray(src, dtype=np.float32)
    if src.ndim != 4 or src.shape[1] != 3:
        raise MattingDeployError(f"src must be (N, 3, H, W), got {src.shape}")
    feed = {"src": src}
    if extra or runner.extra_names:
        runner.check_extra(runner.extra_names, extra, runner.path)
        feed.update(extra_feed(src, extra))
    return feed


def zero_state(runner: Runner, index: int, src: np.ndarray) -> np.ndarray:
    """The zero state ``runner.state_specs[index]`` starts from for a ``src`` batch: its static shape,
    [N,1,1,1] where the graph broadcasts (the official release), or RVM's shapes for a dynamic graph."""
    from ..models.specs import rvm_state_shapes

    spec = runner.state_specs[index]
    if spec.shape is None:  # graphs like the official release broadcast a [N,1,1,1] state
        return np.zeros((src.shape[0], 1, 1, 1), np.float32)
    if not runner.dynamic:
        return np.zeros(spec.shape, np.float32)
    channels = tuple(s.shape[1] for s in runner.state_specs)
    n, _, h, w = src.shape
    return np.zeros(rvm_state_shapes(channels, h, w, runner.downsample_ratio or 1.0, n)[index], np.float32)


class Runner:
    """A loaded artifact. Recurrent runners keep their state between ``run`` calls."""

    state_specs: list = []  # StateSpec per recurrent state the runner carries
    capture_note: str | None = None

    def run(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        """Run one frame batch ``src`` (N, 3, H, W) float32 in [0, 1] (plus the model's extra
        inputs by name, e.g. ``bgr``/``seg``); returns at least ``pha``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Set recurrent state back to zeros (no-op for stateless models)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine."""
        raise NotImplementedError

    @property
    def recurrent(self) -> bool:
        """True when the runner carries state from one ``run`` to the next."""
        return bool(self.state_specs)

    def model_inputs(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        """The full input dict for ``src`` with the current state (what ``run`` passes in)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its input dict")

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The engine on a full input dict; outputs by name; the runner's state is untouched."""
        raise NotImplementedError(f"{type(self).__name__} cannot run an input dict")

    def bare_call(self, src: np.ndarray, **extra: np.ndarray) -> Callable[[], Any] | None:
        """A callable doing the engine call for ``src`` (and the extra inputs) with the same host
        I/O as ``run`` (outputs back as arrays the caller owns) but no state bookkeeping, checks or
        dict; None if none."""
        return None

    def device_call(self, src: np.ndarray, **extra: np.ndarray) -> Callable[[], Any] | None:
        """A callable doing only the engine call on device-resident buffers holding ``src`` (and
        the extra inputs; no host copies); None where the backend has no device buffers."""
        return None

    def cached_engine(self, src: np.ndarray, **extra: np.ndarray) -> AbstractContextManager | None:
        """A context in which the engine returns the outputs of one real run on ``src`` instantly
        (state is reset on exit); None when the backend cannot do that."""
        return None

    @staticmethod
    def check_extra(expected: list[str], extra: dict[str, np.ndarray], where: object) -> None:
        """One-line errors for a missing or unknown extra input (``expected``: names besides src)."""
        unknown = sorted(set(extra) - set(expected))
        if unknown:
            raise MattingDeployError(f"{where}: the model has no input '{unknown[0]}' "
                                     f"(inputs: {', '.join(['src', *expected])})")
        missing = [n for n in expected if extra.get(n) is None]
        if missing:
            what = {"bgr": "the clean background plate", "seg": "the soft person mask"}
            raise MattingDeployError(
                f"{where}: input '{missing[0]}' ({what.get(missing[0], 'an extra input')}) is "
                f"missing: call run(src, {', '.join(f'{n}=...' for n in expected)})")

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
