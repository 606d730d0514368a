"""Strict checkpoint loading: official MODNet layout round trip and one-line errors on bad files."""

from __future__ import annotations

import pytest

from tests.fixtures import NEEDS_TORCH

torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
from torch import nn  # noqa: E402

from matting_deploy.errors import MattingDeployError  # noqa: E402
from matting_deploy.models.checkpoint import load_checkpoint  # noqa: E402
from matting_deploy.models.modnet import MODNet  # noqa: E402


def random_modnet(seed: int) -> MODNet:
    """A seeded MODNet with non-trivial norm statistics and affine parameters."""
    torch.manual_seed(seed)
    net = MODNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def source() -> MODNet:
    return random_modnet(7)


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory, source) -> tuple:
    """A checkpoint in the official layout: DataParallel keys ('module.'), both backbone copies."""
    path = tmp_path_factory.mktemp("ckpt") / "modnet.ckpt"
    # nn.DataParallel would move ``source`` to cuda:0 on a CUDA machine; a plain wrapper gives the
    # same 'module.' keys on every machine.
    wrapper = nn.Module()
    wrapper.module = source
    state = wrapper.state_dict()
    assert all(k.startswith("module.") for k in state) and len(state) == 751
    torch.save(state, path)
    return path, state


def test_official_layout_round_trips_exactly(official_ckpt, source):
    path, _ = official_ckpt
    net = random_modnet(8)
    load_checkpoint(net, path)
    for (k, a), b in zip(net.state_dict().items(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        for inference in (True, False):
            for got, want in zip(net.eval()(x, inference), source(x, inference), strict=True):
                assert (got is None and want is None) or torch.equal(got, want)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_plain_and_wrapped_state_dicts_load(tmp_path, source, wrapper):
    state = source.state_dict()
    path = tmp_path / "w.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    net = random_modnet(9)
    load_checkpoint(net, path)
    assert torch.equal(
        net.f_branch.conv_f[1].layers[0].weight, source.f_branch.conv_f[1].layers[0].weight
    )


def edited(
    state: dict, drop: str | None = None, add: str | None = None, reshape: str | None = None
) -> dict:
    state = dict(state)
    if drop:
        del state[drop]
    if add:
        state[add] = torch.zeros(3)
    if reshape:
        state[reshape] = torch.zeros(*state[reshape].shape[:-1], state[reshape].shape[-1] + 1)
    return state


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            {"drop": "module.hr_branch.conv_hr.0.layers.0.bias"},
            "1 missing key (first: hr_branch.conv_hr.0.layers.0.bias)",
        ),
        ({"add": "module.extra.weight"}, "1 unexpected key (first: extra.weight)"),
        (
            {"reshape": "module.lr_branch.se_block.fc.0.weight"},
            "1 shape mismatch (first: lr_branch.se_block.fc.0.weight [320, 1281] vs [320, 1280])",
        ),
    ],
)
def test_mismatch_is_one_line_naming_file_and_key(tmp_path, official_ckpt, edit, expected):
    _, state = official_ckpt
    path = tmp_path / "bad.ckpt"
    torch.save(edited(state, **edit), path)
    net = random_modnet(10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(MattingDeployError) as err:
        load_checkpoint(net, path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: checkpoint does not match MODNet: ")
    assert msg.endswith(expected)
    # Nothing was loaded.
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_other_network_lists_counts_and_first_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3), "encoder.bias": torch.zeros(3)}, path)
    with pytest.raises(MattingDeployError) as err:
        load_checkpoint(MODNet(), path)
    msg = str(err.value)
    assert "751 missing keys (first: backbone.model.features.0.0.weight, " in msg
    assert "2 unexpected keys (first: encoder.weight, encoder.bias)" in msg


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"this is not a checkpoint\n", "cannot read checkpoint ("),
        (b"", "cannot read checkpoint ("),
    ],
)
def test_garbage_file_is_clean_error(tmp_path, content, reason):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(content)
    with pytest.raises(MattingDeployError) as err:
        load_checkpoint(MODNet(), path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {reason}") and "\n" not in msg


@pytest.mark.parametrize(
    "obj, reason",
    [
        (torch.zeros(3), "holds Tensor, not a state_dict"),
        ({"epoch": 3}, "entry 'epoch' is int, not a tensor"),
        ({}, "holds an empty mapping"),
    ],
)
def test_non_state_dict_is_clean_error(tmp_path, obj, reason):
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(MattingDeployError, match=reason) as err:
        load_checkpoint(MODNet(), path)
    assert str(err.value).startswith(f"{path}: cannot read checkpoint")


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"net": nn.Linear(2, 2)}, path)  # a module object needs full unpickling
    with pytest.raises(MattingDeployError, match="cannot read checkpoint"):
        load_checkpoint(MODNet(), path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.ckpt"
    with pytest.raises(MattingDeployError) as err:
        load_checkpoint(MODNet(), path)
    assert str(err.value) == f"{path}: no such file"
