"""Calibrated ranges cached inside the bundle, keyed by everything that determines them.

Key: model sha256, data fingerprint, method, --num, --seed, warm-up frames, held-out count and
the recipe's calibration settings. Stored as ``BUNDLE/.calib-cache/<key>.json``; a second
identical run reuses the ranges instead of calibrating again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..fileio import write_json

CACHE_DIR = ".calib-cache"


def cache_key(**parts: Any) -> str:
    """Stable short key for the given (JSON-serialisable) parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cache_path(bundle_root: Path, key: str) -> Path:
    return Path(bundle_root) / CACHE_DIR / f"{key}.json"


def load(bundle_root: Path, key: str) -> dict | None:
    """The cached entry, or None when absent or unreadable (then calibration simply reruns)."""
    path = cache_path(bundle_root, key)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or "ranges" not in entry:
        return None
    entry["ranges"] = {k: (float(v[0]), float(v[1])) for k, v in entry["ranges"].items()}
    return entry


def store(bundle_root: Path, key: str, entry: dict) -> Path:
    path = cache_path(bundle_root, key)
    write_json(path, entry)
    return path
