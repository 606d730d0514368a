"""Panels of the worst images: image | ground truth | FP32 alpha | artifact alpha | error map |
drift map, with a colour scale under each map. The worst images are those the artifact moved
furthest from FP32 (drift), so a small FP16/INT8 drift is visible and located."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.imaging import load_image, load_matte, resize_image
from ..data.pairs import DataSet, Pair
from ..data.preprocess import alpha_to_source
from .gates import Row
from .scoring import ArtifactRun, Scored

PANEL_HEIGHT = 320
LEGEND_HEIGHT = 22
GAP = 4


def _heat(err: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as black -> red -> yellow -> white (thirds of the range)."""
    e = np.clip(err, 0.0, 1.0) * 3.0
    return np.stack([np.clip(e, 0, 1), np.clip(e - 1, 0, 1), np.clip(e - 2, 0, 1)], axis=2)


DRIFT_QUANTILE = 0.9  # the drift map's full scale: this quantile of the pixels that drift at all


def drift_scale(drift: np.ndarray) -> float:
    """The drift map's full scale: the :data:`DRIFT_QUANTILE` quantile of |artifact - FP32| over the
    pixels that moved (by more than half an 8-bit step), rounded up to 1, 2 or 5 x 10^k (at least
    1/255, one 8-bit step). A few pixels drift far more than the rest (INT8 on the demo's RVM: up to
    0.47-0.72, yet half the moved pixels under 0.025): fitting the bulk keeps it visible; the few
    beyond show white."""
    moved = drift[drift > 0.5 / 255]
    top = max(float(np.quantile(moved, DRIFT_QUANTILE)) if moved.size else 0.0, 1 / 255)
    power = 10.0 ** np.floor(np.log10(top))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= top - 1e-12))


def _legend(width: int) -> np.ndarray:
    """A colour bar over the map's full scale (labels drawn separately), LEGEND_HEIGHT tall."""
    strip = np.ones((LEGEND_HEIGHT, width, 3), np.float32)
    strip[12:, :] = _heat(np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :].repeat(LEGEND_HEIGHT - 12, 0))
    return strip


def panel(
    image: np.ndarray, gt: np.ndarray, fp32: np.ndarray | None, alpha: np.ndarray, label: str
) -> Image.Image:
    """image | GT | FP32 alpha | artifact alpha | |alpha - GT| | |alpha - FP32|, side by side,
    captioned, with a colour scale under both maps (the drift map's scale fits its maximum)."""
    grey = lambda a: np.repeat(a[..., None], 3, axis=2)  # noqa: E731
    h, w = gt.shape
    blank = np.full((h, w, 3), 0.5, np.float32)
    drift = np.abs(alpha - fp32) if fp32 is not None else None
    scale = drift_scale(drift) if drift is not None else 1.0
    tiles = [image, grey(gt), grey(fp32) if fp32 is not None else blank, grey(alpha),
             _heat(np.abs(alpha - gt)), _heat(drift / scale) if drift is not None else blank]
    th, tw = PANEL_HEIGHT, max(1, round(w * PANEL_HEIGHT / h))
    row = [resize_image(t.astype(np.float32), th, tw) for t in tiles]
    gap = np.ones((th, GAP, 3), np.float32)
    joined = np.concatenate([x for t in row for x in (t, gap)][:-1], axis=1)
    legend = np.ones((LEGEND_HEIGHT, joined.shape[1], 3), np.float32)
    maps = [(4, 1.0), (5, scale)] if drift is not None else [(4, 1.0)]
    for index, _ in maps:
        legend[:, index * (tw + GAP):index * (tw + GAP) + tw] = _legend(tw)
    img = Image.fromarray(np.clip(np.rint(np.concatenate([joined, legend]) * 255), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    captions = ["image", "ground truth", "FP32" if fp32 is not None else "FP32 (n/a)", label,
                "|alpha - GT|", f"|{label} - FP32|" if fp32 is not None else "drift (n/a)"]
    for i, text in enumerate(captions):
        x = i * (tw + GAP) + 3
        draw.rectangle(draw.textbbox((x, 3), text), fill=(0, 0, 0))
        draw.text((x, 3), text, fill=(255, 255, 255))
    for index, top in maps:
        x = index * (tw + GAP)
        draw.text((x + 1, th), "0", fill=(0, 0, 0))
        peak = float(drift.max()) if index == 5 and drift is not None else 0.0
        end = f"{top:.3g}" + (f"+ (max {peak:.3g})" if peak > top else "")
        draw.text((x + tw - draw.textlength(end) - 1, th), end, fill=(0, 0, 0))
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
    """The ``k`` images the artifact moved furthest from FP32: largest mean (alpha - FP32 alpha)^2
    at the model's resolution. Without an FP32 run here (``--reference``): the largest MSE."""
    fp32 = {key: s for key, _, s in _candidates(fp32_row.run, data)} if fp32_row else {}

    def badness(item: tuple[str, Pair, Scored]) -> float:
        key, _, scored = item
        if key in fp32:
            return float(np.mean((scored.pha.astype(np.float64) - fp32[key].pha) ** 2))
        return scored.metrics["mse"]

    return sorted(_candidates(row.run, data), key=badness, reverse=True)[:k]


def _safe(text: str) -> str:
    """A file-name part: anything but letters, digits, '.', '_', '+', '-' becomes '_' (no '..')."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text).replace("..", "_")


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
        sub = "worst/" + _safe(f"{row.run.job.artifact}-{row.run.job.backend}")
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for rank, (key, pair, scored) in enumerate(worst_images(row, fp32_row, data, k), 1):
            gt = load_matte(pair.matte)
            alpha = alpha_to_source(scored.pha, scored.geometry)
            img = panel(load_image(pair.image), gt, fp32_alpha(key, pair), alpha, row.label)
            name = f"{sub}/{rank}-{_safe(key)}.png"
            img.save(folder / name, format="PNG")
            written.setdefault(row.label, []).append(name)
    return written
