"""RVM ``MattingNetwork``: encoder -> LR-ASPP -> recurrent decoder -> projection [-> refiner].

State-dict compatible with the official checkpoints (``rvm_mobilenetv3.pth``, ``rvm_resnet50.pth``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..specs import RVM_VARIANTS, onnx_safe_scale, rvm_state_shapes
from .decoder import Projection, RecurrentDecoder
from .deep_guided_filter import DeepGuidedFilterRefiner
from .fast_guided_filter import FastGuidedFilterRefiner
from .lraspp import LRASPP
from .mobilenetv3 import MobileNetV3LargeEncoder
from .resnet import ResNet50Encoder

VARIANTS = RVM_VARIANTS
REFINERS = ("deep_guided_filter", "fast_guided_filter")


class ResizeByRatio(torch.autograd.Function):
    """Bilinear resize by a runtime ratio tensor [1]; exports as ONNX Resize with scales [1,1,r,r].

    Lets a ``--dynamic`` export keep ``downsample_ratio`` as a graph input, as the official
    release does (tracing cannot take a tensor ``scale_factor``).
    """

    @staticmethod
    def forward(ctx, x: Tensor, ratio: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=float(ratio.reshape(-1)[0]), mode="bilinear",
                             align_corners=False, recompute_scale_factor=False)

    @staticmethod
    def symbolic(g, x, ratio):
        ones = g.op("Constant", value_t=torch.ones(2, dtype=torch.float32))
        scales = g.op("Concat", ones, ratio, ratio, axis_i=0)
        roi = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        return g.op("Resize", x, roi, scales, mode_s="linear",
                    coordinate_transformation_mode_s="pytorch_half_pixel")


class MattingNetwork(nn.Module):
    """RVM: ``forward(src, r1..r4, downsample_ratio) -> [fgr, pha, r1, r2, r3, r4]``.

    ``always_refine=True`` runs the refiner even at ``downsample_ratio == 1`` (as the official ONNX
    release does); the default False is the official PyTorch behaviour (refiner skipped at 1).
    """

    def __init__(
        self,
        variant: str = "mobilenetv3",
        refiner: str = "deep_guided_filter",
        pretrained_backbone: bool = False,
        always_refine: bool = False,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        if refiner not in REFINERS:
            raise ValueError(f"refiner must be one of {REFINERS}, not {refiner!r}")
        if pretrained_backbone:
            raise ValueError(
                "pretrained_backbone is not supported (load a full checkpoint instead)"
            )
        self.variant = variant
        self.always_refine = always_refine
        if variant == "mobilenetv3":
            self.backbone = MobileNetV3LargeEncoder()
            self.aspp = LRASPP(960, 128)
            self.decoder = RecurrentDecoder((16, 24, 40, 128), (80, 40, 32, 16))
        else:
            self.backbone = ResNet50Encoder()
            self.aspp = LRASPP(2048, 256)
            self.decoder = RecurrentDecoder((64, 256, 512, 256), (128, 64, 32, 16))
        self.project_mat = Projection(16, 4)
        self.project_seg = Projection(16, 1)
        self.refiner = (
            DeepGuidedFilterRefiner()
            if refiner == "deep_guided_filter"
            else FastGuidedFilterRefiner()
        )

    @property
    def state_channels(self) -> tuple[int, int, int, int]:
        """Channels of r1..r4 (mobilenetv3: 16, 20, 40, 64; resnet50: 16, 32, 64, 128)."""
        return self.decoder.state_channels

    def state_shapes(
        self, height: int, width: int, downsample_ratio: float = 1.0, batch: int = 1
    ) -> list[tuple[int, int, int, int]]:
        """Shapes of r1..r4 for a ``batch x 3 x height x width`` source (specs.rvm_state_shapes)."""
        return rvm_state_shapes(self.state_channels, height, width, downsample_ratio, batch)

    def forward(
        self,
        src: Tensor,
        r1: Tensor | None = None,
        r2: Tensor | None = None,
        r3: Tensor | None = None,
        r4: Tensor | None = None,
        downsample_ratio: float | Tensor = 1,
        segmentation_pass: bool = False,
        always_refine: bool | None = None,
    ) -> list[Tensor]:
        """src RGB [0,1], [B,3,H,W] or a clip [B,T,3,H,W]; None states start from zeros.

        Returns [fgr, pha, r1, r2, r3, r4] (fgr/pha clamped to [0,1], shaped like ``src``), or
        [seg, r1, r2, r3, r4] (raw logits) with ``segmentation_pass``. States are 4-D (last frame).
        """
        clip = src.dim() == 5
        steps = src.size(1) if clip else 1
        if clip:
            src = src.flatten(0, 1)
        refine = self.always_refine if always_refine is None else always_refine
        if isinstance(downsample_ratio, Tensor):  # runtime ratio: resize and refine always
            src_sm = ResizeByRatio.apply(src, downsample_ratio.to(src.dtype))
            refine = True
        elif downsample_ratio != 1:
            scale = downsample_ratio
            if torch.jit.is_tracing():  # the exported Resize must size like eager PyTorch
                scale = onnx_safe_scale(
                    float(downsample_ratio), (int(src.size(2)), int(src.size(3)))
                )
            src_sm = F.interpolate(
                src,
                scale_factor=scale,
                mode="bilinear",
                align_corners=False,
                recompute_scale_factor=False,
            )
        else:
            src_sm = src
        f1, f2, f3, f4 = self.backbone(src_sm)
        f4 = self.aspp(f4)
        hid, *rec = self.decoder(src_sm, f1, f2, f3, f4, r1, r2, r3, r4, steps)
        if segmentation_pass:
            seg = self.project_seg(hid)
            return [seg.unflatten(0, (-1, steps)) if clip else seg, *rec]
        fgr_residual, pha = self.project_mat(hid).split([3, 1], dim=1)
        if refine or not isinstance(downsample_ratio, Tensor) and downsample_ratio != 1:
            fgr_residual, pha = self.refiner(src, src_sm, fgr_residual, pha, hid)
        fgr = (fgr_residual + src).clamp(0.0, 1.0)
        pha = pha.clamp(0.0, 1.0)
        if clip:
            fgr, pha = fgr.unflatten(0, (-1, steps)), pha.unflatten(0, (-1, steps))
        return [fgr, pha, *rec]
