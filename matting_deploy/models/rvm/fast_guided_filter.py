"""Fast guided filter refiner (no parameters): the classic guided filter with a fixed 3x3 box."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .deep_guided_filter import with_grey


def box_filter(x: Tensor, r: int) -> Tensor:
    """Separable (2r+1)-tap mean with zero padding (borders are not renormalised, as upstream)."""
    c, k = x.size(1), 2 * r + 1
    kx = torch.full((c, 1, 1, k), 1 / k, dtype=x.dtype, device=x.device)
    ky = torch.full((c, 1, k, 1), 1 / k, dtype=x.dtype, device=x.device)
    x = F.conv2d(x, kx, padding=(0, r), groups=c)
    return F.conv2d(x, ky, padding=(r, 0), groups=c)


class FastGuidedFilter(nn.Module):
    def __init__(self, r: int, eps: float = 1e-5):
        super().__init__()
        self.r = r
        self.eps = eps

    def forward(self, lr_x: Tensor, lr_y: Tensor, hr_x: Tensor) -> Tensor:
        mean_x = box_filter(lr_x, self.r)
        mean_y = box_filter(lr_y, self.r)
        cov_xy = box_filter(lr_x * lr_y, self.r) - mean_x * mean_y
        var_x = box_filter(lr_x * lr_x, self.r) - mean_x * mean_x
        a = cov_xy / (var_x + self.eps)
        b = mean_y - a * mean_x
        size = (hr_x.size(2), hr_x.size(3))
        a = F.interpolate(a, size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size, mode="bilinear", align_corners=False)
        return a * hr_x + b


class FastGuidedFilterRefiner(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.guided_filter = FastGuidedFilter(1, 1e-5)

    def forward(
        self,
        fine_src: Tensor,
        base_src: Tensor,
        base_fgr: Tensor,
        base_pha: Tensor,
        base_hid: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Same interface as the deep refiner; ``base_hid`` is unused."""
        out = self.guided_filter(
            with_grey(base_src), torch.cat([base_fgr, base_pha], dim=1), with_grey(fine_src)
        )
        fgr, pha = out.split([3, 1], dim=1)
        return fgr, pha
