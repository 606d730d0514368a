"""Deep guided filter refiner: a learned guided filter lifting low-res outputs to full size.

Guide x = [RGB, grey mean] and target y = [fgr residual, alpha] are box-filtered at low resolution
(``box_filter`` is a learnable depthwise 3x3 conv, 1/9 at init); a small 1x1 conv net maps
(cov_xy, var_x, hidden) to A, with b = mean_y - A mean_x; A and b are resized bilinearly to the
full-resolution guide and applied as A * x + b.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def with_grey(x: Tensor) -> Tensor:
    """[N,3,H,W] -> [N,4,H,W]: RGB plus the channel mean."""
    return torch.cat([x, x.mean(1, keepdim=True)], dim=1)


class DeepGuidedFilterRefiner(nn.Module):
    def __init__(self, hid_channels: int = 16):
        super().__init__()
        self.box_filter = nn.Conv2d(4, 4, 3, padding=1, bias=False, groups=4)
        with torch.no_grad():
            self.box_filter.weight.fill_(1 / 9)
        self.conv = nn.Sequential(
            nn.Conv2d(4 * 2 + hid_channels, hid_channels, 1, bias=False),
            nn.BatchNorm2d(hid_channels),
            nn.ReLU(),
            nn.Conv2d(hid_channels, hid_channels, 1, bias=False),
            nn.BatchNorm2d(hid_channels),
            nn.ReLU(),
            nn.Conv2d(hid_channels, 4, 1, bias=True),
        )

    def forward(
        self,
        fine_src: Tensor,
        base_src: Tensor,
        base_fgr: Tensor,
        base_pha: Tensor,
        base_hid: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """-> (fgr residual [N,3,H,W], alpha [N,1,H,W]) at ``fine_src``'s resolution."""
        fine_x = with_grey(fine_src)
        base_x = with_grey(base_src)
        base_y = torch.cat([base_fgr, base_pha], dim=1)
        mean_x = self.box_filter(base_x)
        mean_y = self.box_filter(base_y)
        cov_xy = self.box_filter(base_x * base_y) - mean_x * mean_y
        var_x = self.box_filter(base_x * base_x) - mean_x * mean_x
        a = self.conv(torch.cat([cov_xy, var_x, base_hid], dim=1))
        b = mean_y - a * mean_x
        size = (fine_src.size(2), fine_src.size(3))
        a = F.interpolate(a, size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size, mode="bilinear", align_corners=False)
        fgr, pha = (a * fine_x + b).split([3, 1], dim=1)
        return fgr, pha
