"""A --reference measured differently says what would align it, and only options that would."""

from __future__ import annotations

from matting_deploy.validate.gates import protocol_mismatch

BASE = {"model": "rvm", "input": [288, 480], "resize": "stretch", "frames_per_image": 4, "digest": "d",
        "limit": None, "n_images": 4, "n_clips": 0, "n_clip_frames": 0}


def test_input_size_mismatch_points_at_the_bundle_not_at_limit():
    msg = protocol_mismatch(BASE, {**BASE, "input": [144, 240]})
    assert "input=[288, 480] (this run: [144, 240])" in msg
    assert "rvm, 288x480; export --height/--width" in msg
    assert "--limit" not in msg and "--data" not in msg


def test_other_mismatches_keep_their_hints():
    assert protocol_mismatch(BASE, dict(BASE)) is None
    msg = protocol_mismatch(BASE, {**BASE, "limit": 2, "n_images": 2, "digest": "e"})
    assert "rerun with the reference's --limit on the same data" in msg
    msg = protocol_mismatch(BASE, {**BASE, "digest": "e"})
    assert msg.endswith("use the reference's --data") and "--limit" not in msg
    msg = protocol_mismatch(BASE, {**BASE, "model": "modnet", "resize": "letterbox"})
    assert "a bundle of the reference's model" in msg and "rerun with the reference's --resize" in msg
