"""Background Matting v1's official post-processing (``infer --postprocess official``).

From the official test script, on the network's outputs at the image's resolution:

- foreground: the image itself where the raw alpha exceeds 0.95 in tanh units (``pha > 0.975``),
  the predicted foreground elsewhere;
- alpha: kept only in the largest 8-connected component of ``pha > 0.05`` (by pixel count);
- foreground zeroed where alpha <= 0.01.

The official script skips a frame with no component; here its alpha and foreground are zeros and
the caller is told (``found`` False). Connected components: ``scipy.ndimage.label``.
"""

from __future__ import annotations

import numpy as np

IMAGE_FG = 0.975  # (0.95 + 1) / 2: the official threshold on tanh output, in [0, 1] units
COMPONENT = 0.05
FG_ZERO = 0.01
EIGHT = np.ones((3, 3), bool)

POSTPROCESS = ("none", "official")


def largest_component(alpha: np.ndarray, threshold: float = COMPONENT) -> np.ndarray | None:
    """Boolean mask of the largest 8-connected region of ``alpha > threshold`` (None if empty)."""
    from scipy import ndimage

    labels, count = ndimage.label(alpha > threshold, structure=EIGHT)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def official(alpha: np.ndarray, fgr: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(alpha (H, W), fgr (H, W, 3), image (H, W, 3)) -> post-processed (alpha, fgr, found)."""
    fg = np.where((alpha > IMAGE_FG)[..., None], image, fgr)
    keep = largest_component(alpha)
    if keep is None:
        return np.zeros_like(alpha), np.zeros_like(fg), False
    alpha = np.where(keep, alpha, 0).astype(np.float32)
    fg = np.where((alpha > FG_ZERO)[..., None], fg, 0).astype(np.float32)
    return alpha, fg, True
