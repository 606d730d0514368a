"""MODNet's one-frame-delay (OFD) smoothing for video, as a filter and as a runner wrapper.

MODNet (Ke et al., AAAI 2022, Sec. 5) removes one-frame flicker with a one-frame delay: a pixel
whose alpha at frame t differs from both neighbours by more than a threshold, while the two
neighbours agree within it, takes the neighbours' mean. Frame t is therefore known only when frame
t+1 arrives; the first and last frames pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import MattingDeployError
from .base import Runner

DEFAULT_THRESHOLD = 0.1


def ofd_step(prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray,
             threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Frame ``cur`` smoothed by its neighbours (any equal shapes; returns a new float32 array)."""
    prev, cur, nxt = (np.asarray(a, dtype=np.float32) for a in (prev, cur, nxt))
    flicker = (
        (np.abs(prev - nxt) <= threshold)
        & (np.abs(cur - prev) > threshold)
        & (np.abs(cur - nxt) > threshold)
    )
    return np.where(flicker, 0.5 * (prev + nxt), cur).astype(np.float32)


class OneFrameDelay:
    """Streaming OFD: ``push(alpha_t)`` returns smoothed alpha_{t-1} (None for the first frame)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        if not 0.0 <= threshold <= 1.0:
            raise MattingDeployError(f"OFD threshold must be in [0, 1], got {threshold}")
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None  # alpha_{t-2} as it was predicted (not smoothed)
        self._cur: np.ndarray | None = None  # alpha_{t-1}, waiting for its successor

    def push(self, alpha: np.ndarray) -> np.ndarray | None:
        alpha = np.asarray(alpha, dtype=np.float32)
        out = None
        if self._cur is not None:
            out = self._cur if self._prev is None else ofd_step(
                self._prev, self._cur, alpha, self.threshold)
        self._prev, self._cur = self._cur, alpha
        return out

    def flush(self) -> np.ndarray | None:
        """The last frame (unchanged: it has no successor); the filter is then empty."""
        out = self._cur
        self.reset()
        return out


def smooth_sequence(alphas: Iterable[np.ndarray],
                    threshold: float = DEFAULT_THRESHOLD) -> Iterator[np.ndarray]:
    """OFD over a whole sequence; yields one smoothed alpha per input, in order."""
    ofd = OneFrameDelay(threshold)
    for alpha in alphas:
        out = ofd.push(alpha)
        if out is not None:
            yield out
    last = ofd.flush()
    if last is not None:
        yield last


class OfdRunner(Runner):
    """Wraps a runner: ``run(frame t)`` returns frame t-1's outputs with OFD-smoothed ``pha``.

    One frame of latency: the first ``run`` after ``reset`` returns ``{}``; ``flush()`` returns the
    last frame's outputs at the end of a sequence. Other outputs (``fgr``...) are delayed alike.
    """

    def __init__(self, runner: Any, threshold: float = DEFAULT_THRESHOLD):
        self.runner = runner
        self._ofd = OneFrameDelay(threshold)
        self._pending: dict[str, np.ndarray] | None = None

    def run(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        outs = {k: np.array(v, copy=True) for k, v in self.runner.run(src, **extra).items()}
        smoothed = self._ofd.push(outs["pha"])
        ready, self._pending = self._pending, outs
        if ready is None:
            return {}
        ready["pha"] = smoothed
        return ready

    def flush(self) -> dict[str, np.ndarray]:
        """The held-back last frame (``{}`` if none); the sequence ends here."""
        ready, self._pending = self._pending, None
        last = self._ofd.flush()
        if ready is None:
            return {}
        ready["pha"] = last
        return ready

    def reset(self) -> None:
        """Drop the held-back frame and reset the wrapped runner's recurrent state."""
        self._pending = None
        self._ofd.reset()
        self.runner.reset()

    def close(self) -> None:
        self._pending = None
        self.runner.close()

    @property
    def state_specs(self) -> list:
        return self.runner.state_specs

    def __getattr__(self, name: str) -> Any:  # bundle, backend, ... of the wrapped runner
        if name == "runner":
            raise AttributeError(name)
        return getattr(self.runner, name)
