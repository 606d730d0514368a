"""RVM MattingNetwork: official key layout, shapes, recurrence, refiners, checkpoint round trip."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import NEEDS_TORCH

torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
from torch import nn  # noqa: E402

from matting_deploy.models.rvm import MattingNetwork  # noqa: E402
from matting_deploy.models.rvm.model import onnx_safe_scale  # noqa: E402
from matting_deploy.models.specs import RVM_STATE_CHANNELS, RVM_VARIANTS, rvm_state_shapes  # noqa: E402

REF = Path(__file__).parent / "reference"
VARIANTS = RVM_VARIANTS


def manifest(variant: str) -> dict:
    return json.loads((REF / f"rvm_{variant}_state_dict.json").read_text())


def seeded(variant: str = "mobilenetv3", **kw) -> MattingNetwork:
    """Seeded network in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    net = MattingNetwork(variant, **kw)
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def nets() -> dict[str, MattingNetwork]:
    return {v: seeded(v) for v in VARIANTS}


def shapes(tensors) -> list[list[int]]:
    return [list(t.shape) for t in tensors]


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_matches_manifest(nets, variant):
    ref = manifest(variant)
    sd = nets[variant].state_dict()
    got = [[k, list(t.shape), str(t.dtype).removeprefix("torch.")] for k, t in sd.items()]
    assert got == ref["keys"]
    assert len(sd) == ref["num_keys"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts(nets, variant):
    ref, net = manifest(variant), nets[variant]
    assert sum(p.numel() for p in net.parameters()) == ref["param_count"]
    saved = net.state_dict()  # persistent buffers only: the official checkpoint's layout
    assert sum(b.numel() for k, b in net.named_buffers() if k in saved) == ref["buffer_element_count"]
    per_module = {
        name: sum(p.numel() for p in mod.parameters()) for name, mod in net.named_children()
    }
    assert per_module == ref["param_count_by_submodule"]


def test_batchnorm_conventions(nets):
    """torchvision MobileNetV3 BN uses eps 1e-3; every other BN keeps PyTorch's 1e-5."""
    for variant, net in nets.items():
        for name, m in net.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                mobilenet_backbone = variant == "mobilenetv3" and name.startswith("backbone.")
                assert m.eps == (1e-3 if mobilenet_backbone else 1e-5), name
    box = nets["mobilenetv3"].refiner.box_filter.weight
    assert isinstance(box, nn.Parameter) and torch.all(box == 1 / 9)


@pytest.mark.parametrize(
    ("variant", "case", "size", "ratio"),
    [
        ("mobilenetv3", "src_1x3x480x288_ratio1", (480, 288), 1.0),
        ("mobilenetv3", "src_1x3x1080x1920_ratio0.25", (1080, 1920), 0.25),
        ("resnet50", "src_1x3x1080x1920_ratio0.25", (1080, 1920), 0.25),
    ],
)
@torch.no_grad()
def test_forward_shapes_match_manifest(nets, variant, case, size, ratio):
    expected = manifest(variant)["forward"]["shapes"][case]
    out = nets[variant](torch.rand(1, 3, *size), downsample_ratio=ratio)
    assert shapes(out) == [expected[k] for k in ("fgr", "pha", "r1", "r2", "r3", "r4")]


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_two_steps_feed_states_back(nets, variant):
    net = nets[variant]
    src = torch.rand(2, 1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    fgr, pha, *rec = net(src[:, 0])
    want = net.state_shapes(64, 96, batch=2)
    assert [tuple(r.shape) for r in rec] == want
    assert fgr.shape == (2, 3, 64, 96) and pha.shape == (2, 1, 64, 96)
    assert 0 <= pha.min() and pha.max() <= 1 and 0 <= fgr.min() and fgr.max() <= 1
    fgr2, pha2, *rec2 = net(src[:, 0], *rec)
    assert shapes(rec2) == shapes(rec)
    # the recurrence matters: the same frame with a warm state gives a different matte
    assert not torch.equal(pha2, pha)
    # explicit zero states are the same as None
    zeros = [torch.zeros(s) for s in want]
    assert torch.equal(net(src[:, 0], *zeros)[1], pha)


@torch.no_grad()
def test_clip_input_equals_frame_by_frame(nets):
    net = nets["mobilenetv3"]
    clip = torch.rand(2, 3, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    fgr, pha, *rec = net(clip, downsample_ratio=0.5)
    assert fgr.shape == (2, 3, 3, 48, 64) and pha.shape == (2, 3, 1, 48, 64)
    state: list = [None] * 4
    for t in range(3):
        f_t, p_t, *state = net(clip[:, t], *state, downsample_ratio=0.5)
        torch.testing.assert_close(p_t, pha[:, t], atol=1e-5, rtol=0)
        torch.testing.assert_close(f_t, fgr[:, t], atol=1e-5, rtol=0)
    for a, b in zip(state, rec, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@torch.no_grad()
def test_segmentation_pass(nets):
    seg, *rec = nets["mobilenetv3"](torch.rand(1, 3, 64, 96), segmentation_pass=True)
    assert seg.shape == (1, 1, 64, 96)
    assert shapes(rec) == [
        list(s) for s in rvm_state_shapes(RVM_STATE_CHANNELS["mobilenetv3"], 64, 96)
    ]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("h", "w", "ratio"), [(100, 70, 1.0), (75, 51, 0.5), (90, 64, 0.7), (66, 99, 0.3)]
)
@torch.no_grad()
def test_state_shapes_agree_with_specs(nets, variant, h, w, ratio):
    """specs.rvm_state_shapes (used by exporters and runners) is what the network really returns."""
    net = nets[variant]
    _, _, *rec = net(torch.rand(1, 3, h, w), downsample_ratio=ratio)
    assert [tuple(r.shape) for r in rec] == rvm_state_shapes(
        RVM_STATE_CHANNELS[variant], h, w, ratio
    )
    assert net.state_shapes(h, w, ratio) == rvm_state_shapes(
        RVM_STATE_CHANNELS[variant], h, w, ratio
    )


@pytest.mark.parametrize("refiner", ["deep_guided_filter", "fast_guided_filter"])
@torch.no_grad()
def test_refiners_at_half_ratio(refiner):
    net = seeded(refiner=refiner)
    src = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    fgr, pha, *rec = net(src, downsample_ratio=0.5)
    assert fgr.shape == (1, 3, 64, 96) and pha.shape == (1, 1, 64, 96)
    assert [tuple(r.shape) for r in rec] == net.state_shapes(64, 96, 0.5)
    assert 0 <= pha.min() and pha.max() <= 1
    # official behaviour: refiner skipped at ratio 1 unless always_refine
    plain = net(src)[1]
    refined = net(src, always_refine=True)[1]
    assert not torch.allclose(plain, refined)
    net.always_refine = True
    torch.testing.assert_close(net(src)[1], refined, atol=0, rtol=0)


@torch.no_grad()
def test_deep_refiner_uses_its_box_filter():
    net = seeded()
    src = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    before = net(src, downsample_ratio=0.5)[1]
    net.refiner.box_filter.weight.mul_(0.5)
    assert not torch.allclose(net(src, downsample_ratio=0.5)[1], before)


def test_fast_guided_filter_reproduces_a_strong_guide():
    """With target == guide and high local variance, the guided filter returns (about) the guide."""
    from matting_deploy.models.rvm.fast_guided_filter import FastGuidedFilter

    gen = torch.Generator().manual_seed(5)
    x = torch.rand(1, 4, 16, 16, generator=gen)
    out = FastGuidedFilter(1, 1e-8)(x, x, x)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # borders are zero-padded
    torch.testing.assert_close(out[inner], x[inner], atol=1e-3, rtol=0)


def test_state_dict_round_trip(tmp_path):
    net = seeded()
    path = tmp_path / "rvm.pth"
    torch.save(net.state_dict(), path)
    torch.manual_seed(123)
    fresh = MattingNetwork("mobilenetv3")
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    fresh.eval()
    src = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for ratio in (1.0, 0.5):
            for a, b in zip(
                net(src, downsample_ratio=ratio), fresh(src, downsample_ratio=ratio), strict=True
            ):
                assert torch.equal(a, b)


def test_encoder_normalisation_is_a_non_persistent_buffer():
    """mean/std follow .to()/.double() (no per-frame tensor creation: CUDA-graph capture works)
    and stay out of state_dict (the official checkpoint has no such keys)."""
    net = seeded()
    names = {k for k, _ in net.named_buffers()}
    assert {"backbone.mean", "backbone.std"} <= names
    assert not {"backbone.mean", "backbone.std"} & set(net.state_dict())
    src = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        want = net(src)[1]
        got = net.double()(src.double())[1]
    assert net.backbone.mean.dtype == torch.float64
    torch.testing.assert_close(got.float(), want, atol=1e-5, rtol=0)


def test_strict_load_rejects_other_variant(nets):
    with pytest.raises(RuntimeError, match="Missing key"):
        MattingNetwork("mobilenetv3").load_state_dict(nets["resnet50"].state_dict(), strict=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        MattingNetwork("mobilenetv2")
    with pytest.raises(ValueError, match="refiner"):
        MattingNetwork(refiner="guided")


@pytest.mark.parametrize(
    ("ratio", "sizes"),
    [
        (0.7, (90, 64)),
        (0.7, (170, 330)),
        (0.25, (1080, 1920)),
        (0.4, (480, 288)),
        (0.375, (101, 77)),
    ],
)
def test_onnx_safe_scale_sizes_like_pytorch(ratio, sizes):
    scale = onnx_safe_scale(ratio, sizes)
    assert abs(scale - ratio) < 1e-6
    for s in sizes:
        assert int(np.float32(scale) * np.float32(s)) == math.floor(
            s * ratio
        )  # ONNX runtimes (float32)
        assert math.floor(scale * s) == math.floor(s * ratio)  # PyTorch (float64)


def test_onnx_export_matches_pytorch(tmp_path):
    """Legacy exporter, opset 17, static states; 90x64 at 0.7 is where float32 sizing rounds up."""
    ort = pytest.importorskip("onnxruntime")
    net, ratio, (h, w) = seeded(), 0.7, (90, 64)

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, src, r1, r2, r3, r4):
            return tuple(self.net(src, r1, r2, r3, r4, downsample_ratio=ratio))

    graph = Graph().eval()
    states = [torch.zeros(s) for s in net.state_shapes(h, w, ratio)]
    path = tmp_path / "rvm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (torch.rand(1, 3, h, w), *states),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["src", "r1i", "r2i", "r3i", "r4i"],
            output_names=["fgr", "pha", "r1o", "r2o", "r3o", "r4o"],
        )
    graph.eval()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    torch_states, ort_states = states, [s.numpy() for s in states]
    for _ in range(2):
        src = rng.random((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            _, pha, *torch_states = graph(torch.from_numpy(src), *torch_states)
        out = sess.run(None, {"src": src, **{f"r{i + 1}i": s for i, s in enumerate(ort_states)}})
        ort_states = out[2:]
        assert np.abs(out[1] - pha.numpy()).max() < 1e-4
