"""Lite R-ASPP head: a 1x1 conv branch gated by a global-context sigmoid branch."""

from __future__ import annotations

from torch import Tensor, nn


class LRASPP(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.aspp1 = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )
        self.aspp2 = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.aspp1(x) * self.aspp2(x)
