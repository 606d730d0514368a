"""MODNet (Ke et al., AAAI 2022) with the official network's math and state_dict layout.

Layout facts the official checkpoints depend on (see tests/reference/modnet_state_dict.json):
- the backbone is registered twice: ``backbone`` and ``lr_branch.backbone`` are one module;
- IBNorm batch-normalises the first int(C/2) channels and instance-normalises the rest (no affine);
- the branch convs keep their bias even before IBNorm;
- the low-resolution branch reweights the 1/32 feature with an SE block (not the paper's e-ASPP);
- ``lr_branch.conv_lr`` and ``hr_branch.conv_hr`` (semantic and detail heads) run only when
  ``inference`` is False.
Input: RGB normalised to [-1, 1], H and W multiples of 32. Outputs are sigmoid probabilities.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .mobilenetv2 import MobileNetV2Backbone


def _resize(x: Tensor, scale: float) -> Tensor:
    """Bilinear resize by a fixed scale factor, half-pixel centres (align_corners=False)."""
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class IBNorm(nn.Module):
    """BatchNorm on the first int(C/2) channels, affine-free InstanceNorm on the remaining ones."""

    def __init__(self, channels: int):
        super().__init__()
        self.bnorm_channels = int(channels / 2)
        self.inorm_channels = channels - self.bnorm_channels
        self.bnorm = nn.BatchNorm2d(self.bnorm_channels, affine=True)
        self.inorm = nn.InstanceNorm2d(self.inorm_channels, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        split = self.bnorm_channels
        # contiguous() keeps the kernels (and so the float rounding) those of the official code.
        bn_x = self.bnorm(x[:, :split].contiguous())
        in_x = self.inorm(x[:, split:].contiguous())
        return torch.cat((bn_x, in_x), dim=1)


class Conv2dIBNormRelu(nn.Module):
    """Conv2d (with bias) [+ IBNorm] [+ ReLU] as ``self.layers`` (keys ``layers.0``, ``.1``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        with_ibn: bool = True,
        with_relu: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True
            )
        ]
        if with_ibn:
            layers.append(IBNorm(out_channels))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: global average pool -> FC/ReLU/FC/sigmoid -> channel weights."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = channels // reduction
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        weights = self.fc(self.pool(x).view(b, c)).view(b, c, 1, 1)
        return x * weights


class LRBranch(nn.Module):
    """Low-resolution (semantic) branch: backbone -> SE on enc32x -> upsample to 1/8."""

    def __init__(self, backbone: MobileNetV2Backbone):
        super().__init__()
        enc = backbone.enc_channels
        self.backbone = backbone
        self.se_block = SEBlock(enc[4], reduction=4)
        self.conv_lr16x = Conv2dIBNormRelu(enc[4], enc[3], 5, padding=2)
        self.conv_lr8x = Conv2dIBNormRelu(enc[3], enc[2], 5, padding=2)
        self.conv_lr = Conv2dIBNormRelu(
            enc[2], 1, 3, stride=2, padding=1, with_ibn=False, with_relu=False
        )

    def forward(self, img: Tensor, inference: bool) -> tuple[Tensor | None, Tensor, list[Tensor]]:
        """-> (pred_semantic at 1/16 or None, lr8x, [enc2x, enc4x])."""
        feats = self.backbone(img)
        enc2x, enc4x, enc32x = feats[0], feats[1], feats[4]
        enc32x = self.se_block(enc32x)
        lr16x = self.conv_lr16x(_resize(enc32x, 2))
        lr8x = self.conv_lr8x(_resize(lr16x, 2))
        pred_semantic = None if inference else torch.sigmoid(self.conv_lr(lr8x))
        return pred_semantic, lr8x, [enc2x, enc4x]


class HRBranch(nn.Module):
    """High-resolution (detail) branch at 1/4 and 1/2 resolution, guided by the image."""

    def __init__(self, hr_channels: int, enc_channels: list[int]):
        super().__init__()
        hr = hr_channels
        self.tohr_enc2x = Conv2dIBNormRelu(enc_channels[0], hr, 1)
        self.conv_enc2x = Conv2dIBNormRelu(hr + 3, hr, 3, stride=2, padding=1)
        self.tohr_enc4x = Conv2dIBNormRelu(enc_channels[1], hr, 1)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1)
        self.conv_hr4x = nn.Sequential(
            Conv2dIBNormRelu(3 * hr + 3, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
        )
        self.conv_hr2x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
        )
        self.conv_hr = nn.Sequential(
            Conv2dIBNormRelu(hr + 3, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, 1, 1, with_ibn=False, with_relu=False),
        )

    def forward(
        self, img: Tensor, enc2x: Tensor, enc4x: Tensor, lr8x: Tensor, inference: bool
    ) -> tuple[Tensor | None, Tensor]:
        """-> (pred_detail at full size or None, hr2x)."""
        img2x = _resize(img, 1 / 2)
        img4x = _resize(img, 1 / 4)
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat((img2x, enc2x), dim=1))
        enc4x = self.tohr_enc4x(enc4x)
        hr4x = self.conv_enc4x(torch.cat((hr4x, enc4x), dim=1))
        lr4x = _resize(lr8x, 2)
        hr4x = self.conv_hr4x(torch.cat((hr4x, lr4x, img4x), dim=1))
        hr2x = self.conv_hr2x(torch.cat((_resize(hr4x, 2), enc2x), dim=1))
        pred_detail = None
        if not inference:
            hr = self.conv_hr(torch.cat((_resize(hr2x, 2), img), dim=1))
            pred_detail = torch.sigmoid(hr)
        return pred_detail, hr2x


class FusionBranch(nn.Module):
    """Fuses the semantic (lr8x) and detail (hr2x) features into the full-size alpha matte."""

    def __init__(self, hr_channels: int, enc_channels: list[int]):
        super().__init__()
        hr = hr_channels
        self.conv_lr4x = Conv2dIBNormRelu(enc_channels[2], hr, 5, padding=2)
        self.conv_f2x = Conv2dIBNormRelu(2 * hr, hr, 3, padding=1)
        self.conv_f = nn.Sequential(
            Conv2dIBNormRelu(hr + 3, int(hr / 2), 3, padding=1),
            Conv2dIBNormRelu(int(hr / 2), 1, 1, with_ibn=False, with_relu=False),
        )

    def forward(self, img: Tensor, lr8x: Tensor, hr2x: Tensor) -> Tensor:
        lr4x = self.conv_lr4x(_resize(lr8x, 2))
        f2x = self.conv_f2x(torch.cat((_resize(lr4x, 2), hr2x), dim=1))
        f = self.conv_f(torch.cat((_resize(f2x, 2), img), dim=1))
        return torch.sigmoid(f)


class MODNet(nn.Module):
    """MODNet with a MobileNetV2 backbone; ``forward(img, inference)`` like the official model.

    ``img`` is [B, 3, H, W] RGB normalised with (x - 0.5) / 0.5, H and W multiples of 32. Returns
    (pred_semantic [B,1,H/16,W/16], pred_detail [B,1,H,W], pred_matte [B,1,H,W]); the first two are
    None when ``inference`` is True.
    """

    def __init__(self, in_channels: int = 3, hr_channels: int = 32):
        super().__init__()
        self.in_channels = in_channels
        self.hr_channels = hr_channels
        self.backbone = MobileNetV2Backbone(in_channels)
        # Same module object under a second name: the official checkpoints hold both key sets.
        self.lr_branch = LRBranch(self.backbone)
        self.hr_branch = HRBranch(hr_channels, self.backbone.enc_channels)
        self.f_branch = FusionBranch(hr_channels, self.backbone.enc_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """The official scheme: Kaiming-uniform convs with zero bias, unit/zero norm affine."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, img: Tensor, inference: bool) -> tuple[Tensor | None, Tensor | None, Tensor]:
        pred_semantic, lr8x, (enc2x, enc4x) = self.lr_branch(img, inference)
        pred_detail, hr2x = self.hr_branch(img, enc2x, enc4x, lr8x, inference)
        pred_matte = self.f_branch(img, lr8x, hr2x)
        return pred_semantic, pred_detail, pred_matte
