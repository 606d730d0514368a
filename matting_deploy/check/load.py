"""A bundle's inputs to the rules: its ONNX artifacts, calib.cache and the INT8 layer list, each file
checked against the manifest's sha256 (the cache parsed by :mod:`matting_deploy.bundle.trt_cache`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..bundle import CALIB_JSON, TRT_CACHE_FILE, Bundle
from ..bundle.trt_cache import int8_convs, read_cache
from ..errors import MattingDeployError, first_line
from ..fileio import sha256_file
from .report import ARTIFACT_FILES, CheckReport, check_bundle


@dataclass
class BundleInputs:
    """What :func:`~.report.check_bundle` reads from one bundle."""

    root: Path
    artifacts: dict[str, onnx.ModelProto] = field(default_factory=dict)
    cache: tuple[str, dict[str, float]] | None = None
    state_inputs: list[str] = field(default_factory=list)
    int8_layers: set[str] | None = None  # calib.json: the Convs an implicit build lets run INT8


def _checked(bundle: Bundle, name: str) -> Path:
    path = bundle.root / name
    want = bundle.manifest.get("files", {}).get(name, {}).get("sha256")
    if want and sha256_file(path) != want:
        raise MattingDeployError(f"{path}: sha256 differs from manifest.json (file changed?)")
    return path


def load_model(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises several types
        raise MattingDeployError(f"{path}: not a readable ONNX model ({first_line(e)})") from None


def load_inputs(bundle_dir: str | os.PathLike, names: list[str] | None = None) -> BundleInputs:
    """The ONNX artifacts (all TensorRT-relevant ones, or ``names``) and calib.cache of a bundle."""
    bundle = Bundle.open(bundle_dir)
    wanted = [n for n in bundle.onnx_artifacts() if n in ARTIFACT_FILES] if names is None else names
    out = BundleInputs(bundle.root, state_inputs=[s.input for s in bundle.states])
    for name in wanted:
        if name in bundle.artifacts:
            out.artifacts[name] = load_model(bundle.verify(name))
    cache_path = bundle.root / TRT_CACHE_FILE
    if cache_path.is_file():
        cache = read_cache(_checked(bundle, TRT_CACHE_FILE))
        out.cache = (cache.header, cache.scales)
        if (bundle.root / CALIB_JSON).is_file():
            _checked(bundle, CALIB_JSON)
        out.int8_layers = int8_convs(bundle.root)
    if not out.artifacts:
        raise MattingDeployError(f"{bundle.root}: no ONNX artifact to check")
    return out


def calibrated_version(bundle_dir: str | os.PathLike) -> str | None:
    """The TensorRT version calib.cache was headed for (calib.json ``tensorrt.cache_version``, what
    ``calibrate --trt-version`` chose); None when the bundle is not calibrated for TensorRT."""
    path = Path(bundle_dir) / CALIB_JSON
    try:
        info = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as e:
        raise MattingDeployError(f"{path}: unreadable ({first_line(e)})") from None
    section = info.get("tensorrt") if isinstance(info, dict) else None
    version = section.get("cache_version") if isinstance(section, dict) else None
    return version if isinstance(version, str) and version else None


def check_bundle_dir(bundle_dir: str | os.PathLike, target: str, trt_version: str | None = None) -> CheckReport:
    """:func:`~.report.check_bundle` on a bundle folder."""
    inputs = load_inputs(bundle_dir)
    return check_bundle(inputs.artifacts, target, trt_version=trt_version, cache=inputs.cache,
                        state_inputs=inputs.state_inputs, int8_layers=inputs.int8_layers)
