"""PyTorch side of the export: networks wrapped to the ONNX contract, traced to ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import MattingDeployError
from ..models.specs import BGM_INPUTS, BGM_OUTPUTS, RVM_STATE_CHANNELS, rvm_state_shapes
from ..runtimes.base import Runner

SEED = 0
GAIN = 0.7  # BatchNorm scale of the seeded random network (see _settle_norm_stats)


class ModnetGraph(nn.Module):
    """src RGB [0,1] -> pha; MODNet's (x-0.5)/0.5 normalisation lives in the graph."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.net((src - 0.5) / 0.5, True)[2]


class RvmGraph(nn.Module):
    """(src, r1i..r4i) -> (fgr, pha, r1o..r4o) at a fixed downsample ratio."""

    def __init__(self, net: nn.Module, downsample_ratio: float):
        super().__init__()
        self.net = net
        self.downsample_ratio = float(downsample_ratio)

    def forward(self, src, r1, r2, r3, r4):
        fgr, pha, *states = self.net(src, r1, r2, r3, r4, downsample_ratio=self.downsample_ratio)
        return (fgr, pha, *states)


class RvmDynamicGraph(nn.Module):
    """(src, r1i..r4i, downsample_ratio) -> (fgr, pha, r1o..r4o); the refiner always runs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, src, r1, r2, r3, r4, downsample_ratio):
        fgr, pha, *states = self.net(src, r1, r2, r3, r4, downsample_ratio=downsample_ratio)
        return (fgr, pha, *states)


def build_network(model: str, variant: str, weights: str | None) -> nn.Module:
    """The PyTorch network in eval mode: official weights when given, else seeded random."""
    torch.manual_seed(SEED)
    if model == "bgm":
        from ..models.bgm import ResnetConditionHR, settle_batchnorm

        net = ResnetConditionHR()
        if weights:
            from ..models.checkpoint import load_checkpoint

            load_checkpoint(net, weights)
        else:
            settle_batchnorm(net, SEED, GAIN)
        return net.eval()
    if model == "modnet":
        from ..models.modnet import MODNet

        net = MODNet()
    else:
        from ..models.rvm import MattingNetwork

        net = MattingNetwork(variant)
    if weights:
        from ..models.checkpoint import load_checkpoint

        load_checkpoint(net, weights)
    else:
        _settle_norm_stats(net, model)
    return net.eval()


@torch.no_grad()
def _settle_norm_stats(net: nn.Module, model: str, batches: int = 2) -> None:
    """Give random BatchNorm layers the running statistics of their own activations.

    Seeded random weights with default statistics let activations grow layer after layer, which
    makes FP32/FP16 parity figures meaningless; a few train-mode passes over seeded inputs give a
    well-conditioned network, like a trained one.
    """
    gen = torch.Generator().manual_seed(SEED)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes
    net.train()
    for _ in range(batches):
        x = torch.rand(2, 3, 96, 64, generator=gen)
        net((x - 0.5) / 0.5, True) if model == "modnet" else net(x)
    for m in net.modules():  # damp each layer's gain: a contractive net, as trained nets are
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.mul_(GAIN)
    net.eval()


def wrap(model: str, net: nn.Module, downsample_ratio: float, dynamic: bool = False) -> nn.Module:
    """The network behind the ONNX contract, in eval mode (export restores the wrapper's mode)."""
    if model == "modnet":
        return ModnetGraph(net).eval()
    if model == "bgm":
        from ..models.bgm import BGMDeploy

        return BGMDeploy(net).eval()
    return (RvmDynamicGraph(net) if dynamic else RvmGraph(net, downsample_ratio)).eval()


def state_shapes(variant: str, height: int, width: int, ratio: float) -> list[tuple[int, ...]]:
    return rvm_state_shapes(RVM_STATE_CHANNELS[variant], height, width, ratio)


def export_onnx(
    graph: nn.Module, model: str, variant: str, height: int, width: int, ratio: float,
    opset: int, dynamic: bool, path: Path,
) -> None:
    """Trace ``graph`` to ONNX at ``path`` (TorchScript exporter: no onnxscript dependency)."""
    src = torch.rand(1, 3, height, width)
    if model == "modnet":
        args, inputs, outputs = (src,), ["src"], ["pha"]
    elif model == "bgm":
        args = (src, torch.rand(1, 3, height, width), torch.rand(1, 1, height, width))
        inputs, outputs = list(BGM_INPUTS), list(BGM_OUTPUTS)
    else:
        states = tuple(torch.zeros(s) for s in state_shapes(variant, height, width, ratio))
        args = (src, *states)
        inputs = ["src", "r1i", "r2i", "r3i", "r4i"]
        if dynamic:
            args, inputs = (*args, torch.tensor([ratio])), [*inputs, "downsample_ratio"]
        outputs = ["fgr", "pha", "r1o", "r2o", "r3o", "r4o"]
    axes = None
    if dynamic:
        axes = {"src": {0: "batch", 2: "height", 3: "width"}, "pha": {0: "batch", 2: "height", 3: "width"}}
        if model == "bgm":
            axes.update({n: axes["src"] for n in ("bgr", "seg", "fgr")})
        if model == "rvm":
            axes["fgr"] = axes["pha"]
            for i in range(1, 5):
                axes[f"r{i}i"] = {0: "batch", 2: f"r{i}_height", 3: f"r{i}_width"}
                axes[f"r{i}o"] = axes[f"r{i}i"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                graph, args, str(path), input_names=inputs, output_names=outputs,
                opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False,
            )
        except Exception as e:
            raise MattingDeployError(f"torch.onnx.export failed ({type(e).__name__}: {e})") from None


class TorchRunner:
    """The PyTorch graph behind the Runner protocol (parity reference)."""

    def __init__(self, graph: nn.Module, model: str, variant: str, ratio: float):
        self.graph, self.model, self.variant, self.ratio = graph, model, variant, ratio
        self.extra = (torch.tensor([ratio]),) if isinstance(graph, RvmDynamicGraph) else ()
        self.state: tuple[torch.Tensor, ...] | None = None
        self.max_activation = 0.0  # largest |value| any layer produced (FP16 headroom)
        for m in graph.modules():
            if not list(m.children()):
                m.register_forward_hook(self._track)

    def _track(self, module: nn.Module, args: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel():
            self.max_activation = max(self.max_activation, float(out.detach().abs().max()))

    @torch.no_grad()
    def run(self, src: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32))
        if self.model == "bgm":
            Runner.check_extra(list(BGM_INPUTS[1:]), extra, "pytorch")
            pha, fgr = self.graph(x, *(torch.from_numpy(np.ascontiguousarray(
                extra[n], dtype=np.float32)) for n in BGM_INPUTS[1:]))
            return {"pha": pha.numpy(), "fgr": fgr.numpy()}
        if self.model == "modnet":
            return {"pha": self.graph(x).numpy()}
        if self.state is None:
            h, w = x.shape[2:]
            self.state = tuple(torch.zeros(s) for s in state_shapes(self.variant, h, w, self.ratio))
        fgr, pha, *states = self.graph(x, *self.state, *self.extra)
        self.state = tuple(states)
        return {"fgr": fgr.numpy(), "pha": pha.numpy()}

    def reset(self) -> None:
        self.state = None

    def close(self) -> None:
        pass
