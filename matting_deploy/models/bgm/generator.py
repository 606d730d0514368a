"""Background Matting v1 generator (Sengupta et al., CVPR 2020) with the official state_dict layout.

Facts of the official ``ResnetConditionHR`` (senguptaumd/Background-Matting, networks.py) that the
checkpoints depend on (see tests/reference/bgm_v1_state_dict.json):
- four encoders (image, background, segmentation, multi-frame), each a reflection-padded 7x7 stem
  and two stride-2 3x3 convs to 256 channels at 1/4 resolution; the image encoder is split after
  the first stride-2 conv (``model_enc1``) because the foreground head reuses that 1/2-resolution
  feature;
- three 1x1 "selector" combiners; the third, ``comb_multi``, is fed the image and *background*
  features: the multi-frame input never reaches the outputs, though ``model_enc_multi``'s weights
  are in every checkpoint (kept here for strict loading, not evaluated);
- a 1x1 conv and 7 residual blocks shared by both heads, then 3 residual blocks per head;
- bilinear x2 upsampling with align_corners=True in the decoders; tanh on alpha, none on the
  foreground.
Inputs are in [-1, 1]; H and W must be multiples of 4 (see ``models.specs.bgm_size_problem``).
Outputs: alpha in [-1, 1] and foreground (unbounded, nominally [-1, 1]).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .decoders import alpha_decoder, foreground_head, foreground_up, residual_stack, residual_trunk
from .encoders import image_encoder, selector, side_encoder


class ResnetConditionHR(nn.Module):
    """``forward(image, back, seg, multi=None) -> (alpha, fg)``; the official generator.

    ``input_nc`` is the channel count of (image, back, seg, multi); ``output_nc`` counts alpha plus
    the foreground channels. ``ngf`` and ``nf_part`` are the official defaults' meaning: encoder
    width and selector width.
    """

    def __init__(
        self,
        input_nc: tuple[int, int, int, int] = (3, 3, 1, 4),
        output_nc: int = 4,
        ngf: int = 64,
        nf_part: int = 64,
        n_blocks1: int = 7,
        n_blocks2: int = 3,
    ):
        super().__init__()
        if n_blocks1 < 0 or n_blocks2 < 0:
            raise ValueError("n_blocks1 and n_blocks2 must be >= 0")
        self.input_nc, self.output_nc, self.ngf = tuple(input_nc), output_nc, ngf
        width = 4 * ngf  # channels at 1/4 resolution
        # Registration order is the state_dict order of the official class.
        self.model_enc1, self.model_enc2 = image_encoder(input_nc[0], ngf)
        self.model_enc_back = side_encoder(input_nc[1], ngf)
        self.model_enc_seg = side_encoder(input_nc[2], ngf)
        self.model_enc_multi = side_encoder(input_nc[3], ngf)
        self.comb_back = selector(width, nf_part)
        self.comb_seg = selector(width, nf_part)
        self.comb_multi = selector(width, nf_part)
        self.model_res_dec = residual_trunk(width + 3 * nf_part, width, n_blocks1)
        self.model_res_dec_al = residual_stack(width, n_blocks2)
        self.model_res_dec_fg = residual_stack(width, n_blocks2)
        self.model_al_out = alpha_decoder(ngf)
        self.model_dec_fg1 = foreground_up(ngf)
        self.model_fg_out = foreground_head(ngf, output_nc - 1)

    def forward(
        self, image: Tensor, back: Tensor, seg: Tensor, multi: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Alpha [N,1,H,W] (tanh) and foreground [N,output_nc-1,H,W] from inputs in [-1, 1].

        ``multi`` is accepted for the official signature and ignored: in the official forward its
        features are computed and then never used, so skipping ``model_enc_multi`` changes no
        output (it saves about 26 of the official 805 GFLOPs at 512x512).
        """
        img_feat1 = self.model_enc1(image)
        img_feat = self.model_enc2(img_feat1)
        back_feat = self.model_enc_back(back)
        seg_feat = self.model_enc_seg(seg)
        img_back = torch.cat([img_feat, back_feat], dim=1)
        oth_feat = torch.cat(
            [
                self.comb_back(img_back),
                self.comb_seg(torch.cat([img_feat, seg_feat], dim=1)),
                self.comb_multi(img_back),  # the official quirk: not the multi-frame features
            ],
            dim=1,
        )
        out_dec = self.model_res_dec(torch.cat([img_feat, oth_feat], dim=1))
        alpha = self.model_al_out(self.model_res_dec_al(out_dec))
        fg_feat = self.model_dec_fg1(self.model_res_dec_fg(out_dec))
        fg = self.model_fg_out(torch.cat([fg_feat, img_feat1], dim=1))
        return alpha, fg
