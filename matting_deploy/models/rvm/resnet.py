"""ResNet-50 encoder of RVM with torchvision's module names (layer4 dilated, output stride 16).

No input normalisation: RVM feeds RGB in [0,1] straight into ``conv1``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .mobilenetv3 import _init_weights


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 (x4 channels), with an optional projection shortcut."""

    expansion = 4

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(y + skip)


class ResNet50Encoder(nn.Module):
    """RGB [0,1] -> [f1 (64, 1/2), f2 (256, 1/4), f3 (512, 1/8), f4 (2048, 1/16)]."""

    channels = (64, 256, 512, 2048)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._cin, self._dilation = 64, 1
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2, dilate=True)
        del self._cin, self._dilation
        _init_weights(self)

    def _make_layer(
        self, planes: int, blocks: int, stride: int = 1, dilate: bool = False
    ) -> nn.Sequential:
        first_dilation = self._dilation
        if dilate:  # trade the stride for dilation (torchvision replace_stride_with_dilation)
            self._dilation *= stride
            stride = 1
        cout = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self._cin != cout:
            downsample = nn.Sequential(
                nn.Conv2d(self._cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        layers = [Bottleneck(self._cin, planes, stride, first_dilation, downsample)]
        layers += [Bottleneck(cout, planes, dilation=self._dilation) for _ in range(1, blocks)]
        self._cin = cout
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer4(self.layer3(f3))
        return [f1, f2, f3, f4]
