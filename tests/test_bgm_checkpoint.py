"""Background Matting v1 checkpoints (netG_epoch_*.pth): strict loading and one-line mismatch errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import NEEDS_TORCH

torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
from torch import nn  # noqa: E402

from matting_deploy.errors import MattingDeployError  # noqa: E402
from matting_deploy.models.bgm import ResnetConditionHR, seeded_generator  # noqa: E402
from matting_deploy.models.checkpoint import load_checkpoint  # noqa: E402

MANIFEST = json.loads((Path(__file__).parent / "reference" / "bgm_v1_state_dict.json").read_text())


def from_manifest(prefix: str = "") -> dict[str, torch.Tensor]:
    """A synthetic official checkpoint built from the manifest alone (seeded values)."""
    gen = torch.Generator().manual_seed(3)
    state = {}
    for key, shape, dtype in MANIFEST["keys"]:
        if dtype == "int64":
            state[prefix + key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[prefix + key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[prefix + key] = torch.randn(shape, generator=gen) * 0.05
    return state


@pytest.mark.parametrize("prefix", ["", "module."])
def test_manifest_checkpoint_loads_strictly(tmp_path, prefix):
    state = from_manifest(prefix)
    path = tmp_path / "netG_epoch_12.pth"
    torch.save(state, path)
    net = ResnetConditionHR()
    load_checkpoint(net, path)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[prefix + key]), key


@pytest.mark.parametrize("data_parallel", [False, True])
def test_network_checkpoint_round_trips_exactly(tmp_path, data_parallel):
    """Saved as the official training scripts save it (``nn.DataParallel`` keys) or plain."""
    source = seeded_generator(seed=5)
    state = (nn.DataParallel(source) if data_parallel else source).state_dict()
    assert all(k.startswith("module.") for k in state) == data_parallel
    path = tmp_path / "netG_epoch_1.pth"
    torch.save(state, path)
    net = seeded_generator(seed=6)
    load_checkpoint(net, path)
    x = [torch.rand(1, c, 16, 16, generator=torch.Generator().manual_seed(c)) * 2 - 1 for c in (3, 3, 1)]
    with torch.no_grad():
        for got, want in zip(net.eval()(*x), source.eval()(*x), strict=True):
            assert torch.equal(got, want)


@pytest.mark.parametrize(
    "edit, expected",
    [
        ("drop_multi", "21 missing keys (first: model_enc_multi.1.weight, model_enc_multi.1.bias, "
                       "model_enc_multi.2.weight, ...)"),
        ("add", "1 unexpected key (first: model_enc_depth.1.weight)"),
        ("reshape", "1 shape mismatch (first: model_enc_seg.1.weight [64, 3, 7, 7] vs [64, 1, 7, 7])"),
    ],
)
def test_mismatch_is_one_line_and_loads_nothing(tmp_path, edit, expected):
    state = from_manifest("module.")
    if edit == "drop_multi":  # the dead encoder's weights are still required, as upstream
        state = {k: v for k, v in state.items() if not k.startswith("module.model_enc_multi.")}
    elif edit == "add":
        state["module.model_enc_depth.1.weight"] = torch.zeros(64, 1, 7, 7)
    else:  # a 3-channel segmentation encoder (another input_nc)
        state["module.model_enc_seg.1.weight"] = torch.zeros(64, 3, 7, 7)
    path = tmp_path / "netG_epoch_3.pth"
    torch.save(state, path)
    net = ResnetConditionHR()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(MattingDeployError) as err:
        load_checkpoint(net, path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == f"{path}: checkpoint does not match ResnetConditionHR: {expected}"
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
