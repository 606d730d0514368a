"""Strict, safe checkpoint loading (``weights_only=True``) with one-line errors on any mismatch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import MattingDeployError, first_line

DATA_PARALLEL_PREFIX = "module."
WRAPPER_KEYS = ("state_dict", "model")
SHOW = 3  # offending keys named per category


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: a plain state_dict or one under 'state_dict'/'model'."""
    p = Path(path)
    if not p.exists():
        raise MattingDeployError(f"{path}: no such file")
    if not p.is_file():
        raise MattingDeployError(f"{path}: not a file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for non-checkpoint files
        raise MattingDeployError(
            f"{path}: cannot read checkpoint ({type(e).__name__}: {first_line(e)})"
        ) from None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        kind = "an empty mapping" if isinstance(obj, Mapping) else type(obj).__name__
        raise MattingDeployError(f"{path}: cannot read checkpoint (holds {kind}, not a state_dict)")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise MattingDeployError(
                f"{path}: cannot read checkpoint (entry {key!r} is {type(value).__name__}, "
                "not a tensor)"
            )
    return dict(obj)


def strip_data_parallel(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix when every checkpoint key has it and ``net``'s keys do not."""
    prefix = DATA_PARALLEL_PREFIX
    if all(k.startswith(prefix) for k in state) and not all(
        k.startswith(prefix) for k in net.state_dict()
    ):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _first(names: list[str]) -> str:
    return ", ".join(names[:SHOW]) + (", ..." if len(names) > SHOW else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 'es' if what.endswith('mismatch') else 's'}"


def mismatch_report(net: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """None when ``state`` fits ``net`` key-for-key and shape-for-shape, else a one-line summary."""
    want = net.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(want[k].shape)}"
        for k in want
        if k in state and state[k].shape != want[k].shape
    ]
    parts = [
        f"{_count(len(names), what)} (first: {_first(names)})"
        for names, what in (
            (missing, "missing key"),
            (unexpected, "unexpected key"),
            (shapes, "shape mismatch"),
        )
        if names
    ]
    return ", ".join(parts) if parts else None


def load_checkpoint(net: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` into ``net`` with strict key and shape matching; MattingDeployError otherwise.

    Accepts a plain state_dict or a dict holding one under 'state_dict' or 'model', with or without
    the ``module.`` prefix of ``nn.DataParallel`` (the official MODNet .ckpt and Background Matting
    ``netG_epoch_*.pth`` files have it: both were trained and saved under DataParallel). Keys
    of modules registered twice (MODNet's shared backbone) may all be present; they load into the
    same tensors.
    """
    state = strip_data_parallel(read_state_dict(path), net)
    name = type(net).__name__
    problem = mismatch_report(net, state)
    if problem:
        raise MattingDeployError(f"{path}: checkpoint does not match {name}: {problem}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise MattingDeployError(f"{path}: checkpoint does not match {name}: {detail}") from None
