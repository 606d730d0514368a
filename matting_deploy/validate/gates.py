"""Drift gates against FP32: the reference row, the limits, and one verdict entry per metric."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MattingDeployError
from .metrics import METRICS
from .scoring import ArtifactRun

CLIP_METRICS = (*METRICS, "dtssd")
EPS = 1e-12


@dataclass(frozen=True)
class Gates:
    """Drift limits: MSE at most ``max_mse_ratio`` x FP32, mIoU at most ``max_miou_drop`` lower."""

    max_mse_ratio: float = 1.10
    max_miou_drop: float = 0.003

    def __post_init__(self) -> None:
        if not (isinstance(self.max_mse_ratio, (int, float)) and math.isfinite(self.max_mse_ratio)
                and self.max_mse_ratio > 0):
            raise MattingDeployError(f"--max-mse-ratio: must be a finite number above 0, got "
                                     f"{self.max_mse_ratio}")
        if not (isinstance(self.max_miou_drop, (int, float)) and 0 <= self.max_miou_drop <= 1):
            raise MattingDeployError(f"--max-miou-drop: must be a number in [0, 1], got {self.max_miou_drop}")


@dataclass
class Reference:
    """The FP32 numbers every row is held against."""

    source: str  # "this run" or the path of a previous report.json
    artifact: str
    backend: str
    images: dict[str, float] | None
    clips: dict[str, float] | None


@dataclass
class Row:
    """One table row: a run, its averaged metrics and its drift entries."""

    run: ArtifactRun
    images: dict[str, float] | None
    clips: dict[str, float] | None
    drift: list[dict[str, Any]]
    is_reference: bool = False

    @property
    def label(self) -> str:
        return self.run.job.label

    @property
    def ok(self) -> bool:
        return all(e["ok"] for e in self.drift)


# Fields a reference must share with this run, then the ones that explain a differing digest;
# each with the option (or input) that sets it.
MUST_MATCH = {"model": "the same model", "input": "the bundle's input size", "resize": "--resize",
              "frames_per_image": "--warmup-frames", "digest": "the same images"}
EXPLAINS = {"limit": "--limit", "n_images": "", "n_clips": "", "n_clip_frames": ""}


def protocol_mismatch(theirs: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """None when a reference protocol matches this run's, else one line naming every differing
    field (the reference's value, then this run's) and the options to align."""
    if all(theirs.get(k) == ours.get(k) for k in MUST_MATCH):
        return None
    keys = [k for k in (*MUST_MATCH, *EXPLAINS) if theirs.get(k) != ours.get(k)]
    fields = ", ".join(f"{k}={theirs.get(k)} (this run: {ours.get(k)})" for k in keys if k != "digest")
    if "digest" in keys:
        fields += (", and " if fields else "") + "the image names differ (digest)"
    options = {**MUST_MATCH, **EXPLAINS}
    hints = "/".join(dict.fromkeys(options[k] for k in keys if options[k].startswith("--")))
    hows = []
    if "model" in keys or "input" in keys:  # no option of this run fixes these: another bundle does
        size = "x".join(map(str, theirs["input"])) if isinstance(theirs.get("input"), list) else theirs.get("input")
        hows.append(f"use a bundle of the reference's model at its input size ({theirs.get('model')}, {size}; "
                    "export --height/--width) or a reference made with this bundle")
    if hints:
        hows.append(f"rerun with the reference's {hints} on the same data")
    if not hows:  # only the images differ
        hows.append("use the reference's --data")
    return f"reference was measured differently: {fields}; {'; '.join(hows)}"


UPPER = {"mse": 1.0, "mad": 1.0, "miou": 1.0}  # alphas are in [0, 1]: these cannot exceed 1


def _metrics(path: Path, values: Any, names: tuple[str, ...], field: str, needed: bool) -> dict | None:
    """A reference row's metrics, each a finite number in its range, or a one-line error."""
    if values is None and not needed:
        return None
    if not isinstance(values, dict):
        raise MattingDeployError(f"{path}: reference field '{field}' must be an object of metrics "
                                 f"({', '.join(names)}), got {values!r:.40}")
    out = {}
    for m in names:
        v = values.get(m)
        top = UPPER.get(m, math.inf)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v <= top and math.isfinite(v)):
            want = f"a number in [0, {top:g}]" if m in UPPER else "a finite number >= 0"
            raise MattingDeployError(f"{path}: reference field '{field}.{m}' must be {want}, "
                                     f"got {v!r:.40}")
        out[m] = float(v)
    return out


def load_reference(path: str | os.PathLike, protocol: dict[str, Any]) -> Reference:
    """The FP32 row of a previous report.json, checked field by field (types, finite, in range)
    and to come from the same protocol and images."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise MattingDeployError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise MattingDeployError(f"{path}: not a validate report.json ({e})") from None
    theirs = report.get("protocol") if isinstance(report, dict) else None
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(theirs, dict) or not isinstance(results, list):
        raise MattingDeployError(f"{path}: not a validate report.json (needs 'protocol' and 'results')")
    mismatch = protocol_mismatch(theirs, protocol)
    if mismatch:
        raise MattingDeployError(f"{path}: {mismatch}")
    fp32 = [r for r in results if isinstance(r, dict) and r.get("artifact") == "fp32"]
    fp32.sort(key=lambda r: (not r.get("reference"), r.get("backend") != "cpu"))
    if not fp32:
        raise MattingDeployError(f"{path}: reference report has no fp32 row")
    row = fp32[0]
    backend = row.get("backend")
    return Reference(
        str(path),
        "fp32",
        backend if isinstance(backend, str) else "?",
        _metrics(path, row.get("metrics"), METRICS, "fp32.metrics", protocol.get("n_images", 0) > 0),
        _metrics(path, row.get("clip"), CLIP_METRICS, "fp32.clip", protocol.get("n_clips", 0) > 0),
    )


def drift(
    values: dict[str, float] | None, ref: dict[str, float] | None, gates: Gates, prefix: str = ""
) -> list[dict[str, Any]]:
    """Entries {metric, fp32, value, ratio, limit, ok} for each metric; MSE and mIoU are gated."""
    if not values or not ref:
        return []
    out = []
    for metric, value in values.items():
        if ref.get(metric) is None:
            continue
        r = float(ref[metric])
        ratio = value / r if r else (1.0 if value == 0 else None)
        entry: dict[str, Any] = {
            "metric": prefix + metric,
            "fp32": r,
            "value": value,
            "ratio": ratio,
            "limit": None,
            "ok": True,
        }
        if metric == "mse":
            entry.update(
                gate="max_ratio",
                limit=gates.max_mse_ratio,
                ok=ratio is not None and ratio <= gates.max_mse_ratio + EPS,
            )
        elif metric == "miou":
            entry.update(
                gate="max_drop",
                drop=r - value,
                limit=gates.max_miou_drop,
                ok=r - value <= gates.max_miou_drop + EPS,
            )
        out.append(entry)
    return out


def make_rows(runs: list[ArtifactRun], reference: Reference, gates: Gates) -> list[Row]:
    rows = []
    for run in runs:
        images, clips = run.image_means(), run.clip_means()
        entries = drift(images, reference.images, gates) + drift(
            clips, reference.clips, gates, "clip_"
        )
        is_ref = (
            reference.source == "this run"
            and run.job.artifact == reference.artifact
            and run.job.backend == reference.backend
        )
        rows.append(Row(run, images, clips, entries, is_ref))
    return rows


def _describe(entry: dict[str, Any]) -> str:
    metric = entry["metric"].replace("clip_", "clip ")
    name = metric.replace("mse", "MSE").replace("miou", "mIoU")
    if entry.get("gate") == "max_ratio":
        ratio = "inf" if entry["ratio"] is None else f"{entry['ratio']:.3f}"
        return (
            f"{name} {entry['value']:.6f} is x{ratio} FP32 {entry['fp32']:.6f} "
            f"(limit x{entry['limit']})"
        )
    return (
        f"{name} {entry['value']:.4f} is {entry['drop']:.4f} below FP32 {entry['fp32']:.4f} "
        f"(limit {entry['limit']})"
    )


def failures(rows: list[Row]) -> list[str]:
    """One line per failed gate."""
    return [f"{row.label}: {_describe(e)}" for row in rows for e in row.drift if not e["ok"]]
