"""Panels of the worst images: image | ground truth | FP32 alpha | artifact alpha | error map."""

from __future__ import annotations

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
        sub = f"worst/{row.run.job.artifact.replace(' ', '-')}-{row.run.job.backend}"
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for rank, (key, pair, scored) in enumerate(worst_images(row, fp32_row, data, k), 1):
            gt = load_matte(pair.matte)
            alpha = alpha_to_source(scored.pha, scored.geometry)
            img = panel(load_image(pair.image), gt, fp32_alpha(key, pair), alpha, row.label)
            name = f"{sub}/{rank}-{key.replace('/', '_')}.png"
            img.save(folder / name, format="PNG")
            written.setdefault(row.label, []).append(name)
    return written
