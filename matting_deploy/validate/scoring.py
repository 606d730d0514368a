"""Scoring one artifact on one backend over a data set.

pairs -> preprocess (the bundle's input size) -> runner -> alpha_to_source -> metrics, at the
matte's resolution. Still images of a recurrent model (RVM) run as K frames of the same input from
zero state, the last one scored; clip folders run frame by frame with the state carried through.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..bundle import ENGINE_FILE, Bundle
from ..dataset import Pair, list_images, ppm_pairs
from ..errors import MattingDeployError, first_line
from ..imaging import load_image, load_matte
from ..preprocess import Geometry, alpha_to_source, preprocess_for
from ..runtimes.open import open_runner
from .metrics import METRICS, all_metrics, dtssd_term

ORT_BACKENDS = ("cpu", "cuda", "ort-trt")
BACKENDS = (*ORT_BACKENDS, "tensorrt")
TRT_INSTALL = "pip install -e '.[trt]' (tensorrt, pycuda) on a machine with an NVIDIA GPU"


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Clip:
    """A clip folder: ``frames/`` and ``matte/`` paired by file stem, in name order."""

    name: str
    root: Path
    frames: list[Pair]


@dataclass
class DataSet:
    root: Path
    images: list[Pair]
    clips: list[Clip]
    notes: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return sum(len(c.frames) for c in self.clips)

    def digest(self) -> str:
        """Short hash of the image and frame names (a reference must come from the same set)."""
        names = [p.name for p in self.images]
        names += [f"{c.name}/{p.name}" for c in self.clips for p in c.frames]
        return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _is_clip(folder: Path) -> bool:
    return (folder / "frames").is_dir() and (folder / "matte").is_dir()


def clip_pairs(folder: Path) -> tuple[list[Pair], list[Path]]:
    """Frames and mattes of a clip folder paired by stem, plus the files left unmatched."""
    frames = {p.stem: p for p in list_images(folder / "frames")}
    mattes = {p.stem: p for p in list_images(folder / "matte")}
    pairs = [Pair(s, frames[s], mattes[s]) for s in sorted(frames) if s in mattes]
    unmatched = [frames[s] for s in sorted(set(frames) - set(mattes))]
    unmatched += [mattes[s] for s in sorted(set(mattes) - set(frames))]
    return pairs, unmatched


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise MattingDeployError(f"{path}: no such file") from None
    except Exception as e:  # PIL raises several unrelated types for broken files
        raise MattingDeployError(f"{path}: cannot read image ({first_line(e)})") from None


def check_sizes(pairs: list[Pair]) -> None:
    """Every matte must be readable and the size of its image (headers only, no decoding)."""
    for pair in pairs:
        (iw, ih), (mw, mh) = _size(pair.image), _size(pair.matte)
        if (iw, ih) != (mw, mh):
            raise MattingDeployError(
                f"{pair.matte}: matte is {mw}x{mh} but image {pair.image.name} is {iw}x{ih}"
            )


def load_dataset(root: str | Path, limit: int | None = None) -> DataSet:
    """Still pairs (``image/`` + ``matte/``) and clips (``frames/`` + ``matte/``) under ``root``.

    Clips: ``root`` itself or its direct sub-folders. ``limit`` caps the still images and the
    frames of each clip. Unmatched files become one-line notes.
    """
    root = Path(root)
    if not root.is_dir():
        raise MattingDeployError(f"{root}: data folder does not exist")
    if limit is not None and limit < 1:
        raise MattingDeployError(f"--limit must be at least 1, got {limit}")
    images: list[Pair] = []
    unmatched: list[Path] = []
    if (root / "image").is_dir():
        images, unmatched = ppm_pairs(root)
    if _is_clip(root):
        clip_dirs = [root]
    else:
        clip_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _is_clip(d))
    clips = []
    for folder in clip_dirs:
        pairs, lost = clip_pairs(folder)
        unmatched += lost
        if len(pairs) >= 2:
            clips.append(Clip(folder.name, folder, pairs[:limit] if limit else pairs))
        else:
            unmatched += [p.image for p in pairs]
    if not images and not clips:
        raise MattingDeployError(
            f"{root}: no image/matte pairs (image/ + matte/) and no clip folder (frames/ + matte/)"
        )
    images = images[:limit] if limit else images
    notes = [f"{p}: no matching image or matte, skipped" for p in unmatched]
    data = DataSet(root, images, clips, notes)
    check_sizes(images + [p for c in clips for p in c.frames])
    return data


# ----------------------------------------------------------------------------- jobs and runners


@dataclass(frozen=True)
class Job:
    """One table row: an artifact (precision) on a backend, and the file it runs."""

    artifact: str
    backend: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.artifact} ({self.backend})"


def onnx_artifacts(bundle: Bundle) -> dict[str, str]:
    """The bundle's ONNX artifacts (name -> file), FP32 first."""
    onnx = {k: v for k, v in bundle.artifacts.items() if v.endswith(".onnx")}
    order = {"fp32": 0, "fp16": 1, "int8": 2}
    return dict(sorted(onnx.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))


def _engine_path(bundle: Bundle, precision: str) -> Path:
    return bundle.root / ENGINE_FILE.format(precision=precision)


def plan_jobs(
    bundle: Bundle, artifacts: list[str], backends: list[str] | None
) -> tuple[list[Job], list[str]]:
    """Rows to run, and one-line notes for backends skipped here.

    ``backends=None`` means automatic: cpu, every GPU provider this onnxruntime has, and TensorRT
    when the bundle holds engines. Named backends that cannot run are skipped with a note too.
    """
    from ..runtimes.onnxruntime_runner import PROVIDERS, available_backends

    onnx = onnx_artifacts(bundle)
    for name in artifacts:
        if name not in onnx and not _engine_path(bundle, name).is_file():
            raise MattingDeployError(
                f"{bundle.root}: bundle has no '{name}' artifact (has: {', '.join(onnx) or 'none'})"
            )
    have = available_backends()
    auto = backends is None
    wanted = list(BACKENDS) if auto else backends
    for b in wanted:
        if b not in BACKENDS:
            raise MattingDeployError(f"unknown backend '{b}' (choose from {', '.join(BACKENDS)})")
    jobs: list[Job] = []
    notes: list[str] = []
    lacking = [b for b in wanted if b in ORT_BACKENDS and b not in have]
    if lacking:
        notes.append(
            f"{', '.join(lacking)}: skipped (this onnxruntime has no "
            f"{', '.join(PROVIDERS[b][0] for b in lacking)})"
        )
    for backend in wanted:
        if backend in ORT_BACKENDS and backend in have:
            jobs += [Job(a, backend, bundle.root / onnx[a]) for a in artifacts if a in onnx]
        elif backend == "tensorrt":
            engines = [a for a in artifacts if _engine_path(bundle, a).is_file()]
            if not engines:
                if not auto:
                    notes.append(
                        "tensorrt: skipped (no model.<precision>.engine for "
                        f"{', '.join(artifacts)}; make one with 'matting-deploy build')"
                    )
                continue
            reason = tensorrt_unavailable()
            if reason:
                notes.append(f"tensorrt: skipped ({reason})")
                continue
            jobs += [Job(a, "tensorrt", _engine_path(bundle, a)) for a in engines]
    return jobs, notes


def tensorrt_unavailable() -> str | None:
    """Why TensorRT engines cannot run here, or None when they can."""
    try:
        importlib.import_module("tensorrt")
    except Exception as e:
        return f"the tensorrt Python package is not importable ({first_line(e)}); {TRT_INSTALL}"
    try:
        importlib.import_module("matting_deploy.runtimes.tensorrt_runner")
    except Exception as e:
        return f"matting_deploy.runtimes.tensorrt_runner cannot be imported ({first_line(e)})"
    return None


# ----------------------------------------------------------------------------- scoring


@dataclass
class Scored:
    """One image or frame: its metrics and its model-resolution alpha (for the worst panels)."""

    name: str
    metrics: dict[str, float]
    pha: np.ndarray
    geometry: Geometry


@dataclass
class ClipScore:
    name: str
    frames: list[Scored]
    dtssd: float


@dataclass
class ArtifactRun:
    """Everything measured for one job."""

    job: Job
    images: list[Scored]
    clips: list[ClipScore]
    seconds: float

    def image_means(self) -> dict[str, float] | None:
        """Per-image metrics averaged over the images (None without still images)."""
        if not self.images:
            return None
        return {m: float(np.mean([s.metrics[m] for s in self.images])) for m in METRICS}

    def clip_means(self) -> dict[str, float] | None:
        """Per-frame metrics averaged over every clip frame, dtSSD averaged over clips."""
        frames = [f for c in self.clips for f in c.frames]
        if not frames:
            return None
        out = {m: float(np.mean([f.metrics[m] for f in frames])) for m in METRICS}
        out["dtssd"] = float(np.mean([c.dtssd for c in self.clips]))
        return out


class Scorer:
    """Runs pairs through a runner with the bundle's preprocessing and scores them."""

    def __init__(self, bundle: Bundle, resize: str = "stretch", frames: int = 4):
        if frames < 1:
            raise MattingDeployError(f"--warmup-frames must be at least 1, got {frames}")
        self.preprocess = preprocess_for(bundle.model)
        self.hw = bundle.input_hw
        self.resize = resize
        self.frames = frames if bundle.recurrent else 1

    def model_input(self, path: Path) -> tuple[np.ndarray, Geometry]:
        return self.preprocess(load_image(path), *self.hw, resize=self.resize)

    @staticmethod
    def _run(runner: Any, src: np.ndarray, path: Path) -> np.ndarray:
        try:
            out = runner.run(src)
        except MattingDeployError:
            raise
        except Exception as e:  # runtime errors of any engine: one line naming the artifact
            raise MattingDeployError(f"{path}: inference failed ({first_line(e)})") from None
        return np.array(out["pha"], dtype=np.float32).reshape(out["pha"].shape[-2:])

    def _score(
        self, pair: Pair, pha: np.ndarray, geo: Geometry
    ) -> tuple[Scored, np.ndarray, np.ndarray]:
        gt = load_matte(pair.matte)
        alpha = alpha_to_source(pha, geo)
        if alpha.shape != gt.shape:
            raise MattingDeployError(
                f"{pair.matte}: matte is {gt.shape[1]}x{gt.shape[0]} but image {pair.image.name} "
                f"is {alpha.shape[1]}x{alpha.shape[0]}"
            )
        return Scored(pair.name, all_metrics(alpha, gt), pha, geo), alpha, gt

    def alpha(self, runner: Any, pair: Pair, path: Path) -> tuple[np.ndarray, Geometry]:
        """Model-resolution alpha of a still image: K frames from zero state, the last kept."""
        src, geo = self.model_input(pair.image)
        runner.reset()
        for _ in range(self.frames):
            pha = self._run(runner, src, path)
        return pha, geo

    def score_image(self, runner: Any, pair: Pair, path: Path) -> Scored:
        return self._score(pair, *self.alpha(runner, pair, path))[0]

    def score_clip(self, runner: Any, clip: Clip, path: Path, tick=None) -> ClipScore:
        """Frame by frame from zero state, state carried; per-frame metrics plus dtSSD."""
        runner.reset()
        frames, terms = [], []
        prev = None
        for pair in clip.frames:
            src, geo = self.model_input(pair.image)
            scored, alpha, gt = self._score(pair, self._run(runner, src, path), geo)
            if prev is not None:
                scored.metrics["dtssd"] = dtssd_term(alpha, prev[0], gt, prev[1])
                terms.append(scored.metrics["dtssd"])
            prev = (alpha, gt)
            frames.append(scored)
            if tick:
                tick()
        return ClipScore(clip.name, frames, float(np.mean(terms)))


def run_job(
    bundle: Bundle, job: Job, data: DataSet, scorer: Scorer, progress: bool = True
) -> ArtifactRun:
    """Score ``job`` on every still image and clip of ``data``, with a progress bar on stderr."""
    from tqdm import tqdm

    start = time.perf_counter()
    runner = open_runner(bundle, job.artifact, job.backend)
    bar = tqdm(
        total=len(data.images) + data.n_frames,
        desc=job.label,
        unit="img",
        file=sys.stderr,
        disable=not progress,
        leave=True,
    )
    try:
        images = []
        for pair in data.images:
            images.append(scorer.score_image(runner, pair, job.path))
            bar.update()
        clips = [scorer.score_clip(runner, c, job.path, bar.update) for c in data.clips]
    finally:
        bar.close()
        runner.close()
    return ArtifactRun(job, images, clips, time.perf_counter() - start)
