"""``validate`` as a function: accuracy table of every artifact and backend, with drift gates."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..bundle import REPORT_DIR, Bundle
from ..bundle.lock import bundle_lock
from ..data.bgm import BgmInputs, require_plates
from ..data.pairs import load_dataset
from ..data.preprocess import alpha_to_source
from ..errors import GateFailed, MattingDeployError
from ..fileio import check_dir_writable, pause_point
from ..optional import versions
from ..runtimes.open import open_runner
from ..runtimes.segmenter import segmenter
from . import gates as G
from . import report as R
from .emulated import emulated_job, mac_shares
from .jobs import Job, default_artifacts, plan_jobs
from .scoring import Scorer, run_job


def run_validation(
    bundle: str | Path,
    data: str | Path,
    artifacts: list[str] | None = None,
    backends: list[str] | None = None,
    limit: int | None = None,
    resize: str = "stretch",
    warmup_frames: int = 4,
    reference: str | Path | None = None,
    max_mse_ratio: float = 1.10,
    max_miou_drop: float = 0.003,
    report: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = True,
    seg_bundle: str | Path | None = None,
) -> dict[str, Any]:
    """Score the bundle's artifacts on ``data``, write the report folder, return report.json's dict.

    Raises MattingDeployError on bad input (before anything is written) and GateFailed, after
    writing the report, when a drift gate fails.
    """
    start = time.perf_counter()
    gates = G.Gates(max_mse_ratio, max_miou_drop)
    bun = Bundle.open(bundle, log)
    out = Path(report) if report else bun.root / REPORT_DIR
    R.check_report_dir(out, force)
    check_dir_writable(out.parent)
    in_bundle = out.resolve().is_relative_to(bun.root.resolve())
    with bundle_lock(bun.root, log) if in_bundle else contextlib.nullcontext():
        return _validate(bun, data, artifacts, backends, limit, resize, warmup_frames, reference, gates,
                         out, force, log, progress, start, seg_bundle)


def _validate(bun, data, artifacts, backends, limit, resize, warmup_frames, reference, gates, out,
              force, log, progress, start, seg_bundle) -> dict[str, Any]:
    dataset = load_dataset(data, limit)
    scorer = Scorer(bun, resize, warmup_frames, _bgm_inputs(bun, dataset, resize, seg_bundle))
    h, w = bun.input_hw
    protocol = {
        "bundle": str(bun.root),
        "model": bun.model,
        "input": [h, w],
        "shape": f"1x3x{h}x{w}",
        "resize": resize,
        "frames_per_image": scorer.frames,
        "data": str(dataset.root),
        "limit": limit,
        "n_images": len(dataset.images),
        "n_clips": len(dataset.clips),
        "n_clip_frames": dataset.n_frames,
        "digest": dataset.digest(),
    }
    if bun.model == "bgm":
        protocol["seg"] = f"--seg-bundle {Path(seg_bundle).resolve()}" if seg_bundle else "seg/ files"
    ref = G.load_reference(reference, protocol) if reference else None

    notes = list(dataset.notes)
    names = list(artifacts or default_artifacts(bun, backends))
    if ref is None and "fp32" not in names:
        names.insert(0, "fp32")
        notes.append("fp32: added to the run as the reference (no --reference given)")
    jobs, skipped = plan_jobs(bun, names, backends)
    notes += skipped
    emulated = emulated_job(bun, names, jobs)
    if emulated is not None:  # implicit INT8 (TensorRT 8.5/8.6/10.0) as its engine runs it
        jobs.append(emulated)
    if ref is None and not any(j.artifact == "fp32" and j.backend == "cpu" for j in jobs):
        jobs.insert(0, Job("fp32", "cpu", bun.artifact_path("fp32")))
        notes.append("fp32 (cpu): added to the run as the reference (no --reference given)")
    jobs.sort(key=lambda j: j.artifact != "fp32" or j.backend != "cpu")
    for note in notes:
        log(f"note: {note}")
    if not jobs:
        raise MattingDeployError(
            f"{bun.root}: nothing to validate with the backends available here"
        )
    log(
        f"validating {', '.join(j.label for j in jobs)} on {len(dataset.images)} images"
        + (f" and {dataset.n_frames} clip frames" if dataset.clips else "")
        + f" ({resize}, input {protocol['shape']}, {scorer.frames} frame(s) per image)"
    )

    runs = []
    for job in jobs:
        run = run_job(bun, job, dataset, scorer, progress)
        count = len(run.images) + dataset.n_frames
        log(f"{job.label}: {count} images/frames in {run.seconds:.1f} s")
        runs.append(run)
    ref_run = next((r for r in runs if r.job.artifact == "fp32" and r.job.backend == "cpu"), None)
    if ref is None:
        ref = G.Reference("this run", "fp32", "cpu", ref_run.image_means(), ref_run.clip_means())
    rows = G.make_rows(runs, ref, gates)
    if ref_run is not None:
        for line in alpha_diffs(runs, ref_run):
            log(line)
            notes.append(line)

    tables = [("Still images", R.image_table(rows, protocol["shape"]))]
    tables += [("Clips (state carried over frames)", R.clip_table(rows))]
    tables = [(title, t) for title, t in tables if t]
    for title, table in tables:
        log(f"\n{title}\n{table}")
    shares = mac_shares(bun, jobs)
    for label, share in shares.items():
        log(f"{label}: {share['share']:.1%} of convolution MACs in INT8 ({share['int8_convs']} of "
            f"{share['convs']} Convs)")

    fp32_alpha = _fp32_alphas(bun, ref_run, scorer)
    result = R.report_dict(
        rows,
        ref,
        gates,
        protocol,
        notes=notes,
        versions={"matting-deploy": __version__, **versions(["onnxruntime"])},
        int8_mac_share=shares,
        seconds=round(time.perf_counter() - start, 2),
    )
    pause_point("validate-scored")
    R.write_report(out, force, result, rows, tables, dataset, fp32_alpha)
    log(f"\nreport: {out}")
    log(f"total time: {time.perf_counter() - start:.1f} s")
    if not result["ok"]:
        raise GateFailed("drift gate failed: " + "; ".join(result["failures"]))
    log("all drift gates hold")
    return result


def alpha_diffs(runs: list, ref_run) -> list[str]:
    """One line per other backend's fp32 row: its largest alpha difference from the reference
    row over every still image and clip frame (model resolution), e.g. OpenVINO vs onnxruntime."""
    def alphas(run) -> list:
        return [s.pha for s in run.images] + [f.pha for c in run.clips for f in c.frames]

    ref = alphas(ref_run)
    out = []
    for run in runs:
        if run is ref_run or run.job.artifact != ref_run.job.artifact or not ref:
            continue
        diff = max(float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))
                   for a, b in zip(alphas(run), ref, strict=True))
        out.append(f"{run.job.label}: alpha max |difference| from {ref_run.job.label} {diff:.2e} over "
                   f"{len(ref)} images/frames (clip state carried)")
    return out


def _bgm_inputs(bun: Bundle, dataset, resize: str, seg_bundle: str | Path | None) -> BgmInputs | None:
    """BGM's plate and mask provider (None for other models); checks back/ exists first."""
    if bun.model != "bgm":
        if seg_bundle:
            raise MattingDeployError(f"--seg-bundle: only Background Matting bundles take a mask "
                                     f"({bun.root} is {bun.model})")
        return None
    require_plates([p.image for p in dataset.images] + [p.image for c in dataset.clips for p in c.frames])
    return BgmInputs(*bun.input_hw, resize, mask_fn=segmenter(seg_bundle))


def _fp32_alphas(bundle: Bundle, ref_run, scorer: Scorer):
    """FP32 alpha at source size for a panel: this run's FP32 row, else FP32 run on that image."""
    known = {}
    if ref_run is not None:
        known = {s.name: s for s in ref_run.images}
        for clip in ref_run.clips:
            known.update({f"{clip.name}/{s.name}": s for s in clip.frames})
    runner = None

    def fp32_alpha(key, pair):
        nonlocal runner
        if key in known:
            return alpha_to_source(known[key].pha, known[key].geometry)
        if "fp32" not in bundle.artifacts or "/" in key:  # clip frames need the whole sequence
            return None
        runner = runner or open_runner(bundle, "fp32", "cpu")
        return alpha_to_source(*scorer.alpha(runner, pair, bundle.artifact_path("fp32")))

    return fp32_alpha
