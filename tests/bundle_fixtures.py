"""Tiny bundles and PPM-layout data sets made in the test (no exporter, no network, no ../shared).

``make_bundle`` writes small ONNX graphs with the bundle contract (``src`` [1,3,H,W] in [0,1] ->
``pha`` [1,1,H,W]) plus a manifest.json in the bundle format; ``make_ppm_data`` and ``make_clip``
write composites whose mattes the tiny graph roughly recovers (bright person on a dark background).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from matting_deploy.bundle import ARTIFACT_FILES, Bundle

H, W = 32, 48  # bundle input (height, width)


def tiny_graph(
    path: str | Path,
    height: int = H,
    width: int = W,
    recurrent: bool = False,
    gain: float = 10.0,
    scale: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
) -> None:
    """pha = scale * sigmoid(gain * (x - 0.5)) + noise, x = channel mean of ``src``.

    Recurrent (RVM-like): state r1 [1,1,H,W], x = r1o = 0.5 * r1i + 0.5 * mean(src), so from zero
    state x climbs towards the mean over frames (K warm-up frames change the score). Also
    outputs ``fgr`` = src. ``scale`` < 1 or ``noise`` > 0 make a deliberately damaged artifact.
    """
    rng = np.random.default_rng(seed)
    shape = [1, 1, height, width]
    const = {
        "half": np.array(0.5, np.float32),
        "gain": np.array(gain, np.float32),
        "scale": np.array(scale, np.float32),
        "noise": rng.normal(0.0, noise, shape).astype(np.float32),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in const.items()]
    inputs = [helper.make_tensor_value_info("src", TensorProto.FLOAT, [1, 3, height, width])]
    outputs = [helper.make_tensor_value_info("pha", TensorProto.FLOAT, shape)]
    nodes = [helper.make_node("ReduceMean", ["src"], ["m"], axes=[1], keepdims=1)]
    x = "m"
    if recurrent:
        inputs.append(helper.make_tensor_value_info("r1i", TensorProto.FLOAT, shape))
        outputs += [
            helper.make_tensor_value_info("fgr", TensorProto.FLOAT, [1, 3, height, width]),
            helper.make_tensor_value_info("r1o", TensorProto.FLOAT, shape),
        ]
        nodes += [
            helper.make_node("Mul", ["r1i", "half"], ["r_half"]),
            helper.make_node("Mul", ["m", "half"], ["m_half"]),
            helper.make_node("Add", ["r_half", "m_half"], ["r1o"]),
            helper.make_node("Identity", ["src"], ["fgr"]),
        ]
        x = "r1o"
    nodes += [
        helper.make_node("Sub", [x, "half"], ["c"]),
        helper.make_node("Mul", ["c", "gain"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["sc"]),
        helper.make_node("Add", ["sc", "noise"], ["pha"]),
    ]
    graph = helper.make_graph(nodes, "tiny_matting", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_bundle(
    root: str | Path,
    model: str = "modnet",
    artifacts: dict[str, dict] | None = None,
    height: int = H,
    width: int = W,
) -> Path:
    """A bundle folder: one tiny graph per artifact (kwargs for :func:`tiny_graph`) + manifest.json.

    Default artifacts: fp32, fp16 (the same graph) and int8 (lightly noised, within the gates).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    recurrent = model == "rvm"
    if artifacts is None:
        artifacts = {"fp32": {}, "fp16": {}, "int8": {"noise": 0.002}}
    shape = [1, 1, height, width]
    manifest = {
        "format": 1,
        "model": model,
        "variant": "mobilenetv3" if recurrent else None,
        "source": "tests/bundle_fixtures.py",
        "input": {
            "height": height,
            "width": width,
            "dynamic": False,
            "downsample_ratio": 1.0 if recurrent else None,
        },
        "opset": 17,
        "inputs": [{"name": "src", "shape": [1, 3, height, width], "dtype": "float32"}],
        "outputs": [{"name": "pha", "shape": shape, "dtype": "float32"}],
        "states": [{"input": "r1i", "output": "r1o", "shape": shape}] if recurrent else [],
        "files": {},
        "artifacts": {},
    }
    bundle = Bundle(root, manifest)
    for name, kwargs in artifacts.items():
        filename = ARTIFACT_FILES.get(name, f"model.{name}.onnx")
        tiny_graph(root / filename, height, width, recurrent=recurrent, **kwargs)
        bundle.add_file(filename, artifact=name, precision=name)
    bundle.save()
    return root


def _scene(rng: np.random.Generator, h: int, w: int, cy: float, cx: float) -> tuple:
    """A soft elliptical 'person' (bright) on a dark textured background: (image, matte)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ry, rx = h * 0.35, w * 0.22
    d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    matte = np.clip((1.15 - d) / 0.3, 0.0, 1.0)
    matte = np.round(matte * 255) / 255  # exactly what the 8-bit PNG holds
    fg = 0.85 + 0.05 * rng.standard_normal((h, w, 3))
    bg = 0.15 + 0.05 * rng.standard_normal((h, w, 3))
    image = matte[..., None] * fg + (1 - matte[..., None]) * bg
    return np.clip(image, 0, 1), matte


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)).save(path)


def make_ppm_data(
    root: str | Path, n: int = 4, size: tuple[int, int] = (64, 48), seed: int = 0
) -> Path:
    """``root/image/NNN.png`` and ``root/matte/NNN.png``: ``n`` composites of ``size`` (w, h)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(n):
        image, matte = _scene(rng, h, w, h * rng.uniform(0.45, 0.6), w * rng.uniform(0.35, 0.65))
        _save(root / "image" / f"{i:03d}.png", image)
        _save(root / "matte" / f"{i:03d}.png", matte)
    return root


def make_clip(
    root: str | Path, frames: int = 5, size: tuple[int, int] = (64, 48), seed: int = 1
) -> Path:
    """A clip folder ``root/frames/NNNN.png`` + ``root/matte/NNNN.png``: the person moves right."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    for t in range(frames):
        image, matte = _scene(rng, h, w, h * 0.55, w * (0.35 + 0.3 * t / max(1, frames - 1)))
        _save(root / "frames" / f"{t:04d}.png", image)
        _save(root / "matte" / f"{t:04d}.png", matte)
    return root
