"""The model bundle: a folder of artifacts described by ``manifest.json``.

``export`` creates it; ``calibrate``, ``build`` and ``validate`` add to it. Every file in the
bundle has an entry under ``files`` with its sha256. Opening a bundle checks every manifest field
it relies on (:func:`check_manifest`); every file it names must resolve inside the bundle and
match its recorded sha256 (:meth:`Bundle.file_path`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MattingDeployError
from ..fileio import sha256_file, write_json
from .checks import check_manifest
from .commit import inside, recover
from .layout import BUNDLE_FORMAT, MANIFEST, OPENVINO, OPENVINO_QDQ, PRECISIONS, engine_path, precision_order


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
    def open(cls, root: str | os.PathLike, log: Callable[[str], None] | None = None) -> Bundle:
        """Open and check a bundle (a commit an interrupted run left half-done is finished first)."""
        root = Path(root)
        path = root / MANIFEST
        if not root.is_dir():
            raise MattingDeployError(f"{root}: bundle folder does not exist")
        recover(root, log)
        if not path.is_file():
            raise MattingDeployError(f"{path}: no manifest (make the bundle with 'matting-deploy export')")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise MattingDeployError(f"{path}: unreadable manifest ({e})") from None
        check_manifest(manifest, path)
        bundle = cls(root, manifest)
        for name in manifest["files"]:
            inside(root, name)
        return bundle

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

    def openvino_ir(self, artifact: str) -> tuple[Path, Path] | None:
        """The OpenVINO IR (``.xml``, ``.bin``) ``build --target openvino`` made of ``artifact``,
        sha256-checked; None when there is none, or it is stale: its ONNX source changed since, or it
        was converted before activation Q/DQ were rewritten for OpenVINO (no ``qdq`` entry)."""
        entry = self.manifest.get(OPENVINO, {}).get(artifact)
        if not isinstance(entry, dict) or entry.get("qdq") != OPENVINO_QDQ:
            return None
        source = self.manifest["files"].get(entry.get("source"), {})
        if source and source.get("sha256") != entry.get("source_sha256"):
            return None  # the ONNX file was rewritten (e.g. a new calibration): the IR is stale
        return self.file_path(entry["xml"]), self.file_path(entry["bin"])

    def has_file(self, name: str) -> bool:
        """Whether the manifest lists ``name`` (committed by a stage)."""
        return name in self.manifest["files"]

    def file_path(self, name: str, check_sha: bool = True) -> Path:
        """Path of a file the manifest lists: inside the bundle, present and (``check_sha``)
        matching its recorded sha256."""
        if name not in self.manifest["files"]:
            raise MattingDeployError(f"{self.root / MANIFEST}: lists no file '{name}'")
        path = inside(self.root, name)
        if not path.is_file():
            raise MattingDeployError(f"{path}: file is missing from the bundle")
        if check_sha and sha256_file(path) != self.manifest["files"][name]["sha256"]:
            raise MattingDeployError(f"{path}: sha256 differs from manifest.json (file changed?)")
        return path

    def artifact_path(self, artifact: str) -> Path:
        """Path of an artifact, checked to be listed, inside the bundle and present."""
        files = self.artifacts
        if artifact not in files:
            raise MattingDeployError(
                f"{self.root}: bundle has no '{artifact}' artifact (has: {', '.join(files)})"
            )
        return self.file_path(files[artifact], check_sha=False)

    def verify(self, artifact: str) -> Path:
        """Like :meth:`artifact_path`, also checking the file's sha256 against the manifest."""
        self.artifact_path(artifact)
        return self.file_path(self.artifacts[artifact])

    def add_file(self, name: str, artifact: str | None = None, folder: Path | None = None,
                 **info: Any) -> None:
        """Record a file (in the bundle folder, or staged in ``folder``) with its sha256; does not save."""
        entry = {"sha256": sha256_file((folder or self.root) / name), **info}
        self.manifest["files"][name] = entry
        if artifact is not None:
            self.manifest["artifacts"][artifact] = name

    def save(self) -> None:
        """Write the manifest atomically (stages use :func:`.commit.commit` to add files)."""
        write_json(self.root / MANIFEST, self.manifest)
