"""Reading and writing images and mattes as float32 arrays in [0, 1]."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MattingDeployError, first_line
from ..fileio import atomic_path

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path, verify: bool = False) -> Image.Image:
    """Open and decode (``verify``: only check) an image; decompression bombs are refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if verify:
                img.verify()
            else:
                img.load()
        return img
    except FileNotFoundError:
        raise MattingDeployError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MattingDeployError(f"{path}: image too large (more than {Image.MAX_IMAGE_PIXELS} "
                                 "pixels; a decompression bomb?)") from None
    except Exception as e:  # PIL raises many unrelated types (OSError, SyntaxError, EOFError, ...)
        raise MattingDeployError(f"{path}: cannot read image ({first_line(e)})") from None


def check_image(path: str | os.PathLike) -> None:
    """Cheap readability check (header and structure, no full decode); raises MattingDeployError."""
    _open(Path(path), verify=True).close()


def _to_float(img: Image.Image, path: Path) -> np.ndarray:
    """Pixel values of any 8- or 16-bit mode as float32 in [0, 1] (H, W[, C])."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode != "I" or arr.max() > 255 else 255.0
        return np.clip(arr / top, 0.0, 1.0)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise MattingDeployError(f"{path}: float image has NaN or infinite values")
        return np.clip(arr, 0.0, 1.0)
    return np.asarray(img, dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike) -> np.ndarray:
    """RGB image as float32 (H, W, 3) in [0, 1]; grey is replicated, alpha is dropped."""
    path = Path(path)
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L", "1"):
        grey = _to_float(img.convert("L") if img.mode == "1" else img, path)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return _to_float(img, path)


def load_matte(path: str | os.PathLike) -> np.ndarray:
    """Alpha matte as float32 (H, W) in [0, 1]; colour mattes use their first channel."""
    path = Path(path)
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
        return _to_float(img, path)
    if img.mode in ("LA", "RGBA", "RGB", "P", "1"):
        rgb = img.convert("RGB" if img.mode != "1" else "L")
        return _to_float(rgb, path)[..., 0] if img.mode != "1" else _to_float(rgb, path)
    raise MattingDeployError(f"{path}: unsupported matte mode {img.mode}")


def save_png(path: str | os.PathLike, array: np.ndarray, force: bool = True) -> None:
    """Save a float array in [0, 1] ((H, W) grey or (H, W, 3) RGB) as an 8-bit PNG, atomically."""
    arr = np.clip(np.rint(np.asarray(array, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    with atomic_path(path, force=force) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def resize_plane(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize one float32 plane: area averaging when shrinking, bilinear when enlarging."""
    h, w = plane.shape
    if (h, w) == (height, width):
        return plane.astype(np.float32, copy=False)
    shrink = height <= h and width <= w
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), method)
    return np.asarray(out, dtype=np.float32)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (H, W) or (H, W, C) float32 with :func:`resize_plane`."""
    if image.ndim == 2:
        return resize_plane(image, height, width)
    return np.stack([resize_plane(image[..., c], height, width) for c in range(image.shape[2])], 2)
