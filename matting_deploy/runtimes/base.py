"""The runner protocol every backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    """A loaded artifact. Recurrent runners keep their state between ``run`` calls."""

    def run(self, src: np.ndarray) -> dict[str, np.ndarray]:
        """Run one frame batch ``src`` (N, 3, H, W) float32 in [0, 1]; returns at least ``pha``."""
        ...

    def reset(self) -> None:
        """Set recurrent state back to zeros (no-op for stateless models)."""
        ...

    def close(self) -> None:
        """Release the engine."""
        ...
