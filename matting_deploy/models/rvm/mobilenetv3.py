"""MobileNetV3-Large encoder of RVM, laid out with torchvision's module names.

The stage list is torchvision's large config with the last stage dilated (output stride 16);
``avgpool``/``classifier`` are absent. BatchNorm uses torchvision's MobileNetV3 settings
(eps 1e-3, momentum 0.01) and ImageNet normalisation happens inside ``forward``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Stage(NamedTuple):
    """One inverted-residual block (torchvision InvertedResidualConfig fields)."""

    cin: int
    kernel: int
    expanded: int
    cout: int
    se: bool
    hswish: bool
    stride: int
    dilation: int


# RVM's MobileNetV3-Large setting (the last three blocks dilated instead of a final stride).
LARGE_STAGES = (
    Stage(16, 3, 16, 16, False, False, 1, 1),
    Stage(16, 3, 64, 24, False, False, 2, 1),
    Stage(24, 3, 72, 24, False, False, 1, 1),
    Stage(24, 5, 72, 40, True, False, 2, 1),
    Stage(40, 5, 120, 40, True, False, 1, 1),
    Stage(40, 5, 120, 40, True, False, 1, 1),
    Stage(40, 3, 240, 80, False, True, 2, 1),
    Stage(80, 3, 200, 80, False, True, 1, 1),
    Stage(80, 3, 184, 80, False, True, 1, 1),
    Stage(80, 3, 184, 80, False, True, 1, 1),
    Stage(80, 3, 480, 112, True, True, 1, 1),
    Stage(112, 3, 672, 112, True, True, 1, 1),
    Stage(112, 5, 672, 160, True, True, 2, 2),
    Stage(160, 5, 960, 160, True, True, 1, 2),
    Stage(160, 5, 960, 160, True, True, 1, 2),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` losing at most 10 % (torchvision)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BatchNorm(eps 1e-3) -> optional activation; keys ``0.*``, ``1.*``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: type[nn.Module] | None = None,
    ):
        padding = (kernel - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False
            ),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global mean -> fc1 -> ReLU -> fc2 -> hard-sigmoid, times the input."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        s = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))
        return s * x


class InvertedResidual(nn.Module):
    """expand 1x1 (if widened) -> depthwise kxk -> [SE] -> project 1x1 (+ input if same shape)."""

    def __init__(self, cfg: Stage):
        super().__init__()
        act = nn.Hardswish if cfg.hswish else nn.ReLU
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.cin:
            layers.append(ConvBNAct(cfg.cin, cfg.expanded, 1, act=act))
        # torchvision: a dilated block keeps stride 1 (this is what makes the output stride 16)
        stride = 1 if cfg.dilation > 1 else cfg.stride
        layers.append(
            ConvBNAct(
                cfg.expanded,
                cfg.expanded,
                cfg.kernel,
                stride,
                groups=cfg.expanded,
                dilation=cfg.dilation,
                act=act,
            )
        )
        if cfg.se:
            layers.append(SqueezeExcite(cfg.expanded, make_divisible(cfg.expanded // 4)))
        layers.append(ConvBNAct(cfg.expanded, cfg.cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = cfg.stride == 1 and cfg.cin == cfg.cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return y + x if self.residual else y


class MobileNetV3LargeEncoder(nn.Module):
    """RGB [0,1] -> [f1 (16, 1/2), f2 (24, 1/4), f3 (40, 1/8), f4 (960, 1/16)]."""

    channels = (16, 24, 40, 960)

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, stride=2, act=nn.Hardswish)]
        layers += [InvertedResidual(cfg) for cfg in LARGE_STAGES]
        last = LARGE_STAGES[-1].cout
        layers.append(ConvBNAct(last, 6 * last, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        # Non-persistent buffers: they follow .to()/.half() (no per-frame host copy, so CUDA-graph
        # capture works) and stay out of state_dict, which matches the official checkpoint.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(-1, 1, 1), persistent=False)
        _init_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        taps = {1: 0, 3: 1, 6: 2, 16: 3}
        out: list[Tensor] = [x] * 4
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                out[taps[i]] = x
        return out


def _init_weights(module: nn.Module) -> None:
    """torchvision's initialisation for its classification backbones."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
