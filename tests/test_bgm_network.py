"""Background Matting v1 generator: official key layout, wiring quirks, size rule, ONNX contract."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import NEEDS_TORCH

torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from matting_deploy.models.bgm import BGMDeploy, ResnetConditionHR, seeded_generator, seeded_inputs  # noqa: E402
from matting_deploy.models.specs import BGM_INPUTS, BGM_OUTPUTS, bgm_size_problem  # noqa: E402

MANIFEST = json.loads((Path(__file__).parent / "reference" / "bgm_v1_state_dict.json").read_text())


@pytest.fixture(scope="module")
def net() -> ResnetConditionHR:
    return seeded_generator()


def inputs(h: int = 32, w: int = 32, seed: int = 0, batch: int = 1) -> list[torch.Tensor]:
    """Generator inputs in [-1, 1]: image, back, seg, multi."""
    src, bgr, seg = (torch.from_numpy(a) * 2 - 1 for a in seeded_inputs(h, w, batch, seed))
    multi = torch.rand(batch, 4, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return [src, bgr, seg, multi]


def run(net: nn.Module, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return tuple(t.clone() for t in net(*args))


def test_state_dict_matches_manifest(net):
    got = [[k, list(t.shape), str(t.dtype).removeprefix("torch.")] for k, t in net.state_dict().items()]
    assert got == MANIFEST["keys"]
    assert len(got) == MANIFEST["num_keys"] == 322


def test_parameter_counts(net):
    assert sum(p.numel() for p in net.parameters()) == MANIFEST["param_count"] == 17_908_420
    per_module = {name: sum(p.numel() for p in m.parameters()) for name, m in net.named_children()}
    assert per_module == MANIFEST["param_count_by_submodule"]


def test_flops_at_512_equal_the_official_minus_the_dead_encoder():
    """Counted on the meta device (no compute): our forward plus the multi-frame encoder the
    official forward evaluates and discards is exactly the manifest's 805 GFLOPs."""
    with torch.device("meta"):
        meta = ResnetConditionHR().eval()
        image, back, seg, multi = (torch.zeros(1, c, 512, 512) for c in (3, 3, 1, 4))
    with FlopCounterMode(display=False) as ours:
        alpha, fg = meta(image, back, seg, multi)
    with FlopCounterMode(display=False) as dead:
        meta.model_enc_multi(multi)
    assert [list(alpha.shape), list(fg.shape)] == [MANIFEST["forward"]["outputs"][k] for k in ("alpha", "fg")]
    assert ours.get_total_flops() + dead.get_total_flops() == MANIFEST["flops_512x512"]["total_flops"]


def test_layer_conventions(net):
    ups = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 4  # two in the alpha decoder, two in the foreground decoder
    assert all((m.mode, m.align_corners, m.scale_factor) == ("bilinear", True, 2) for m in ups)
    pads = [m.padding[0] for m in net.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert sorted(pads) == [1] * 2 * 13 + [3] * 6  # 13 residual blocks; 4 stems and 2 heads
    assert [type(m) for m in net.modules() if isinstance(m, (nn.Tanh, nn.Sigmoid))] == [nn.Tanh]
    assert isinstance(net.model_al_out[-1], nn.Tanh) and isinstance(net.model_fg_out[-1], nn.Conv2d)
    for name in ("comb_back", "comb_seg", "comb_multi", "model_res_dec"):
        assert getattr(net, name)[0].bias is None


@pytest.mark.parametrize("hw", [(8, 8), (12, 20), (48, 36)])
def test_output_shapes_at_allowed_sizes(net, hw):
    assert bgm_size_problem(*hw) is None
    alpha, fg = run(net, *inputs(*hw, batch=2)[:3])
    assert alpha.shape == (2, 1, *hw) and fg.shape == (2, 3, *hw)
    assert alpha.abs().max() <= 1


@pytest.mark.parametrize("hw", [(6, 8), (10, 12), (4, 8)])
def test_size_rule_is_exactly_what_the_network_needs(net, hw):
    assert bgm_size_problem(*hw)
    with pytest.raises(RuntimeError):
        run(net, *inputs(*hw)[:3])


def test_multi_input_does_not_reach_the_outputs(net):
    image, back, seg, multi = inputs()
    ref = run(net, image, back, seg, multi)
    for other in (torch.zeros_like(multi), -multi, None):
        assert all(torch.equal(a, b) for a, b in zip(ref, run(net, image, back, seg, other), strict=True))


def test_inputs_src_bgr_seg_each_change_both_outputs(net):
    args = inputs()
    ref = run(net, *args)
    for i in range(3):
        changed = list(args)
        changed[i] = inputs(seed=1)[i]
        for a, b in zip(ref, run(net, *changed), strict=True):
            assert (a - b).abs().max() > 1e-4, i


def test_official_wiring_comb_multi_sees_image_and_background(net):
    """The quirk as in the official forward: comb_multi's input is cat(img_feat, back_feat), so its
    weights matter while the multi-frame encoder's do not; the foreground head gets model_enc1's
    output (1/2 scale) as its second half."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, output: bool):
        def hook(_module, args, out):
            seen[name] = (out if output else args[0]).clone()
        return hook

    hooks = [getattr(net, n).register_forward_hook(keep(n, True)) for n in ("model_enc1", "model_enc2",
                                                                           "model_enc_back")]
    hooks += [getattr(net, n).register_forward_hook(keep(n, False)) for n in ("comb_multi", "model_fg_out")]
    args = inputs()
    try:
        run(net, *args)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(seen["comb_multi"], torch.cat([seen["model_enc2"], seen["model_enc_back"]], 1))
    assert torch.equal(seen["model_fg_out"][:, 128:], seen["model_enc1"])

    ref = run(net, *args)
    probe = seeded_generator()
    with torch.no_grad():
        for p in probe.model_enc_multi.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(ref, run(probe, *args), strict=True))
    with torch.no_grad():
        probe.comb_multi[0].weight.mul_(-1)
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(ref, run(probe, *args), strict=True))


def test_deploy_maps_ranges_like_the_official_script(net):
    src, bgr, seg = (torch.from_numpy(a) for a in seeded_inputs(32, 24, 2, seed=3))
    pha, fgr = run(BGMDeploy(net).eval(), src, bgr, seg)
    alpha, fg = run(net, src * 2 - 1, bgr * 2 - 1, seg * 2 - 1)
    torch.testing.assert_close(pha, (alpha + 1) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(fgr, ((fg + 1) / 2).clamp(0, 1), rtol=0, atol=1e-6)
    assert 0 <= pha.min() and pha.max() <= 1 and 0 <= fgr.min() and fgr.max() <= 1


def test_seeded_generator_is_deterministic_and_well_conditioned(net):
    before = torch.random.get_rng_state()
    again = seeded_generator()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(),
                                                   strict=True))
    other = seeded_generator(seed=1)
    assert not torch.equal(other.model_enc1[1].weight, net.model_enc1[1].weight)
    peak = {}
    hooks = [m.register_forward_hook(lambda _m, _a, out, n=n: peak.__setitem__(n, out.abs().max().item()))
             for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        pha, _ = run(BGMDeploy(net).eval(), *(torch.from_numpy(a) for a in seeded_inputs(64, 64, seed=9)))
    finally:
        for h in hooks:
            h.remove()
    assert max(peak.values()) < 100  # settled statistics: no blow-up through 13 residual blocks
    assert 0.05 < pha.min() and pha.max() < 0.95 and pha.std() > 1e-3  # neither flat nor saturated


def test_seeded_inputs_are_a_composite_over_the_plate():
    src, bgr, seg = seeded_inputs(40, 32, batch=3, seed=4)
    assert src.shape == bgr.shape == (3, 3, 40, 32) and seg.shape == (3, 1, 40, 32)
    assert all(a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 for a in (src, bgr, seg))
    assert np.array_equal(src[seg.repeat(3, 1) == 0], bgr[seg.repeat(3, 1) == 0])  # plate outside the mask
    assert 0.05 < seg.mean() < 0.6 and not np.array_equal(src, seeded_inputs(40, 32, 3, seed=5)[0])


def test_onnx_export_matches_pytorch(tmp_path, net):
    """TorchScript exporter, opset 17, 64x64: the contract's names and no dead input."""
    ort = pytest.importorskip("onnxruntime")
    graph = BGMDeploy(net).eval()
    path = tmp_path / "bgm.onnx"
    args = tuple(torch.from_numpy(a) for a in seeded_inputs(64, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, str(path), opset_version=17, dynamo=False,
                          input_names=list(BGM_INPUTS), output_names=list(BGM_OUTPUTS))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["src", "bgr", "seg"]
    assert [o.name for o in sess.get_outputs()] == ["pha", "fgr"]
    for seed in (1, 2):
        feed = dict(zip(BGM_INPUTS, seeded_inputs(64, 64, seed=seed), strict=True))
        got = sess.run(None, feed)
        want = run(graph, *(torch.from_numpy(a) for a in feed.values()))
        for g, w in zip(got, want, strict=True):
            assert np.abs(g - w.numpy()).max() < 1e-4
