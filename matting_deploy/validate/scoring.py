"""The scoring protocol: one artifact on one backend over a data set.

The one protocol used by validate, by calibrate's drift measurement and by bench/int8_recipes.py:
pairs -> preprocess (the bundle's input size) -> runner -> alpha_to_source -> metrics, at the
matte's resolution. Still images of a recurrent model (RVM) run as K frames of the same input from
zero state, the last one scored; clip folders run frame by frame with the state carried through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..data.bgm import BgmInputs
from ..data.imaging import load_image, load_matte
from ..data.pairs import Clip, DataSet, Pair
from ..data.preprocess import Geometry, alpha_plane, alpha_to_source, preprocess_for
from ..errors import MattingDeployError, first_line
from ..runtimes.open import open_runner
from .emulated import EMULATED, open_emulated
from .jobs import Job
from .metrics import METRICS, all_metrics, dtssd_term
from .overlap import scored_in_background
from .parallel import RunnerPool, cpu_cores, split


def still_outputs(runner: Any, src: np.ndarray, frames: int, run: Callable[[np.ndarray], Any] | None = None):
    """A still image under the protocol: ``frames`` runs of ``src`` from zero state, the last kept.

    ``run`` replaces ``runner.run`` (e.g. to wrap its errors); its last result is returned.
    """
    run = run or runner.run
    runner.reset()
    for _ in range(max(1, frames)):
        out = run(src)
    return out


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

    def __init__(self, bundle: Bundle, resize: str = "stretch", frames: int = 4,
                 extras: BgmInputs | None = None):
        if frames < 1:
            raise MattingDeployError(f"--warmup-frames must be at least 1, got {frames}")
        self.preprocess = preprocess_for(bundle.model)
        self.hw = bundle.input_hw
        self.resize = resize
        self.frames = frames if bundle.recurrent else 1
        self.extras = extras  # BGM: the plate and mask of each image

    def model_input(self, path: Path) -> tuple[np.ndarray, Geometry]:
        return self.model_inputs(path)[:2]

    def model_inputs(self, path: Path) -> tuple[np.ndarray, Geometry, dict[str, np.ndarray]]:
        """src, its geometry and the model's extra inputs (BGM: bgr, seg; else none)."""
        image = load_image(path)
        src, geo = self.preprocess(image, *self.hw, resize=self.resize)
        return src, geo, (self.extras.extra(path, image) if self.extras else {})

    @staticmethod
    def _run(runner: Any, src: np.ndarray, path: Path, extra: dict | None = None) -> np.ndarray:
        try:
            out = runner.run(src, **(extra or {}))
        except MattingDeployError:
            raise
        except Exception as e:  # runtime errors of any engine: one line naming the artifact
            raise MattingDeployError(f"{path}: inference failed ({first_line(e)})") from None
        return np.array(alpha_plane(out["pha"], str(path)))

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
        src, geo, extra = self.model_inputs(pair.image)
        return still_outputs(runner, src, self.frames, lambda s: self._run(runner, s, path, extra)), geo

    def score_image(self, runner: Any, pair: Pair, path: Path) -> Scored:
        return self._score(pair, *self.alpha(runner, pair, path))[0]

    def score_clip(self, runner: Any, clip: Clip, path: Path, tick=None,
                   overlap: bool = True) -> ClipScore:
        """Frame by frame from zero state, state carried; per-frame metrics plus dtSSD.

        With ``overlap``, frame k is scored on a worker thread while frame k+1 runs (one worker:
        frames are scored in order, so dtSSD can keep the previous frame)."""
        runner.reset()
        prev = None

        def score(item: tuple[Pair, np.ndarray, Geometry]) -> Scored:
            nonlocal prev
            scored, alpha, gt = self._score(*item)
            if prev is not None:
                scored.metrics["dtssd"] = dtssd_term(alpha, prev[0], gt, prev[1])
            prev = (alpha, gt)
            return scored

        def inferred():
            for pair in clip.frames:
                src, geo, extra = self.model_inputs(pair.image)
                yield pair, self._run(runner, src, path, extra), geo

        frames = []
        with closing(scored_in_background(inferred(), score, workers=int(overlap))) as scored:
            for s in scored:
                frames.append(s)
                if tick:
                    tick()
        return ClipScore(clip.name, frames, float(np.mean([f.metrics["dtssd"] for f in frames[1:]])))


def run_job(
    bundle: Bundle, job: Job, data: DataSet, scorer: Scorer, progress: bool = True,
    cores: int | None = None,
) -> ArtifactRun:
    """Score ``job`` on every still image and clip of ``data``, with a progress bar on stderr.

    CPU jobs run several one-runner-per-thread workers side by side (:mod:`.parallel`; ``cores``:
    the cores to use, default all); other backends run one runner, scoring image k on a worker
    thread while image k+1 runs."""
    from ..progress import bar as progress_bar

    start = time.perf_counter()
    workers, threads = split(cpu_cores() if cores is None else cores)
    bar = progress_bar(len(data.images) + data.n_frames, job.label, enabled=progress)
    try:
        if job.backend == "cpu" and workers > 1 and scorer.extras is None:
            images, clips = score_parallel(lambda n: _open(bundle, job, n), job.path, data, scorer,
                                           workers, threads, bar.update)
        else:
            images, clips = _run_overlapped(bundle, job, data, scorer, bar.update)
    finally:
        bar.close()
    return ArtifactRun(job, images, clips, time.perf_counter() - start)


def _open(bundle: Bundle, job: Job, threads: int = 0) -> Any:
    if job.artifact == EMULATED:
        return open_emulated(bundle, threads)
    return open_runner(bundle, job.artifact, job.backend, threads=threads)


def _run_overlapped(bundle: Bundle, job: Job, data: DataSet, scorer: Scorer,
                    tick: Callable[[], Any]) -> tuple[list[Scored], list[ClipScore]]:
    runner = _open(bundle, job)
    try:
        images = []
        # image k is scored on a worker thread while image k+1 runs (the runner stays in this thread)
        inferred = ((pair, *scorer.alpha(runner, pair, job.path)) for pair in data.images)
        with closing(scored_in_background(inferred, lambda item: scorer._score(*item)[0])) as scored:
            for s in scored:
                images.append(s)
                tick()
        clips = [scorer.score_clip(runner, c, job.path, tick) for c in data.clips]
    finally:
        runner.close()
    return images, clips


def score_parallel(open_one: Callable[[int], Any], path: Path, data: DataSet, scorer: Scorer,
                   workers: int, threads: int, tick: Callable[[], Any] = lambda: None,
                   ) -> tuple[list[Scored], list[ClipScore]]:
    """(still scores, clip scores) of ``data`` on ``workers`` threads, each with its own runner
    ``open_one(threads)``; clips (the longest tasks) go first. ``path`` names the model in errors."""
    runners = RunnerPool(open_one, threads)

    def work(task: tuple[str, Any]) -> Any:
        kind, item = task
        if kind == "clip":
            return scorer.score_clip(runners.get(), item, path, tick, overlap=False)
        scored = scorer.score_image(runners.get(), item, path)
        tick()
        return scored

    tasks = [("clip", c) for c in data.clips] + [("image", p) for p in data.images]
    try:
        with closing(scored_in_background(tasks, work, workers, ahead=len(tasks))) as done:
            results = list(done)
    finally:
        runners.close()
    return results[len(data.clips):], results[:len(data.clips)]
