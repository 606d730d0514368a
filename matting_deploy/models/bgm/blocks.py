"""Layer groups of the Background Matting v1 generator, in the official module order.

The official code builds every stage as a flat ``nn.Sequential``; the checkpoint keys are the
positions in those lists (``model_enc_back.7.weight``), so these helpers return lists of layers in
exactly that order, parameter-free layers (padding, ReLU, Upsample) included.
"""

from __future__ import annotations

from torch import Tensor, nn


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True
) -> list[nn.Module]:
    """Conv2d (zero padding) -> BatchNorm2d -> ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=bias),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def stem(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Reflection pad 3 -> 7x7 conv (bias) -> BN -> ReLU: the first layers of every encoder."""
    return [nn.ReflectionPad2d(3), *conv_bn_relu(in_channels, out_channels, 7)]


def down(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 stride-2 conv (zero pad 1, bias) -> BN -> ReLU: halves H and W (rounding up)."""
    return conv_bn_relu(in_channels, out_channels, 3, stride=2, padding=1)


def up(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Bilinear x2 upsampling (align_corners=True) -> 3x3 conv (zero pad 1, bias) -> BN -> ReLU."""
    return [
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        *conv_bn_relu(in_channels, out_channels, 3, padding=1),
    ]


def pointwise(in_channels: int, out_channels: int) -> list[nn.Module]:
    """1x1 conv without bias -> BN -> ReLU (the selector combiners and the decoder's input)."""
    return conv_bn_relu(in_channels, out_channels, 1, bias=False)


def head(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Reflection pad 3 -> 7x7 conv (bias): the last layers of the alpha and foreground decoders."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, out_channels, kernel_size=7, padding=0)]


class ResnetBlock(nn.Module):
    """``x + conv_block(x)``; conv_block = (reflect pad 1, 3x3 conv, BN, ReLU, reflect pad 1, 3x3 conv, BN).

    The official block with ``padding_type='reflect'``, ``use_dropout=False``, ``use_bias=True``,
    the only configuration ``ResnetConditionHR`` builds. No ReLU after the sum.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)
