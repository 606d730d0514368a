"""MODNet network: official key layout and shapes, shared backbone, param count, forward shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import NEEDS_TORCH

torch = pytest.importorskip("torch", reason=NEEDS_TORCH)

from matting_deploy.models.modnet import IBNorm, MODNet  # noqa: E402

MANIFEST = json.loads((Path(__file__).parent / "reference" / "modnet_state_dict.json").read_text())


@pytest.fixture(scope="module")
def net() -> MODNet:
    torch.manual_seed(0)
    return MODNet().eval()


def test_state_dict_keys_shapes_dtypes_equal_manifest(net):
    want = {name: (tuple(shape), dtype) for name, shape, dtype in MANIFEST["keys"]}
    got = {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in net.state_dict().items()
    }
    assert len(got) == MANIFEST["num_keys"] == 751
    assert sorted(set(want) - set(got)) == []
    assert sorted(set(got) - set(want)) == []
    assert {k: v for k, v in got.items() if want[k] != v} == {}


def test_backbone_registered_twice_with_shared_storage(net):
    assert net.backbone is net.lr_branch.backbone
    sd = net.state_dict()
    backbone_keys = [k for k in sd if k.startswith("backbone.")]
    assert len(backbone_keys) == 312
    for k in backbone_keys:
        assert sd[k].data_ptr() == sd["lr_branch." + k].data_ptr(), k


def test_unique_parameter_count(net):
    assert sum(p.numel() for p in net.parameters()) == MANIFEST["param_count"]
    dup = sum(
        v.numel()
        for k, v in net.state_dict().items()
        if "running_" not in k and "num_batches" not in k
    )
    assert dup == MANIFEST["param_count_with_duplicated_backbone"]


def test_ibnorm_splits_batch_and_instance_norm():
    torch.manual_seed(1)
    norm = IBNorm(6).eval()
    norm.bnorm.running_mean.fill_(1.0)
    norm.bnorm.running_var.fill_(4.0)
    x = torch.randn(2, 6, 5, 4) * 3 + 2
    y = norm(x)
    # First 3 channels: eval BatchNorm (running stats); last 3: per-sample, per-channel z-score.
    torch.testing.assert_close(y[:, :3], (x[:, :3] - 1.0) / torch.sqrt(torch.tensor(4.0 + 1e-5)))
    rest = x[:, 3:]
    mean = rest.mean(dim=(2, 3), keepdim=True)
    var = rest.var(dim=(2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(
        y[:, 3:], (rest - mean) / torch.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_forward_shapes_and_ranges(net):
    x = torch.rand(1, 3, 96, 64) * 2 - 1
    semantic, detail, matte = net(x, True)
    assert semantic is None and detail is None
    assert matte.shape == (1, 1, 96, 64)
    assert 0 <= matte.min() and matte.max() <= 1
    semantic, detail, matte2 = net(x, False)
    assert semantic.shape == (1, 1, 6, 4)
    assert detail.shape == (1, 1, 96, 64)
    # The matte does not depend on the training heads.
    torch.testing.assert_close(matte2, matte, rtol=0, atol=0)


@torch.no_grad()
def test_forward_shapes_at_manifest_resolution(net):
    fwd = MANIFEST["forward"]
    x = torch.rand(*fwd["input"]) * 2 - 1
    outs = net(x, False)
    names = ("pred_semantic", "pred_detail", "pred_matte")
    assert {n: list(o.shape) for n, o in zip(names, outs, strict=True)} == fwd[
        "eval_mode_inference_false"
    ]
    feats = net.backbone(x)
    want = fwd["intermediate_shapes_inference_true"][
        "backbone -> [enc2x, enc4x, enc8x, enc16x, enc32x]"
    ]
    assert [list(f.shape) for f in feats] == want
