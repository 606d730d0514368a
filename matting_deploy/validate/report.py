"""The validation report: drift gates against FP32, tables, report.json, report.md, CSV, panels."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..dataset import Pair
from ..errors import MattingDeployError
from ..fileio import staging_dir
from ..imaging import load_image, load_matte, resize_image
from ..preprocess import alpha_to_source
from .metrics import METRICS
from .protocol import ArtifactRun, DataSet, Scored

CLIP_METRICS = (*METRICS, "dtssd")
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
PANEL_HEIGHT = 320
EPS = 1e-12


@dataclass(frozen=True)
class Gates:
    """Drift limits: MSE at most ``max_mse_ratio`` x FP32, mIoU at most ``max_miou_drop`` lower."""

    max_mse_ratio: float = 1.10
    max_miou_drop: float = 0.003


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


# ----------------------------------------------------------------------------- reference and gates


def load_reference(path: str | os.PathLike, protocol: dict[str, Any]) -> Reference:
    """The FP32 row of a previous report.json, checked to come from the same protocol and images."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
        results = report["results"]
        theirs = report["protocol"]
    except FileNotFoundError:
        raise MattingDeployError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MattingDeployError(f"{path}: not a validate report.json ({e})") from None
    for key in ("model", "input", "resize", "frames_per_image", "digest"):
        if theirs.get(key) != protocol[key]:
            raise MattingDeployError(
                f"{path}: reference was measured with {key}={theirs.get(key)}, "
                f"this run uses {protocol[key]} (same bundle input, data and options needed)"
            )
    fp32 = [r for r in results if r.get("artifact") == "fp32"]
    fp32.sort(key=lambda r: (not r.get("reference"), r.get("backend") != "cpu"))
    if not fp32:
        raise MattingDeployError(f"{path}: reference report has no fp32 row")
    row = fp32[0]
    clip = row.get("clip")
    return Reference(
        str(path),
        "fp32",
        row.get("backend", "?"),
        row.get("metrics"),
        {k: clip[k] for k in CLIP_METRICS} if clip else None,
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
    rows: list[Row], reference: Reference, gates: Gates, protocol: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The machine-readable report (report.json)."""
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


def _heat(err: np.ndarray) -> np.ndarray:
    """|error| in [0, 1] as black -> red -> yellow -> white (x3 so small errors show)."""
    e = np.clip(err, 0.0, 1.0) * 3.0
    return np.stack([np.clip(e, 0, 1), np.clip(e - 1, 0, 1), np.clip(e - 2, 0, 1)], axis=2)


def panel(
    image: np.ndarray, gt: np.ndarray, fp32: np.ndarray | None, alpha: np.ndarray, label: str
) -> Image.Image:
    """image | GT | FP32 alpha | artifact alpha | error map, side by side, captioned."""
    grey = lambda a: np.repeat(a[..., None], 3, axis=2)  # noqa: E731
    h, w = gt.shape
    fp32_tile = grey(fp32) if fp32 is not None else np.full((h, w, 3), 0.5, np.float32)
    tiles = [image, grey(gt), fp32_tile, grey(alpha), _heat(np.abs(alpha - gt))]
    th, tw = PANEL_HEIGHT, max(1, round(w * PANEL_HEIGHT / h))
    gap = np.ones((th, 4, 3), np.float32)
    row = [resize_image(t.astype(np.float32), th, tw) for t in tiles]
    joined = np.concatenate([x for t in row for x in (t, gap)][:-1], axis=1)
    img = Image.fromarray(np.clip(np.rint(joined * 255), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    captions = [
        "image",
        "ground truth",
        "FP32" if fp32 is not None else "FP32 (n/a)",
        label,
        "|error|",
    ]
    for i, text in enumerate(captions):
        x = i * (tw + 4) + 3
        draw.rectangle(draw.textbbox((x, 3), text), fill=(0, 0, 0))
        draw.text((x, 3), text, fill=(255, 255, 255))
    return img


def _candidates(run: ArtifactRun, data: DataSet) -> list[tuple[str, Pair, Scored]]:
    pairs = {p.name: p for p in data.images}
    out = [(s.name, pairs[s.name], s) for s in run.images]
    for clip, result in zip(data.clips, run.clips, strict=True):
        frames = {p.name: p for p in clip.frames}
        out += [(f"{clip.name}/{s.name}", frames[s.name], s) for s in result.frames]
    return out


def worst_images(
    row: Row, fp32_row: Row | None, data: DataSet, k: int = 3
) -> list[tuple[str, Pair, Scored]]:
    """The ``k`` images whose MSE grew most over FP32 (largest MSE without an FP32 run here)."""
    base = (
        {key: s.metrics["mse"] for key, _, s in _candidates(fp32_row.run, data)} if fp32_row else {}
    )
    items = _candidates(row.run, data)
    items.sort(key=lambda it: it[2].metrics["mse"] - base.get(it[0], 0.0), reverse=True)
    return items[:k]


def write_panels(
    folder: Path,
    rows: list[Row],
    data: DataSet,
    fp32_alpha: Callable[[str, Pair], np.ndarray | None],
    k: int = 3,
) -> dict[str, list[str]]:
    """PNG panels of the worst images of every row but the reference; returns row -> files."""
    fp32_row = next((r for r in rows if r.is_reference), None)
    written: dict[str, list[str]] = {}
    for row in rows:
        if row.is_reference:
            continue
        sub = f"worst/{row.run.job.artifact}-{row.run.job.backend}"
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for rank, (key, pair, scored) in enumerate(worst_images(row, fp32_row, data, k), 1):
            gt = load_matte(pair.matte)
            alpha = alpha_to_source(scored.pha, scored.geometry)
            img = panel(load_image(pair.image), gt, fp32_alpha(key, pair), alpha, row.label)
            name = f"{sub}/{rank}-{key.replace('/', '_')}.png"
            img.save(folder / name, format="PNG")
            written.setdefault(row.label, []).append(name)
    return written


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
    if report.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    if panels:
        lines += [
            "## Worst images",
            "",
            "image | ground truth | FP32 alpha | artifact alpha | "
            "error map (|alpha - GT|: black 0, red 1/3, yellow 2/3, white 1)",
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
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
