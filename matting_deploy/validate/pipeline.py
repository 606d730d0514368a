"""``matting-deploy validate``: accuracy table of every artifact and backend, with drift gates."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return list(dict.fromkeys(items)) or None


def run_validation(
    bundle: str | Path,
    data: str | Path,
    artifacts: str | None = None,
    backends: str | None = None,
    limit: int | None = None,
    resize: str = "stretch",
    warmup_frames: int = 4,
    reference: str | Path | None = None,
    max_mse_ratio: float = 1.10,
    max_miou_drop: float = 0.003,
    report: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = click.echo,
    progress: bool = True,
) -> dict[str, Any]:
    """Score the bundle's artifacts on ``data``, write the report folder, return report.json's dict.

    Raises MattingDeployError on bad input (before anything is written) and GateFailed, after
    writing the report, when a drift gate fails.
    """
    from .. import __version__
    from ..bundle import Bundle
    from ..errors import GateFailed, MattingDeployError
    from ..preprocess import alpha_to_source
    from . import protocol as P
    from . import report as R

    start = time.perf_counter()
    bun = Bundle.open(bundle)
    out = Path(report) if report else bun.root / "report"
    R.check_report_dir(out, force)
    dataset = P.load_dataset(data, limit)
    scorer = P.Scorer(bun, resize, warmup_frames)
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
    gates = R.Gates(max_mse_ratio, max_miou_drop)
    ref = R.load_reference(reference, protocol) if reference else None

    notes = list(dataset.notes)
    names = _split(artifacts) or list(P.onnx_artifacts(bun))
    if ref is None and "fp32" not in names:
        names.insert(0, "fp32")
        notes.append("fp32: added to the run as the reference (no --reference given)")
    jobs, skipped = P.plan_jobs(bun, names, _split(backends))
    notes += skipped
    if ref is None and not any(j.artifact == "fp32" and j.backend == "cpu" for j in jobs):
        jobs.insert(0, P.Job("fp32", "cpu", bun.artifact_path("fp32")))
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
        run = P.run_job(bun, job, dataset, scorer, progress)
        count = len(run.images) + dataset.n_frames
        log(f"{job.label}: {count} images/frames in {run.seconds:.1f} s")
        runs.append(run)
    ref_run = next((r for r in runs if r.job.artifact == "fp32" and r.job.backend == "cpu"), None)
    if ref is None:
        ref = R.Reference("this run", "fp32", "cpu", ref_run.image_means(), ref_run.clip_means())
    rows = R.make_rows(runs, ref, gates)

    tables = [("Still images", R.image_table(rows, protocol["shape"]))]
    tables += [("Clips (state carried over frames)", R.clip_table(rows))]
    tables = [(title, t) for title, t in tables if t]
    for title, table in tables:
        log(f"\n{title}\n{table}")

    fp32_alpha = _fp32_alphas(bun, ref_run, dataset, scorer, alpha_to_source)
    result = R.report_dict(
        rows,
        ref,
        gates,
        protocol,
        notes=notes,
        versions=_versions(__version__),
        seconds=round(time.perf_counter() - start, 2),
    )
    R.write_report(out, force, result, rows, tables, dataset, fp32_alpha)
    log(f"\nreport: {out}")
    log(f"total time: {time.perf_counter() - start:.1f} s")
    if not result["ok"]:
        raise GateFailed("drift gate failed: " + "; ".join(result["failures"]))
    log("all drift gates hold")
    return result


def _fp32_alphas(bundle, ref_run, dataset, scorer, alpha_to_source):
    """FP32 alpha at source size for a panel: this run's FP32 row, else FP32 run on that image."""
    from ..runtimes.onnxruntime_runner import OrtRunner

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
        runner = runner or OrtRunner.from_bundle(bundle, "fp32", "cpu")
        return alpha_to_source(*scorer.alpha(runner, pair, bundle.artifact_path("fp32")))

    return fp32_alpha


def _versions(ours: str) -> dict[str, str]:
    import onnxruntime

    return {"matting-deploy": ours, "onnxruntime": onnxruntime.__version__}


@click.command()
@click.option("--bundle", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    required=True,
    help="PPM-100 layout (image/ + matte/), and/or clip folders (frames/ + matte/).",
)
@click.option("--artifacts", help="Comma list, e.g. fp32,fp16,int8 (default: every ONNX artifact).")
@click.option(
    "--backends",
    help="Comma list of cpu, cuda, ort-trt, tensorrt (default: cpu plus every GPU backend "
    "present; missing ones are skipped with a note).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), help="Score only the first N images (and frames)."
)
@click.option(
    "--resize",
    type=click.Choice(["stretch", "letterbox"]),
    default="stretch",
    show_default=True,
    help="Squeeze to the input size, or keep the aspect ratio with padding.",
)
@click.option(
    "--warmup-frames",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Recurrent models: frames run per still image from zero state, the last scored.",
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False),
    help="A previous report.json whose FP32 row is the reference (else FP32 runs here).",
)
@click.option(
    "--max-mse-ratio",
    type=float,
    default=1.10,
    show_default=True,
    help="Gate: MSE at most this multiple of FP32's.",
)
@click.option(
    "--max-miou-drop",
    type=float,
    default=0.003,
    show_default=True,
    help="Gate: mIoU at most this much below FP32's.",
)
@click.option(
    "--report", type=click.Path(file_okay=False), help="Report folder (default: BUNDLE/report)."
)
@click.option("--force", is_flag=True, help="Replace an existing report folder.")
def validate(**kw: Any) -> None:
    """Score every artifact against ground-truth mattes and gate its drift from FP32.

    Exit code 0 when every gate holds, 1 when a drift gate fails, 2 on bad input.
    """
    run_validation(**kw)
