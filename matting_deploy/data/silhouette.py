"""A drawn head-and-shoulders portrait on a textured background: frames the matting models see
as a person, made without any file or network (export's parity frames).

Measured with the official RVM MobileNetV3 ONNX at 480x288 (4 frames from zero state): alpha
spans 0..1 with about 20% of pixels foreground, so FP16/INT8 parity compares real mattes, not
the all-zero alpha that noise frames give.
"""

from __future__ import annotations

import numpy as np

SKIN = np.array([0.87, 0.67, 0.55], np.float32)
HAIR = np.array([0.18, 0.12, 0.08], np.float32)


def portrait(height: int, width: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    """(height, width, 3) float32 in [0, 1]: background pattern + noise, person centred at
    ``0.5 + shift`` of the width (plus a little random offset)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy = rng.uniform(0.5, 3.0, 2)
    bg = np.stack([0.45 + 0.25 * np.sin(2 * np.pi * (fx * xx / width + c * 0.3) + fy * yy / height * 3)
                   for c in range(3)], -1)
    img = 0.7 * bg + 0.18 * rng.random((height, width, 3), dtype=np.float32)
    cx = width * (0.5 + shift + rng.uniform(-0.12, 0.12))
    s = height * rng.uniform(0.9, 1.05)
    hy, rx, ry = height - s * 0.72, s * 0.11, s * 0.145
    head = ((xx - cx) / rx) ** 2 + ((yy - hy) / ry) ** 2 <= 1
    hair = (((xx - cx) / (rx * 1.12)) ** 2 + ((yy - hy + s * 0.02) / (ry * 1.08)) ** 2 <= 1) & (yy < hy - ry * 0.25)
    neck = (np.abs(xx - cx) < s * 0.045) & (yy > hy) & (yy < hy + ry + s * 0.06)
    top = hy + ry + s * 0.04
    torso = (yy >= top) & (np.abs(xx - cx) <= s * 0.16 + (yy - top).clip(0) * 0.35)
    torso |= (((xx - cx) / (s * 0.24)) ** 2 + ((yy - top - s * 0.08) / (s * 0.1)) ** 2 <= 1) & (yy >= top - s * 0.02)
    skin = SKIN * rng.uniform(0.7, 1.05)
    img[torso] = rng.uniform(0.1, 0.8, 3)
    img[neck] = skin * 0.9
    img[head] = skin
    img[hair] = HAIR * rng.uniform(0.5, 1.5)
    for ex in (-0.04, 0.04):  # eyes and mouth
        img[((xx - cx - ex * s) / (s * 0.015)) ** 2 + ((yy - hy + s * 0.01) / (s * 0.01)) ** 2 <= 1] = 0.1
    img[(np.abs(xx - cx) < s * 0.03) & (np.abs(yy - hy - s * 0.07) < s * 0.006)] = (0.6, 0.3, 0.3)
    return img.clip(0, 1).astype(np.float32)
