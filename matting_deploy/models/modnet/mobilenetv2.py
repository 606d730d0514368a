"""MobileNetV2 trunk with MODNet's key layout (``model.features.0`` .. ``features.18``).

No classifier: MODNet builds it with ``num_classes=None``. The wrapper returns the five stage
outputs (strides 2, 4, 8, 16, 32) that MODNet's low- and high-resolution branches consume.
"""

from __future__ import annotations

from torch import Tensor, nn

# (expansion t, output channels c, repeats n, first stride s) for each inverted-residual stage.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
# features[a:b] for the stages whose outputs are enc2x, enc4x, enc8x, enc16x, enc32x.
STAGE_SLICES = ((0, 2), (2, 4), (4, 7), (7, 14), (14, 19))
ENC_CHANNELS = (16, 24, 32, 96, LAST_CHANNELS)


def conv_bn_relu6(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    """Conv (no bias) + BatchNorm + ReLU6 as a flat list of layers."""
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when expansion is 1) -> depthwise 3x3 -> linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = round(cin * expansion)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += conv_bn_relu6(cin, hidden, 1)
        layers += conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) trunk: stem, 17 inverted residuals, 1x1 conv to 1280 channels."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        stem = nn.Sequential(*conv_bn_relu6(in_channels, STEM_CHANNELS, 3, 2))
        features: list[nn.Module] = [stem]
        cin = STEM_CHANNELS
        for t, c, n, s in STAGES:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(nn.Sequential(*conv_bn_relu6(cin, LAST_CHANNELS, 1)))
        self.features = nn.Sequential(*features)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class MobileNetV2Backbone(nn.Module):
    """MODNet's backbone wrapper: ``self.model`` is the trunk; forward gives 5 stage outputs."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.model = MobileNetV2(in_channels)
        self.enc_channels = list(ENC_CHANNELS)

    def forward(self, x: Tensor) -> list[Tensor]:
        """[enc2x, enc4x, enc8x, enc16x, enc32x]."""
        feats = []
        for start, stop in STAGE_SLICES:
            for i in range(start, stop):
                x = self.model.features[i](x)
            feats.append(x)
        return feats
