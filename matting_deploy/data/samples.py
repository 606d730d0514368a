"""A small PPM-100-layout sample set made from photos that ship in a registry package.

Each person photo is matted once by a trusted FP32 model at its own resolution (its alpha and
foreground become the layer), then composited onto backgrounds with I = A*F + (1-A)*B, using the
8-bit alpha saved as the matte: the matte is the exact alpha of the composite. As with any such
set, scores of the model that made the layers are optimistic; use it for drift between
precisions and runtimes, not for absolute quality claims.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..fileio import atomic_path
from .bgm import official_seg
from .imaging import load_image, resize_image, save_png
from .pairs import NOTES_FILE


@dataclass
class Layer:
    name: str
    fgr: np.ndarray  # (H, W, 3) float32
    alpha: np.ndarray  # (H, W) float32, quantised to 8 bits


def matte_layer(name: str, image: np.ndarray, runner: Any, frames: int = 4) -> Layer:
    """Alpha and foreground of ``image`` from ``runner`` (any runner: same frame ``frames`` times,
    last kept)."""
    src = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    runner.reset()
    for _ in range(frames):
        out = runner.run(src)
    alpha = np.round(np.clip(out["pha"][0, 0], 0, 1) * 255) / 255
    fgr = np.clip(out["fgr"][0].transpose(1, 2, 0), 0, 1) if "fgr" in out else image
    return Layer(name, fgr.astype(np.float32), alpha.astype(np.float32))


def _cover(background: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Scale the background to cover the frame (random extra zoom and offset), maybe flipped."""
    bh, bw = background.shape[:2]
    scale = max(height / bh, width / bw) * rng.uniform(1.0, 1.3)
    sh, sw = max(height, round(bh * scale)), max(width, round(bw * scale))
    big = resize_image(background, sh, sw)
    top, left = rng.integers(0, sh - height + 1), rng.integers(0, sw - width + 1)
    out = big[top : top + height, left : left + width]
    return out[:, ::-1] if rng.random() < 0.5 else out


def composite(layer: Layer, background: np.ndarray, height: int, width: int,
              rng: np.random.Generator, with_plate: bool = False) -> tuple[np.ndarray, ...]:
    """Place the layer bottom-aligned (its cut edge stays at the frame edge) on a background:
    (image, alpha), plus the background crop itself (the clean plate) with ``with_plate``."""
    scale = width / layer.alpha.shape[1] * rng.uniform(0.75, 1.05)
    lh, lw = round(layer.alpha.shape[0] * scale), round(layer.alpha.shape[1] * scale)
    fgr, alpha = resize_image(layer.fgr, lh, lw), resize_image(layer.alpha, lh, lw)
    if rng.random() < 0.5:
        fgr, alpha = fgr[:, ::-1], alpha[:, ::-1]
    full_a = np.zeros((height, width), np.float32)
    full_f = np.zeros((height, width, 3), np.float32)
    left = int(rng.integers(min(0, width - lw), max(0, width - lw) + 1))
    top = height - lh
    ys, xs = slice(max(0, top), height), slice(max(0, left), min(width, left + lw))
    ly, lx = slice(ys.start - top, lh), slice(xs.start - left, xs.stop - left)
    full_a[ys, xs], full_f[ys, xs] = alpha[ly, lx], fgr[ly, lx]
    full_a = np.round(np.clip(full_a, 0, 1) * 255) / 255
    bg = _cover(background, height, width, rng)
    image = full_a[..., None] * full_f + (1 - full_a[..., None]) * bg
    if with_plate:
        return image.astype(np.float32), full_a, np.ascontiguousarray(bg, np.float32)
    return image.astype(np.float32), full_a


FRAME_SHAPES = ((640, 480), (720, 480), (600, 400), (480, 640), (540, 720))


def write_set(root: Path, layers: list[Layer], backgrounds: dict[str, np.ndarray], count: int,
              seed: int) -> list[str]:
    """Write ``count`` composites to root/image/*.jpg and root/matte/*.png; returns their names.

    Each also gets its clean plate (root/back/*.jpg) and the matte processed like a segmentation
    model's mask by the official Background Matting script (root/seg/*.png), for BGM bundles."""
    rng = np.random.default_rng(seed)
    names, rows = [], []
    bg_names = sorted(backgrounds)
    for i in range(count):
        layer, bg = layers[i % len(layers)], bg_names[i % len(bg_names)]
        height, width = FRAME_SHAPES[int(rng.integers(len(FRAME_SHAPES)))]
        image, alpha, plate = composite(layer, backgrounds[bg], height, width, rng, with_plate=True)
        name = f"{i:03d}_{layer.name}"
        for folder, pixels in (("image", image), ("back", plate)):
            with atomic_path(root / folder / f"{name}.jpg", force=True) as tmp:
                Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(tmp, "JPEG", quality=95)
        save_png(root / "matte" / f"{name}.png", alpha)
        save_png(root / "seg" / f"{name}.png", official_seg(alpha))
        names.append(name)
        rows.append({"name": name, "person": layer.name, "background": bg, "height": height, "width": width})
    with atomic_path(root / "samples.json", force=True) as tmp:
        tmp.write_text(json.dumps({"seed": seed, "images": rows}, indent=2) + "\n")
    return names


def load_backgrounds(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    return {name: load_image(p) for name, p in paths.items()}


def write_demo_sets(calib: Path, evaluation: Path, people: dict[str, Path], backgrounds: dict[str, Path],
                    matter: Any, count: int, matter_name: str) -> None:
    """The demo's two splits: every person matted once by ``matter`` (``matter_name``: which model that
    is, for the sets' notes), composited on one half of the backgrounds for calibration (seed 1) and on
    the other half for evaluation (seed 2)."""
    layers = [matte_layer(name, load_image(path), matter) for name, path in people.items()]
    names = sorted(backgrounds)
    split = len(names) // 2
    write_set(calib, layers, load_backgrounds({n: backgrounds[n] for n in names[:split]}), count, seed=1)
    write_set(evaluation, layers, load_backgrounds({n: backgrounds[n] for n in names[split:]}), count, seed=2)
    for root in (calib, evaluation):
        with atomic_path(root / NOTES_FILE, force=True) as tmp:
            tmp.write_text(truth_note(matter_name) + "\n")


def truth_note(matter_name: str) -> str:
    """What a report on a demo set must say about its ground truth."""
    return (f"ground truth made by {matter_name}, not by hand: its scores are optimistic, and a lower "
            "precision may beat it by chance; validate on true mattes (e.g. PPM-100) for real accuracy")
