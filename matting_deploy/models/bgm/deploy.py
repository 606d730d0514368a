"""The Background Matting v1 generator behind the project's ONNX contract."""

from __future__ import annotations

from torch import Tensor, nn

from .generator import ResnetConditionHR


class BGMDeploy(nn.Module):
    """``(src, bgr, seg) -> (pha, fgr)``, every tensor in [0, 1].

    - ``src`` [N,3,H,W] the frame and ``bgr`` [N,3,H,W] the clean background plate, RGB;
    - ``seg`` [N,1,H,W] the soft person mask.
    The official test script feeds the network ``2*x/255 - 1`` for image and plate and ``2*s - 1``
    for the (eroded, dilated, blurred) mask; the same ``2*x - 1`` happens here, in the graph.
    Outputs: ``pha = (alpha + 1) / 2`` and ``fgr = (fg + 1) / 2``, clipped to [0, 1] as the
    official ``to_image`` does. The official post-processing (image used as foreground where
    alpha is high, largest connected component) is not part of the graph.

    The official multi-frame input is dropped from the contract: in the official forward its
    features are computed and never used (``comb_multi`` is fed the image and background
    features), so no value of it can change an output; ``ResnetConditionHR`` skips its encoder
    and the exported graph has no such input (the TorchScript exporter drops it by itself on the
    official class too).
    """

    def __init__(self, net: ResnetConditionHR):
        super().__init__()
        self.net = net

    def forward(self, src: Tensor, bgr: Tensor, seg: Tensor) -> tuple[Tensor, Tensor]:
        alpha, fg = self.net(src * 2 - 1, bgr * 2 - 1, seg * 2 - 1)
        # Multiplying by 0.5 (exact, like / 2) exports as Mul: the FP16 converter keeps Div in FP32.
        return ((alpha + 1) * 0.5).clamp(0, 1), ((fg + 1) * 0.5).clamp(0, 1)
