"""The residual trunk and the alpha and foreground decoders of the Background Matting v1 generator."""

from __future__ import annotations

from torch import nn

from .blocks import ResnetBlock, head, pointwise, up


def residual_trunk(in_channels: int, dim: int, blocks: int) -> nn.Sequential:
    """1x1 conv (no bias) -> BN -> ReLU, then ``blocks`` residual blocks (key ``model_res_dec``)."""
    return nn.Sequential(*pointwise(in_channels, dim), *(ResnetBlock(dim) for _ in range(blocks)))


def residual_stack(dim: int, blocks: int) -> nn.Sequential:
    """``blocks`` residual blocks at 1/4 resolution (``model_res_dec_al`` / ``model_res_dec_fg``)."""
    return nn.Sequential(*(ResnetBlock(dim) for _ in range(blocks)))


def alpha_decoder(ngf: int) -> nn.Sequential:
    """1/4 -> full resolution: two upsampling convs (4*ngf -> 2*ngf -> ngf), 7x7 head, tanh."""
    return nn.Sequential(*up(4 * ngf, 2 * ngf), *up(2 * ngf, ngf), *head(ngf, 1), nn.Tanh())


def foreground_up(ngf: int) -> nn.Sequential:
    """1/4 -> 1/2 resolution, 4*ngf -> 2*ngf channels (key ``model_dec_fg1``)."""
    return nn.Sequential(*up(4 * ngf, 2 * ngf))


def foreground_head(ngf: int, out_channels: int) -> nn.Sequential:
    """1/2 -> full resolution from [upsampled fg features, first image features] (4*ngf channels):
    one upsampling conv to ``ngf``, then a 7x7 head with no activation (key ``model_fg_out``)."""
    return nn.Sequential(*up(4 * ngf, ngf), *head(ngf, out_channels))
