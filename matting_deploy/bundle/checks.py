"""Field-by-field check of ``manifest.json``: every field a command relies on, with its type and
range, so a damaged or hand-edited manifest is one ``error:`` line, not a crash later."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ..errors import MattingDeployError
from ..models.specs import MODELS, OUTPUT_CHANNELS
from .layout import BUNDLE_FORMAT, OPENVINO

ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")  # also a safe file-name part
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_SIDE = 16384  # largest input side or tensor dimension accepted
MAX_ELEMENTS = 1 << 28  # largest state tensor (1 GiB of float32)


class _Fields:
    def __init__(self, path: Path):
        self.path = path

    def bad(self, field: str, want: str, got: Any) -> None:
        shown = repr(got)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise MattingDeployError(f"{self.path}: manifest field '{field}' must be {want}, got {shown}")

    def of(self, obj: dict, key: str, kind: type | tuple, field: str, want: str,
           optional: bool = False) -> Any:
        if key not in obj:
            if optional:
                return None
            raise MattingDeployError(f"{self.path}: manifest lacks '{field}'")
        value = obj[key]
        if optional and value is None:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.bad(field, want, value)
        return value

    def dims(self, shape: Any, field: str) -> None:
        ok = isinstance(shape, list) and 1 <= len(shape) <= 6 and all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_SIDE for d in shape)
        if not ok or math.prod(shape) > MAX_ELEMENTS:
            self.bad(field, f"a list of 1-6 sizes in 1..{MAX_SIDE} (at most {MAX_ELEMENTS} "
                     "elements)", shape)


def _check_io(f: _Fields, manifest: dict) -> None:
    for key in ("inputs", "outputs"):
        entries = f.of(manifest, key, list, key, "a list", optional=True) or []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                f.bad(f"{key}[{i}]", "an object with a 'name'", entry)
            shape = entry.get("shape")
            if shape is not None and not isinstance(shape, list):
                f.bad(f"{key}[{i}].shape", "a list", shape)
            want = OUTPUT_CHANNELS.get(entry["name"]) if key == "outputs" else None
            if want and shape and len(shape) == 4 and isinstance(shape[1], int) and shape[1] != want:
                f.bad(f"outputs[{i}].shape", f"(N, {want}, H, W) for '{entry['name']}' (the model "
                      "contract)", shape)


def check_manifest(manifest: Any, path: Path) -> None:
    """Raise MattingDeployError naming the first field of the wrong type or out of range."""
    f = _Fields(path)
    if not isinstance(manifest, dict):
        f.bad("(top level)", "an object", type(manifest).__name__)
    fmt = f.of(manifest, "format", int, "format", "an integer", optional=True)
    if fmt is not None and fmt > BUNDLE_FORMAT:
        raise MattingDeployError(f"{path}: bundle format {fmt} is newer than this matting-deploy "
                                 f"reads ({BUNDLE_FORMAT}); upgrade matting-deploy")
    model = f.of(manifest, "model", str, "model", "a string")
    if model not in MODELS:
        f.bad("model", " or ".join(MODELS), model)
    inp = f.of(manifest, "input", dict, "input", "an object")
    for key in ("height", "width"):
        side = f.of(inp, key, int, f"input.{key}", f"an integer in 1..{MAX_SIDE}")
        if not 1 <= side <= MAX_SIDE:
            f.bad(f"input.{key}", f"an integer in 1..{MAX_SIDE}", side)
    f.of(inp, "dynamic", bool, "input.dynamic", "true or false", optional=True)
    ratio = f.of(inp, "downsample_ratio", (int, float), "input.downsample_ratio",
                 "a number in (0, 1]", optional=True)
    if ratio is not None and not (math.isfinite(ratio) and 0 < ratio <= 1):
        f.bad("input.downsample_ratio", "a number in (0, 1]", ratio)
    files = f.of(manifest, "files", dict, "files", "an object")
    for name, entry in files.items():
        if not isinstance(entry, dict) or not SHA256.fullmatch(str(entry.get("sha256"))):
            f.bad(f"files.{name}", "an object with a 64-hex 'sha256'", entry)
    artifacts = f.of(manifest, "artifacts", dict, "artifacts", "an object")
    for name, file in artifacts.items():
        if not ARTIFACT_NAME.fullmatch(name):
            f.bad("artifacts", "names of letters, digits, '.', '_', '+', '-'", name)
        if not isinstance(file, str) or file not in files:
            f.bad(f"artifacts.{name}", "a file listed under 'files'", file)
    states = f.of(manifest, "states", list, "states", "a list", optional=True) or []
    for i, state in enumerate(states):
        if not isinstance(state, dict) or not all(isinstance(state.get(k), str)
                                                  for k in ("input", "output")):
            f.bad(f"states[{i}]", "an object with 'input' and 'output' names", state)
        if state.get("shape") is not None:
            f.dims(state["shape"], f"states[{i}].shape")
    _check_io(f, manifest)
    for key in ("engines", "calibration", "parity", OPENVINO):
        f.of(manifest, key, dict, key, "an object", optional=True)
    for name, entry in (manifest.get(OPENVINO) or {}).items():  # build --target openvino: IR per artifact
        if not isinstance(entry, dict) or any(entry.get(k) not in files for k in ("xml", "bin")):
            f.bad(f"{OPENVINO}.{name}", "an object whose 'xml' and 'bin' are listed under 'files'", entry)
