"""The model bundle: a folder of artifacts described by ``manifest.json``.

``export`` creates it; ``calibrate``, ``build`` and ``validate`` add to it. Every file in the
bundle has an entry under ``files`` with its sha256.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MattingDeployError
from ..fileio import sha256_file, write_json
from .layout import MANIFEST, PRECISIONS, engine_path, precision_order

BUNDLE_FORMAT = 1


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state: input name, output name and its static shape (None if dynamic)."""

    input: str
    output: str
    shape: tuple[int, ...] | None


def new_manifest(
    model: str,
    *,
    height: int,
    width: int,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    states: list[StateSpec] = (),
    variant: str | None = None,
    source: Any = None,
    weights: str | None = None,
    dynamic: bool = False,
    downsample_ratio: float | None = None,
    opset: int = 17,
    **extra: Any,
) -> dict[str, Any]:
    """A new manifest (no files yet): the one place its layout is written down.

    ``inputs``/``outputs`` are ``{name, shape, dtype}`` entries; ``extra`` keys (versions, parity,
    ...) follow the fixed ones in the given order.
    """
    return {
        "format": BUNDLE_FORMAT,
        "model": model,
        "variant": variant,
        "source": source,
        "weights": weights,
        "input": {"height": height, "width": width, "dynamic": dynamic,
                  "downsample_ratio": downsample_ratio},
        "opset": opset,
        "inputs": inputs,
        "outputs": outputs,
        "states": [{"input": s.input, "output": s.output,
                    "shape": None if s.shape is None else list(s.shape)} for s in states],
        "files": {},
        "artifacts": {},
        **extra,
    }


class Bundle:
    """Read access to a bundle folder and atomic updates of its manifest."""

    def __init__(self, root: str | os.PathLike, manifest: dict[str, Any]):
        self.root = Path(root)
        self.manifest = manifest

    @classmethod
    def create(cls, root: str | os.PathLike, manifest: dict[str, Any]) -> Bundle:
        """A new bundle in ``root`` (made if missing) with ``manifest`` (see :func:`new_manifest`)."""
        Path(root).mkdir(parents=True, exist_ok=True)
        return cls(root, manifest)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Bundle:
        root = Path(root)
        path = root / MANIFEST
        if not root.is_dir():
            raise MattingDeployError(f"{root}: bundle folder does not exist")
        if not path.is_file():
            raise MattingDeployError(f"{path}: no manifest (make the bundle with 'matting-deploy export')")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise MattingDeployError(f"{path}: unreadable manifest ({e})") from None
        for key in ("model", "input", "artifacts", "files"):
            if key not in manifest:
                raise MattingDeployError(f"{path}: manifest lacks '{key}'")
        return cls(root, manifest)

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def input_hw(self) -> tuple[int, int]:
        """The (height, width) every image is preprocessed to."""
        return int(self.manifest["input"]["height"]), int(self.manifest["input"]["width"])

    @property
    def downsample_ratio(self) -> float | None:
        """RVM's ratio (baked into static graphs, fed as an input to dynamic ones)."""
        return self.manifest["input"].get("downsample_ratio")

    @property
    def dynamic(self) -> bool:
        return bool(self.manifest["input"].get("dynamic", False))

    @property
    def states(self) -> list[StateSpec]:
        return [
            StateSpec(s["input"], s["output"], tuple(s["shape"]) if s.get("shape") else None)
            for s in self.manifest.get("states", [])
        ]

    @property
    def recurrent(self) -> bool:
        return bool(self.manifest.get("states"))

    @property
    def artifacts(self) -> dict[str, str]:
        """Artifact name (fp32, fp16, int8, trt-fp16, ...) -> file name in the bundle."""
        return dict(self.manifest["artifacts"])

    def onnx_artifacts(self) -> dict[str, str]:
        """The ONNX artifacts (name -> file), fp32, fp16, int8 first."""
        onnx = {k: v for k, v in self.artifacts.items() if v.endswith(".onnx")}
        return dict(sorted(onnx.items(), key=lambda kv: precision_order(kv[0])))

    def engine_path(self, precision: str) -> Path:
        """``model.<precision>.engine`` in this bundle (it may not exist)."""
        return engine_path(self.root, precision)

    def engines(self) -> list[str]:
        """Precisions whose engine file exists in the bundle folder."""
        return [p for p in PRECISIONS if self.engine_path(p).is_file()]

    def artifact_path(self, artifact: str) -> Path:
        """Path of an artifact, checked to exist and to match its recorded sha256."""
        files = self.artifacts
        if artifact not in files:
            raise MattingDeployError(
                f"{self.root}: bundle has no '{artifact}' artifact (has: {', '.join(files)})"
            )
        path = self.root / files[artifact]
        if not path.is_file():
            raise MattingDeployError(f"{path}: artifact file is missing")
        return path

    def verify(self, artifact: str) -> Path:
        """Like :meth:`artifact_path`, also checking the file's sha256 against the manifest."""
        path = self.artifact_path(artifact)
        want = self.manifest["files"].get(path.name, {}).get("sha256")
        if want and sha256_file(path) != want:
            raise MattingDeployError(f"{path}: sha256 differs from manifest.json (file changed?)")
        return path

    def add_file(self, name: str, artifact: str | None = None, **info: Any) -> None:
        """Record a file (already in the bundle folder) with its sha256; does not save."""
        entry = {"sha256": sha256_file(self.root / name), **info}
        self.manifest["files"][name] = entry
        if artifact is not None:
            self.manifest["artifacts"][artifact] = name

    def save(self) -> None:
        """Write the manifest atomically."""
        write_json(self.root / MANIFEST, self.manifest)
