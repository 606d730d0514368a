"""Calibrated ranges cached inside the bundle, keyed by everything that determines them.

Key: model sha256, data fingerprint, method, the names of the images actually calibrated on (not
``--num``/``--seed``, which only choose them: the histograms do not depend on image order), warm-up
frames, held-out count and the recipe's calibration settings. Stored as ``BUNDLE/.calib-cache/<key>.json``; a second
identical run reuses the ranges instead of calibrating again, after checking every field (a
damaged or poisoned entry -- NaN, min > max, absurd magnitudes, wrong types, unknown tensors -- is
set aside with a note and the ranges are computed again).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..fileio import write_json
from .layout import RANGES_CACHE_DIR

CACHE_DIR = RANGES_CACHE_DIR
MAX_ABS_RANGE = 1e6  # no activation of these networks comes near; larger is a damaged entry


def cache_key(**parts: Any) -> str:
    """Stable short key for the given (JSON-serialisable) parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def image_key(items: Iterable[Any]) -> str:
    """Order-free key of the calibration images used (items with a ``name``): ``--num 100`` on a
    16-image folder and ``--num 16`` use the same images, so they share the cached ranges."""
    return hashlib.sha256("\0".join(sorted(it.name for it in items)).encode()).hexdigest()[:24]


def cache_path(bundle_root: Path, key: str) -> Path:
    return Path(bundle_root) / CACHE_DIR / f"{key}.json"


def entry_name(key: str) -> str:
    """The entry's path relative to the bundle root."""
    return f"{CACHE_DIR}/{key}.json"


def problem(entry: object, tensors: set[str]) -> str | None:
    """Why ``entry`` cannot be reused for ``tensors`` (None if it can)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("ranges"), dict) or not entry["ranges"]:
        return "no 'ranges' object"
    for name, value in entry["ranges"].items():
        if name not in tensors:
            return f"tensor '{name}' is not one this model calibrates"
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            return f"range of '{name}' is not [min, max]"
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or max(-lo, hi) > MAX_ABS_RANGE:
            return f"range of '{name}' is {value} (needs finite min <= max within +-{MAX_ABS_RANGE:g})"
    lists = {k: entry.get(k, []) for k in ("images", "skipped")}
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists.values()):
        return "'images'/'skipped' are not lists of names"
    if not isinstance(entry.get("sources", {}), dict) or not isinstance(entry.get("seconds", 0), (int, float)):
        return "'sources'/'seconds' have the wrong type"
    return None


def load(bundle_root: Path, key: str, tensors: set[str],
         note: Callable[[str], None] = lambda _: None) -> dict | None:
    """The cached entry, or None when absent, unreadable or failing :func:`problem` (then
    calibration simply reruns; ``note`` says why an existing entry was set aside)."""
    path = cache_path(bundle_root, key)
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        note(f"{path}: unreadable cached ranges ({type(e).__name__}); calibrating again")
        return None
    why = problem(entry, tensors)
    if why is not None:
        note(f"{path}: cached ranges rejected ({why}); calibrating again")
        return None
    entry["ranges"] = {k: (float(v[0]), float(v[1])) for k, v in entry["ranges"].items()}
    return entry


def store(bundle_root: Path, key: str, entry: dict) -> Path:
    path = cache_path(bundle_root, key)
    write_json(path, entry)
    return path
