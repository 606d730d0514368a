"""RVM's recurrent decoder: ConvGRU on half the channels at 1/16..1/2, then an output block.

All tensors are 4-D. A clip of ``steps`` frames travels folded as [B*steps, C, H, W] (frame index
``b*steps + t``); only :class:`ConvGRU` unfolds it to run the recurrence over time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvGRU(nn.Module):
    """Convolutional GRU: r, z = sigmoid(ih[x, h]); c = tanh(hh[x, r*h]); h' = (1-z) h + z c."""

    def __init__(self, channels: int, kernel: int = 3, padding: int = 1):
        super().__init__()
        self.channels = channels
        self.ih = nn.Sequential(
            nn.Conv2d(2 * channels, 2 * channels, kernel, padding=padding), nn.Sigmoid()
        )
        self.hh = nn.Sequential(
            nn.Conv2d(2 * channels, channels, kernel, padding=padding), nn.Tanh()
        )

    def step(self, x: Tensor, h: Tensor) -> Tensor:
        r, z = self.ih(torch.cat([x, h], dim=1)).split(self.channels, dim=1)
        c = self.hh(torch.cat([x, r * h], dim=1))
        return (1 - z) * h + z * c

    def forward(self, x: Tensor, h: Tensor | None, steps: int = 1) -> tuple[Tensor, Tensor]:
        """x [B*steps, C, H, W], h [B, C, H, W] or None (zeros) -> (outputs like x, last state)."""
        if h is None:
            h = x.new_zeros((x.size(0) // steps, x.size(1), x.size(2), x.size(3)))
        if steps == 1:
            h = self.step(x, h)
            return h, h
        outs = []
        for xt in x.unflatten(0, (-1, steps)).unbind(1):
            h = self.step(xt, h)
            outs.append(h)
        return torch.stack(outs, 1).flatten(0, 1), h


class BottleneckBlock(nn.Module):
    """decode4: GRU over the second half of the LR-ASPP channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.gru = ConvGRU(channels // 2)

    def forward(self, x: Tensor, r: Tensor | None, steps: int = 1) -> tuple[Tensor, Tensor]:
        a, b = x.split(self.channels // 2, dim=1)
        b, r = self.gru(b, r, steps)
        return torch.cat([a, b], dim=1), r


def _upsample2x(x: Tensor, like: Tensor) -> Tensor:
    """Bilinear x2 (half-pixel), cropped to ``like``'s height and width (odd sizes round up)."""
    x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return x[:, :, : like.size(2), : like.size(3)]


class UpsamplingBlock(nn.Module):
    """Upsample, concat skip feature and pooled source, conv-BN-ReLU, GRU on half the channels."""

    def __init__(self, cin: int, skip: int, src: int, cout: int):
        super().__init__()
        self.out_channels = cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin + skip + src, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )
        self.gru = ConvGRU(cout // 2)

    def forward(
        self, x: Tensor, f: Tensor, s: Tensor, r: Tensor | None, steps: int = 1
    ) -> tuple[Tensor, Tensor]:
        x = self.conv(torch.cat([_upsample2x(x, s), f, s], dim=1))
        a, b = x.split(self.out_channels // 2, dim=1)
        b, r = self.gru(b, r, steps)
        return torch.cat([a, b], dim=1), r


class OutputBlock(nn.Module):
    """decode0: upsample to input resolution, concat the source, two conv-BN-ReLU (no GRU)."""

    def __init__(self, cin: int, src: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin + src, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        return self.conv(torch.cat([_upsample2x(x, s), s], dim=1))


class AvgPool(nn.Module):
    """Source pyramid s1, s2, s3 (2x2 average, ceil mode, padding not counted)."""

    def __init__(self):
        super().__init__()
        self.avgpool = nn.AvgPool2d(2, 2, count_include_pad=False, ceil_mode=True)

    def forward(self, s0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s1 = self.avgpool(s0)
        s2 = self.avgpool(s1)
        return s1, s2, self.avgpool(s2)


class RecurrentDecoder(nn.Module):
    """(s0, f1..f4, r1..r4) -> (hidden [., 16, H, W], r1, r2, r3, r4)."""

    def __init__(self, feature_channels: tuple[int, ...], decoder_channels: tuple[int, ...]):
        super().__init__()
        f1, f2, f3, f4 = feature_channels
        d3, d2, d1, d0 = decoder_channels
        self.avgpool = AvgPool()
        self.decode4 = BottleneckBlock(f4)
        self.decode3 = UpsamplingBlock(f4, f3, 3, d3)
        self.decode2 = UpsamplingBlock(d3, f2, 3, d2)
        self.decode1 = UpsamplingBlock(d2, f1, 3, d1)
        self.decode0 = OutputBlock(d1, 3, d0)
        # recurrent state channels r1..r4
        self.state_channels = (d1 // 2, d2 // 2, d3 // 2, f4 // 2)

    def forward(
        self,
        s0: Tensor,
        f1: Tensor,
        f2: Tensor,
        f3: Tensor,
        f4: Tensor,
        r1: Tensor | None,
        r2: Tensor | None,
        r3: Tensor | None,
        r4: Tensor | None,
        steps: int = 1,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        s1, s2, s3 = self.avgpool(s0)
        x4, r4 = self.decode4(f4, r4, steps)
        x3, r3 = self.decode3(x4, f3, s3, r3, steps)
        x2, r2 = self.decode2(x3, f2, s2, r2, steps)
        x1, r1 = self.decode1(x2, f1, s1, r1, steps)
        return self.decode0(x1, s0), r1, r2, r3, r4


class Projection(nn.Module):
    """1x1 conv head (key ``conv``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)
