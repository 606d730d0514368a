"""TensorRT's text calibration cache (implicit INT8, e.g. TensorRT 8.x/10.x on Jetson).

Layout, as TensorRT's own calibrators write it::

    TRT-8601-EntropyCalibration2
    src: 3c010204
    input.1: 3d8f5c29

The header names the TensorRT version (8601 = 8.6.1) and the calibrator; each following line is
``tensor name: scale``, the scale being the big-endian IEEE-754 float32 bits in hex, and
``scale = amax / 127`` (symmetric INT8). Tensor names are the ONNX value names TensorRT's ONNX
parser gives the network tensors. TensorRT keeps tensors without a line in FP16/FP32.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MattingDeployError, first_line

DEFAULT_TRT_VERSION = "8.6.1"  # calibrate's default target: TensorRT 8.6 GA (desktop, JetPack 6.0 has 8.6.2)
DEFAULT_ALGORITHM = "EntropyCalibration2"


def parse_version(text: str) -> tuple[int, int, int]:
    """'8.5.2' / '10.3' / '10.3.0.26' (a TensorRT version) -> (major, minor, patch)."""
    parts = str(text).strip().split(".")
    try:
        nums = [int(p) for p in parts[:3]]
    except ValueError:
        raise MattingDeployError(f"'{text}' is not a TensorRT version (expected e.g. 8.6.1 or 10.3.0)") from None
    return tuple((nums + [0, 0])[:3])  # type: ignore[return-value]


def cache_version_code(version: tuple[int, int, int]) -> int:
    """TensorRT's NV_TENSORRT_VERSION, written in the header: 8.x major*1000+minor*100+patch
    (8.5.2 -> 8502), >= 10 major*10000+minor*100+patch (10.3.0 -> 100300)."""
    major, minor, patch = version
    if major <= 8:
        return major * 1000 + minor * 100 + patch
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    raise MattingDeployError(f"TensorRT {major}.x calibration cache headers are not known here")


DEFAULT_VERSION = cache_version_code((8, 6, 1))


def scale_hex(scale: float) -> str:
    """float32 scale -> 8 hex digits of its big-endian bits (1/127 -> '3c010204')."""
    return struct.pack(">f", float(scale)).hex()


def hex_scale(text: str) -> float:
    try:
        return struct.unpack(">f", bytes.fromhex(text.strip().zfill(8)))[0]
    except ValueError:
        raise MattingDeployError(f"calibration cache: '{text}' is not a hex float32") from None


def format_cache(
    scales: dict[str, float], version: int = DEFAULT_VERSION, algorithm: str = DEFAULT_ALGORITHM
) -> str:
    """The cache text for ``{tensor name: scale}`` (written in the given order)."""
    lines = [f"TRT-{version}-{algorithm}"]
    for name, scale in scales.items():
        if not scale > 0:
            raise MattingDeployError(f"calibration cache: tensor '{name}' has scale {scale}")
        lines.append(f"{name}: {scale_hex(scale)}")
    return "\n".join(lines) + "\n"


def with_version(text: str, version: int) -> str:
    """The cache text with its header naming TensorRT ``version`` (the calibrator kept): what a
    TensorRT of that version reads instead of skipping the file."""
    header, scales = parse_cache(text)
    return format_cache(scales, version, header.split("-")[-1])


def parse_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, {tensor name: scale}) from cache text. Names may contain ':' (split at the last)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise MattingDeployError("calibration cache: missing 'TRT-<version>-<calibrator>' header")
    scales = {}
    for ln in lines[1:]:
        name, sep, value = ln.rpartition(":")
        if not sep or not name:
            raise MattingDeployError(f"calibration cache: bad line '{ln}'")
        scales[name.strip()] = hex_scale(value)
    return lines[0], scales


def _tensorrt_info(root: str | os.PathLike) -> dict:
    """calib.json's ``tensorrt`` section ({} when calib.json or the section is absent)."""
    import json

    from .layout import CALIB_JSON

    path = Path(root) / CALIB_JSON
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MattingDeployError(f"{path}: unreadable ({first_line(e)})") from None
    section = info.get("tensorrt") if isinstance(info, dict) else None
    return section if isinstance(section, dict) else {}


def int8_convs(root: str | os.PathLike) -> set[str] | None:
    """The Convs that run INT8 with this cache, as calibrate lists them in calib.json (the layers
    `build` leaves free to run INT8); None when calib.json or its list is absent."""
    layers = _tensorrt_info(root).get("int8_convs")
    return None if layers is None else set(layers)


def int8_outputs(root: str | os.PathLike) -> dict[str, str] | None:
    """{INT8 Conv (:func:`int8_convs`): the tensor its fused activation writes, from calib.json's
    ``conv_sides``}; None when either is absent or a listed Conv has no sides."""
    info = _tensorrt_info(root)
    convs, sides = info.get("int8_convs"), info.get("conv_sides") or {}
    if convs is None or any(not isinstance(sides.get(c), dict) or "output" not in sides[c] for c in convs):
        return None
    return {conv: sides[conv]["output"] for conv in convs}


@dataclass
class CalibCache:
    """A parsed cache file: header, algorithm, per-tensor float32 scales and the raw bytes."""

    header: str
    algorithm: str
    scales: dict[str, float] = field(default_factory=dict)
    blob: bytes = b""


def read_cache(path: str | os.PathLike) -> CalibCache:
    """Read a calib.cache file, naming the file on error."""
    path = Path(path)
    try:
        blob = path.read_bytes()
        header, scales = parse_cache(blob.decode("ascii"))
    except (OSError, UnicodeDecodeError) as e:
        raise MattingDeployError(f"{path}: unreadable calibration cache ({first_line(e)})") from None
    except MattingDeployError as e:
        raise MattingDeployError(f"{path}: {e}") from None
    if not scales:
        raise MattingDeployError(f"{path}: calibration cache holds no scales")
    return CalibCache(header, header.split("-")[-1], scales, blob)
