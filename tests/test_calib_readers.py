"""Calibration data readers and sampling, on images generated in the test."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from matting_deploy.calib.sampling import choose, fingerprint, split_holdout
from matting_deploy.data.sources import (
    FrameLoader,
    find_source,
    load_readable,
    warmup_items,
)
from matting_deploy.errors import MattingDeployError
from tests.fixtures import NEEDS_AV

H, W = 24, 32


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def write_mixed(folder, corrupt: bool = True):
    """RGB JPEG, grey PNG, RGBA PNG, 16-bit grey PNG and (optionally) a corrupt JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(0)).save(folder / "a_rgb.jpg", quality=95)
    Image.fromarray(_rgb(1)[..., 0]).save(folder / "b_grey.png")
    rgba = np.concatenate([_rgb(2), np.full((H, W, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(folder / "c_rgba.png")
    deep = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 60).astype(np.uint16)
    Image.fromarray(deep).save(folder / "d_16bit.png")
    if corrupt:
        (folder / "e_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def test_plain_folder_all_formats_and_corrupt_skipped(tmp_path):
    src = find_source(write_mixed(tmp_path / "imgs"))
    assert src.kind == "images" and not src.sequential
    assert [it.name for it in src.items] == [
        "a_rgb.jpg", "b_grey.png", "c_rgba.png", "d_16bit.png", "e_corrupt.jpg"]
    skipped: list[str] = []
    loaded = load_readable(src.items, FrameLoader(src).load, skipped)
    assert [it.name for it, _ in loaded] == ["a_rgb.jpg", "b_grey.png", "c_rgba.png", "d_16bit.png"]
    assert len(skipped) == 1 and "e_corrupt.jpg" in skipped[0]
    for _, arr in loaded:
        assert arr.shape == (H, W, 3) and arr.dtype == np.float32
        assert 0.0 <= arr.min() and arr.max() <= 1.0
    grey = dict((it.name, a) for it, a in loaded)["b_grey.png"]
    assert np.array_equal(grey[..., 0], grey[..., 2])
    deep = dict((it.name, a) for it, a in loaded)["d_16bit.png"]
    assert deep[-1, -1, 0] == pytest.approx(((H * W - 1) * 60) / 65535.0, abs=1e-6)
    rgba = dict((it.name, a) for it, a in loaded)["c_rgba.png"]
    assert np.allclose(rgba, _rgb(2) / 255.0)  # alpha dropped, colour kept


def test_ppm_layout_uses_image_folder_matte_optional(tmp_path):
    write_mixed(tmp_path / "set" / "image", corrupt=False)
    src = find_source(tmp_path / "set")
    assert src.kind == "images" and len(src.items) == 4
    assert all(it.path.parent.name == "image" for it in src.items)


def test_frame_folder_is_a_sequence_with_preceding_warmup(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(_rgb(i)).save(folder / f"{i:04d}.png")
    src = find_source(folder)
    assert src.kind == "frames" and src.sequential
    assert [it.index for it in src.items] == list(range(6))
    assert [it.index for it in warmup_items(src, src.items[4], 4)] == [1, 2, 3]
    assert [it.index for it in warmup_items(src, src.items[1], 4)] == [0]
    assert warmup_items(src, src.items[1], 1) == []


def test_still_images_warm_up_on_themselves(tmp_path):
    src = find_source(write_mixed(tmp_path / "imgs", corrupt=False))
    assert warmup_items(src, src.items[2], 4) == [src.items[2]] * 3


def test_empty_and_missing_sources_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MattingDeployError, match="no calibration images"):
        find_source(tmp_path / "empty")
    with pytest.raises(MattingDeployError, match="no such file"):
        find_source(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(MattingDeployError, match="notes.txt"):
        find_source(tmp_path / "notes.txt")


def test_video_file_frames(tmp_path):
    av = pytest.importorskip("av", reason=NEEDS_AV)
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    src = find_source(path)
    assert src.kind == "video" and len(src.items) == 5
    loader = FrameLoader(src)
    loader.prefetch(src.items[3:])
    frame = loader.load(src.items[3])
    assert frame.shape == (H, W, 3) and abs(frame.mean() - 120 / 255) < 0.05


def test_choose_is_reproducible_and_shuffled(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        Image.fromarray(_rgb(i)).save(folder / f"img_{i:02d}.png")
    items = find_source(folder).items
    a, b, c = choose(items, 10, 0), choose(items, 10, 0), choose(items, 10, 1)
    assert a == b and a != c and len(a) == 10
    assert a != items[:10]  # shuffled across the folder, not the first ten
    assert len(choose(items, 100, 0)) == 30
    with pytest.raises(MattingDeployError):
        choose(items, 0, 0)
    keep, hold = split_holdout(a, 0.2, 0)
    assert len(hold) == 2 and len(keep) == 8 and not set(keep) & set(hold)


def test_fingerprint_tracks_content_not_location(tmp_path):
    one = write_mixed(tmp_path / "one", corrupt=False)
    two = tmp_path / "two"
    shutil.copytree(one, two)
    assert fingerprint(find_source(one)) == fingerprint(find_source(two))
    Image.fromarray(_rgb(9)).save(two / "a_rgb.jpg", quality=95)
    assert fingerprint(find_source(one)) != fingerprint(find_source(two))


def test_a_folder_without_images_lists_the_accepted_kinds(tmp_path):
    from matting_deploy.data.imaging import IMAGE_EXTS
    from matting_deploy.data.sources import find_source
    from matting_deploy.data.video import VIDEO_EXTS
    from matting_deploy.errors import MattingDeployError

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no pictures here")
    (folder / "photo.heic").write_bytes(b"\0")
    with pytest.raises(MattingDeployError) as e:
        find_source(folder)
    msg = str(e.value)
    assert msg.startswith(f"{folder}: no calibration images found (accepted:") and "\n" not in msg
    assert all(ext in msg for ext in (*IMAGE_EXTS, *VIDEO_EXTS)) and "image/" in msg
