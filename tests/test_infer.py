"""`infer`: folder classification (clip or separate images), `--as`, video output via PyAV."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from matting_deploy.cli import main
from matting_deploy.data.imaging import load_image, load_matte
from matting_deploy.data.preprocess import alpha_to_source, to_model_input
from matting_deploy.data.sources import numbered_frames
from matting_deploy.runtimes.open import open_runner
from tests.fixtures import NEEDS_AV, H, W, frames, make_runtime_bundle

needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason=NEEDS_AV)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def rvm(tmp_path):
    return make_runtime_bundle(tmp_path / "rvm", "rvm")


def _write(folder: Path, names: list[str], seed: int = 0, size=(W, H)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in zip(names, frames(len(names), seed=seed), strict=True):
        img = Image.fromarray(np.uint8(np.rint(frame[0].transpose(1, 2, 0) * 255)))
        img.resize(size, Image.Resampling.BILINEAR).save(folder / name)
        paths.append(folder / name)
    return paths


@pytest.mark.parametrize("names, clip", [
    (["0001.png", "0002.png", "0003.png"], True),
    (["frame1.png", "frame2.png", "frame10.png", "frame3.png", "frame4.png", "frame5.png",
      "frame6.png", "frame7.png", "frame8.png", "frame9.png"], True),
    (["f_000.jpg", "f_005.jpg", "f_010.jpg"], True),  # every 5th frame extracted
    (["beach.jpg", "cat.jpg", "desk.jpg"], False),
    (["IMG_1234.jpg", "IMG_1240.jpg", "IMG_1291.jpg"], False),  # a camera's counter, not a clip
    (["a1.png", "b2.png"], False),
    (["0001.png"], False),
])
def test_numbered_frames(names, clip):
    assert numbered_frames([Path(n) for n in names]) is clip


def _alpha(runner, path, repeats):
    src, geo = to_model_input(load_image(path), H, W)
    runner.reset()
    for _ in range(repeats):
        out = runner.run(src)
    return alpha_to_source(out["pha"], geo)


def test_unrelated_images_run_each_on_its_own(rvm, tmp_path):
    paths = _write(tmp_path / "photos", ["beach.png", "cat.png", "desk.png"])
    res = cli("infer", "--bundle", rvm, "--input", tmp_path / "photos", "--out", tmp_path / "o",
              "--warmup-frames", 3)
    assert res.exit_code == 0, res.output
    assert "3 images in" in res.output and "run as separate images (names are not numbered frames)" in res.output
    assert f"3 images -> {tmp_path / 'o'}" in res.output and "images/s end to end" in res.output
    assert "frame(s)" not in res.output
    runner = open_runner(rvm, "fp32", "cpu")
    for path in paths:
        got = load_matte(tmp_path / "o" / "alpha" / path.name)
        assert np.abs(got - _alpha(runner, path, 3)).max() <= 0.5 / 255 + 1e-6
    info = json.loads((tmp_path / "o" / "infer.json").read_text())
    assert info["kind"] == "images" and info["clip"] is False and info["warmup_frames"] == 3

    # --as video carries the state through them instead: a different result for the later images
    res = cli("infer", "--bundle", rvm, "--input", tmp_path / "photos", "--out", tmp_path / "v", "--as", "video")
    assert res.exit_code == 0, res.output
    assert "run as one clip, state carried" in res.output and f"3 frames -> {tmp_path / 'v'}" in res.output
    last = paths[-1].name
    carried, alone = (load_matte(tmp_path / d / "alpha" / last) for d in ("v", "o"))
    assert np.abs(carried - alone).max() > 2 / 255


def test_numbered_frames_are_a_clip_unless_told_otherwise(rvm, tmp_path):
    _write(tmp_path / "clip", [f"{i:04d}.png" for i in range(1, 5)])
    res = cli("infer", "--bundle", rvm, "--input", tmp_path / "clip", "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    assert "4 numbered frames" in res.output and "run as one clip" in res.output
    assert json.loads((tmp_path / "c" / "infer.json").read_text())["clip"] is True
    res = cli("infer", "--bundle", rvm, "--input", tmp_path / "clip", "--out", tmp_path / "i", "--as", "images")
    assert res.exit_code == 0 and "run as separate images (--as images), 4 frames from zero state each" in res.output
    res = cli("infer", "--bundle", rvm, "--input", tmp_path / "clip", "--out", tmp_path / "x", "--as", "images",
              "--output-type", "video")
    assert res.exit_code == 2 and "--output-type video needs a clip" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def _make_video(path: Path, n: int, fps: int, size=(W, H)) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in frames(n, seed=4):
            rgb = np.uint8(np.rint(frame[0].transpose(1, 2, 0) * 255))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        return [f.to_ndarray(format="rgb24").astype(np.float32) / 255 for f in container.decode(stream)], rate


@needs_av
def test_video_in_videos_out_at_source_rate_and_size(rvm, tmp_path):
    video = tmp_path / "clip.mp4"
    _make_video(video, 8, fps=12, size=(64, 40))
    res = cli("infer", "--bundle", rvm, "--input", video, "--out", tmp_path / "v", "--video-mbps", 2)
    assert res.exit_code == 0, res.output
    assert "video clip.mp4" in res.output and "com.mp4" in res.output
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["com.mp4", "fgr.mp4", "infer.json", "pha.mp4"]
    info = json.loads((tmp_path / "v" / "infer.json").read_text())
    assert info["output_type"] == "video" and info["fps"] == 12 and info["frames"] == 8
    res = cli("infer", "--bundle", rvm, "--input", video, "--out", tmp_path / "p", "--output-type", "png")
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "p" / "alpha").iterdir())
    assert len(pngs) == 8
    for name in ("com.mp4", "pha.mp4", "fgr.mp4"):
        decoded, rate = _read_video(tmp_path / "v" / name)
        assert len(decoded) == 8 and decoded[0].shape == (40, 64, 3) and rate == 12
    pha, _ = _read_video(tmp_path / "v" / "pha.mp4")
    for got, png in zip(pha, pngs, strict=True):  # lossy codec: close to the PNG alpha, not equal
        assert np.abs(got.mean(axis=2) - load_matte(png)).mean() < 0.03


@needs_av
def test_modnet_video_has_no_foreground_video_and_odd_sizes_are_padded(tmp_path):
    bundle = make_runtime_bundle(tmp_path / "modnet", "modnet")
    video = tmp_path / "clip.mp4"
    _make_video(video, 3, fps=10, size=(48, 32))
    frames_dir = tmp_path / "frames"
    _write(frames_dir, ["0001.png", "0002.png"], size=(33, 21))
    res = cli("infer", "--bundle", bundle, "--input", video, "--out", tmp_path / "v")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["com.mp4", "infer.json", "pha.mp4"]
    res = cli("infer", "--bundle", bundle, "--input", frames_dir, "--out", tmp_path / "f", "--output-type", "video")
    assert res.exit_code == 0, res.output
    decoded, rate = _read_video(tmp_path / "f" / "com.mp4")
    assert len(decoded) == 2 and decoded[0].shape == (22, 34, 3) and rate == 30
