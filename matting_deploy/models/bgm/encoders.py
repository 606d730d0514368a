"""The four encoders and the three selector combiners of the Background Matting v1 generator."""

from __future__ import annotations

from torch import nn

from .blocks import down, pointwise, stem


def image_encoder(in_channels: int, ngf: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The image encoder in two parts (keys ``model_enc1.*`` and ``model_enc2.*``).

    Part 1 ends at 1/2 resolution with ``2*ngf`` channels (the foreground head's skip input);
    part 2 goes on to 1/4 resolution with ``4*ngf`` channels.
    """
    enc1 = nn.Sequential(*stem(in_channels, ngf), *down(ngf, 2 * ngf))
    enc2 = nn.Sequential(*down(2 * ngf, 4 * ngf))
    return enc1, enc2


def side_encoder(in_channels: int, ngf: int) -> nn.Sequential:
    """Background, segmentation and multi-frame encoder: 7x7 stem, two stride-2 convs -> ``4*ngf``
    channels at 1/4 resolution (keys ``.1`` stem conv, ``.4`` and ``.7`` the strided convs)."""
    return nn.Sequential(*stem(in_channels, ngf), *down(ngf, 2 * ngf), *down(2 * ngf, 4 * ngf))


def selector(feature_channels: int, nf_part: int) -> nn.Sequential:
    """A 1x1 "selector" combiner: image features concatenated with one side's -> ``nf_part``."""
    return nn.Sequential(*pointwise(2 * feature_channels, nf_part))
