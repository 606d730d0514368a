"""The one progress bar: live on a terminal, silent in a log file.

On a terminal the bar updates in place and disappears when done; the caller then prints one
summary line (count, time), so a log shows each step once, with one rate. Off a terminal (a CI log,
a pipe) the bar prints nothing at all (tqdm's ``disable=None``).
"""

from __future__ import annotations

import sys
from typing import Any


def bar(total: int | None, desc: str, unit: str = "img", enabled: bool = True) -> Any:
    """A tqdm bar on stderr (``update``/``close``), shown only when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None if enabled else True)
