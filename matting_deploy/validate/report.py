"""The validation report: tables, report.json, report.md and per_image.csv (panels: panels.py)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data.pairs import DataSet, Pair
from ..errors import MattingDeployError
from ..fileio import deferred_signals, pause_point, staging_dir
from .gates import CLIP_METRICS, Gates, Reference, Row, failures
from .metrics import METRICS
from .panels import DRIFT_QUANTILE, write_panels

NAMES = {
    "mse": "MSE",
    "mad": "MAD",
    "sad": "SAD",
    "grad": "Grad",
    "conn": "Conn",
    "miou": "mIoU",
    "dtssd": "dtSSD",
}
FORMATS = {
    "mse": ".6f",
    "mad": ".6f",
    "sad": ".2f",
    "grad": ".3f",
    "conn": ".3f",
    "miou": ".4f",
    "dtssd": ".3f",
}


def _verdict(row: Row, prefix: str) -> str:
    if row.is_reference:
        return "reference"
    parts = []
    for e in row.drift:
        if (
            "gate" not in e
            or not e["metric"].startswith(prefix)
            or (not prefix and "clip_" in e["metric"])
        ):
            continue
        if e["gate"] == "max_ratio":
            shown = "x inf" if e["ratio"] is None else f"x{e['ratio']:.3f}"
            text = f"MSE {shown}" + ("" if e["ok"] else f" > {e['limit']:.2f}")
        else:
            text = f"mIoU {-e['drop']:+.4f}" + ("" if e["ok"] else f" < -{e['limit']}")
        parts.append(text + (" ok" if e["ok"] else " FAIL"))
    return ", ".join(parts) or "-"


# ----------------------------------------------------------------------------- tables


def _table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, body)])


def _cells(values: dict[str, float], metrics: tuple[str, ...]) -> list[str]:
    return [format(values[m], FORMATS[m]) for m in metrics]


def image_table(rows: list[Row], shape: str) -> str | None:
    """Model | MSE | MAD | SAD | Grad | Conn | mIoU | Shape | vs FP32 (markdown, aligned)."""
    body = [[r.label, *_cells(r.images, METRICS), shape, _verdict(r, "")] for r in rows if r.images]
    if not body:
        return None
    return _table(["Model", *(NAMES[m] for m in METRICS), "Shape", "vs FP32"], body)


def clip_table(rows: list[Row]) -> str | None:
    """The same for clips, with dtSSD and the number of frames."""
    body = [
        [
            r.label,
            *_cells(r.clips, CLIP_METRICS),
            str(sum(len(c.frames) for c in r.run.clips)),
            _verdict(r, "clip_"),
        ]
        for r in rows
        if r.clips
    ]
    if not body:
        return None
    return _table(["Model", *(NAMES[m] for m in CLIP_METRICS), "Frames", "vs FP32"], body)


# ----------------------------------------------------------------------------- outputs


def report_dict(
    rows: list[Row], reference: Reference, gates: Gates, protocol: dict[str, Any], notes: list[str],
    **extra: Any,
) -> dict[str, Any]:
    """The machine-readable report (report.json); ``notes``: one-line remarks a reader needs to weigh
    the figures (the data set's own notes, skipped backends, added rows), shown in report.md too."""
    results = []
    for row in rows:
        clip = None
        if row.clips:
            clip = {
                "n_clips": len(row.run.clips),
                "n_frames": sum(len(c.frames) for c in row.run.clips),
                **row.clips,
            }
        results.append(
            {
                "artifact": row.run.job.artifact,
                "backend": row.run.job.backend,
                "file": row.run.job.path.name,
                "reference": row.is_reference,
                "n_images": len(row.run.images),
                "metrics": row.images,
                "clip": clip,
                "drift": row.drift,
                "ok": row.ok,
                "seconds": round(row.run.seconds, 3),
            }
        )
    return {
        "format": 1,
        "protocol": protocol,
        "gates": {"max_mse_ratio": gates.max_mse_ratio, "max_miou_drop": gates.max_miou_drop},
        "reference": {
            "source": reference.source,
            "artifact": reference.artifact,
            "backend": reference.backend,
            "metrics": reference.images,
            "clip": reference.clips,
        },
        "results": results,
        "ok": all(r.ok for r in rows),
        "failures": failures(rows),
        "notes": list(notes),
        **extra,
    }


def per_image_csv(rows: list[Row]) -> str:
    """One line per artifact, backend and image (or clip frame)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["artifact", "backend", "set", "name", *CLIP_METRICS])
    for row in rows:
        job = row.run.job
        sets = [("image", row.run.images)] + [(f"clip:{c.name}", c.frames) for c in row.run.clips]
        for kind, scored in sets:
            for s in scored:
                vals = [format(s.metrics[m], ".8g") if m in s.metrics else "" for m in CLIP_METRICS]
                out.writerow([job.artifact, job.backend, kind, s.name, *vals])
    return buf.getvalue()


def markdown(
    report: dict[str, Any], tables: list[tuple[str, str]], panels: dict[str, list[str]]
) -> str:
    """report.md: the tables, the protocol, the verdict and the panels."""
    p = report["protocol"]
    g = report["gates"]
    ref = report["reference"]
    lines = [
        "# Validation report",
        "",
        f"- Bundle: `{p['bundle']}` ({p['model']}, input {p['shape']})",
        f"- Data: `{p['data']}`: {p['n_images']} images, {p['n_clips']} clips "
        f"({p['n_clip_frames']} frames)",
        f"- Protocol: resize {p['resize']}, {p['frames_per_image']} frame(s) per still image "
        "(last scored), metrics at the matte's resolution, averaged per image",
        f"- Gates: MSE <= {g['max_mse_ratio']} x FP32, "
        f"mIoU at most {g['max_miou_drop']} below FP32",
        f"- Reference: fp32 ({ref['backend']}) from {ref['source']}",
        f"- Verdict: **{'PASS' if report['ok'] else 'FAIL'}**",
        "",
    ]
    for title, table in tables:
        lines += [f"## {title}", "", table, ""]
    if report["failures"]:
        lines += ["## Failed gates", "", *[f"- {f}" for f in report["failures"]], ""]
    if report["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    if panels:
        lines += [
            "## Worst images",
            "",
            "The images each artifact moved furthest from FP32 (mean squared alpha drift): "
            "image | ground truth | FP32 alpha | artifact alpha | error map |alpha - GT| "
            "(black 0, red 1/3, yellow 2/3, white 1) | drift map |alpha - FP32| (same colours over "
            f"the scale printed under the map: the {DRIFT_QUANTILE:.0%} quantile of the pixels that drift, rounded up; "
            "'+' and the maximum when some drift further, shown white).",
            "",
        ]
        for label, files in panels.items():
            lines += [f"### {label}", "", *[f"![{f}]({f})" for f in files], ""]
    lines.append(f"Scoring time: {report['seconds']:.1f} s")
    return "\n".join(lines) + "\n"


def check_report_dir(out: Path, force: bool) -> None:
    """Refuse an existing report folder unless ``force``."""
    if out.exists() and not force:
        raise MattingDeployError(f"{out}: already exists (pass --force to overwrite)")
    if out.exists() and not out.is_dir():
        raise MattingDeployError(f"{out}: exists and is not a folder")


def write_report(
    out: Path,
    force: bool,
    report: dict[str, Any],
    rows: list[Row],
    tables: list[tuple[str, str]],
    data: DataSet,
    fp32_alpha: Callable[[str, Pair], np.ndarray | None],
) -> None:
    """Write report.json, report.md, per_image.csv and worst/ into a staging folder, then rename."""
    check_report_dir(out, force)
    with staging_dir(out.parent) as tmp:
        panels = write_panels(tmp, rows, data, fp32_alpha)
        report["panels"] = panels
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "report.md").write_text(markdown(report, tables, panels))
        (tmp / "per_image.csv").write_text(per_image_csv(rows))
        pause_point("report-staged")
        with staging_dir(out.parent) as trash, deferred_signals():
            if out.exists():
                os.replace(out, trash / "old")
            os.replace(tmp, out)
