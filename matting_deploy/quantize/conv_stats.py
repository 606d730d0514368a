"""Per-Conv statistics of the FP32 inputs on the calibration images, for bias correction and
weight rounding: the mean of every kernel tap over the output positions (of x and of its INT8
rounding Q(x)) and the second moment of sampled input patches.

Convs are 2-D, NCHW, batch 1 (calibration feeds one image at a time); padding is zeros, which Q
keeps at zero, so the tap means give the exact per-channel mean of a Conv's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx


@dataclass
class ConvGeometry:
    """What a Conv does to its input: kernel, stride, padding, dilation, groups."""

    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    group: int = 1

    @classmethod
    def of(cls, node: onnx.NodeProto, weight_shape: tuple[int, ...]) -> ConvGeometry:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise ValueError(f"{node.name}: auto_pad is not supported here")
        p = list(a.get("pads", [0, 0, 0, 0]))
        return cls(tuple(weight_shape[2:]), tuple(a.get("strides", (1, 1))), (p[0], p[1], p[2], p[3]),
                   tuple(a.get("dilations", (1, 1))), int(a.get("group", 1)))

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        t, lft, b, r = self.pads
        return ((h + t + b - dh * (kh - 1) - 1) // sh + 1, (w + lft + r - dw * (kw - 1) - 1) // sw + 1)

    def padded(self, x: np.ndarray) -> np.ndarray:
        t, lft, b, r = self.pads
        return np.pad(x, ((0, 0), (t, b), (lft, r)))


def quantize_input(x: np.ndarray, scale: float) -> np.ndarray:
    """Symmetric INT8 (QuantizeLinear: round half to even, saturate to [-128, 127]) dequantized."""
    return np.clip(np.rint(x / scale), -128, 127).astype(np.float32) * np.float32(scale)


def tap_means(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """(C, kh, kw): mean over the output positions of the input each kernel tap reads."""
    xp = geo.padded(x)
    ho, wo = geo.out_size(*x.shape[1:])
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilations
    out = np.empty((x.shape[0], kh, kw), np.float64)
    for i in range(kh):
        for j in range(kw):
            out[:, i, j] = xp[:, i * dh: i * dh + (ho - 1) * sh + 1: sh,
                              j * dw: j * dw + (wo - 1) * sw + 1: sw].mean(axis=(1, 2), dtype=np.float64)
    return out


def patch_moment(x: np.ndarray, geo: ConvGeometry, positions: int, rng: np.random.Generator) -> np.ndarray:
    """(G, K, K) sum over ``positions`` sampled output positions of patch patch^T per group
    (K = input channels per group x kh x kw)."""
    xp = geo.padded(x)
    ho, wo = geo.out_size(*x.shape[1:])
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilations
    n = min(positions, ho * wo)
    flat = rng.choice(ho * wo, n, replace=False)
    r = (flat // wo)[:, None] * sh + np.arange(kh)[None] * dh  # (P, kh)
    c = (flat % wo)[:, None] * sw + np.arange(kw)[None] * dw  # (P, kw)
    patches = xp[:, r[:, :, None], c[:, None, :]]  # (C, P, kh, kw)
    g = geo.group
    p = patches.reshape(g, -1, n, kh * kw).transpose(0, 2, 1, 3).reshape(g, n, -1)  # (G, P, K)
    return np.matmul(p.transpose(0, 2, 1), p).astype(np.float64)  # float32 products, BLAS


# Weight rounding's patch moment is (G, K, K) float64 and its greedy search costs K sweeps over it:
# Convs with more entries (e.g. MODNet's 5x5 Conv on 1280 channels, K = 32000: 8 GB) keep
# round-to-nearest. RVM MobileNetV3's largest INT8 Conv has K = 1512.
MAX_MOMENT_ENTRIES = 2304 * 2304


@dataclass
class ConvStats:
    """Accumulated statistics of one Conv's input over the calibration images."""

    geo: ConvGeometry
    scale: float  # the INT8 input scale (amax / 127)
    images: int = 0
    mean: np.ndarray | None = None  # (C, kh, kw) tap means of x
    mean_q: np.ndarray | None = None  # same of Q(x)
    moment: np.ndarray | None = None  # (G, K, K) patch second moment (sum)
    samples: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, x: np.ndarray, positions: int, rng: np.random.Generator) -> None:
        """Add one image's input (1, C, H, W); ``positions`` = 0 (or a moment larger than
        :data:`MAX_MOMENT_ENTRIES`) skips the patch moment."""
        x = x[0]
        m, mq = tap_means(x, self.geo), tap_means(quantize_input(x, self.scale), self.geo)
        self.mean = m if self.mean is None else self.mean + m
        self.mean_q = mq if self.mean_q is None else self.mean_q + mq
        k = x.shape[0] // self.geo.group * int(np.prod(self.geo.kernel))
        if positions and self.geo.group * k * k <= MAX_MOMENT_ENTRIES:
            h = patch_moment(x, self.geo, positions, rng)
            self.moment = h if self.moment is None else self.moment + h
            self.samples += min(positions, int(np.prod(self.geo.out_size(*x.shape[1:]))))
        self.images += 1
