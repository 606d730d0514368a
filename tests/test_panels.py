"""Worst-image panels: chosen by drift from FP32, with an error map, a drift map and legends."""

from __future__ import annotations

import numpy as np
import pytest

from matting_deploy.data.pairs import Pair
from matting_deploy.validate.panels import drift_scale, panel, worst_images


def test_drift_scale_rounds_up_to_a_readable_full_scale():
    assert drift_scale(np.array([0.013])) == pytest.approx(0.02)
    assert drift_scale(np.array([0.3])) == pytest.approx(0.5)
    assert drift_scale(np.array([0.1])) == pytest.approx(0.1)
    assert drift_scale(np.zeros(4)) == pytest.approx(0.005)  # never below one 8-bit step


def test_drift_scale_fits_the_bulk_not_a_few_outliers():
    """INT8's drift: most moved pixels a little, a few edge pixels far (demo RVM: max 0.5)."""
    drift = np.zeros(10000, np.float32)
    drift[:1000] = np.linspace(0.005, 0.03, 1000)
    drift[1000:1005] = 0.5
    assert drift_scale(drift) == pytest.approx(0.05)  # not 1: the max would paint the bulk black


def test_worst_images_are_picked_by_drift_from_fp32_and_the_drift_map_shows_it(tmp_path):
    from matting_deploy.data.pairs import DataSet
    from matting_deploy.data.preprocess import Geometry
    from matting_deploy.validate.gates import Row
    from matting_deploy.validate.jobs import Job
    from matting_deploy.validate.scoring import ArtifactRun, Scored

    geo = Geometry((4, 4), 0, 0, 4, 4)
    base = np.full((1, 1, 4, 4), 0.5, np.float32)

    def scored(name, shift, mse):  # mse: the artifact's error against ground truth
        return Scored(name, {"mse": mse}, base + shift, geo)

    pairs = [Pair(n, tmp_path / f"{n}.png", tmp_path / f"{n}.png") for n in "abc"]
    data = DataSet(tmp_path, pairs, [], [])
    fp32 = ArtifactRun(Job("fp32", "cpu", tmp_path), [scored(n, 0.0, 0.5) for n in "abc"], [], 1.0)
    # 'a' has the largest error against GT but no drift; 'c' drifts most from FP32
    int8 = ArtifactRun(Job("int8", "cpu", tmp_path), [scored("a", 0.0, 0.9), scored("b", 0.01, 0.1),
                                                      scored("c", 0.05, 0.2)], [], 1.0)
    rows = [Row(fp32, None, None, [], True), Row(int8, None, None, [])]
    assert [key for key, _, _ in worst_images(rows[1], rows[0], data, k=2)] == ["c", "b"]
    assert [key for key, _, _ in worst_images(rows[1], None, data, k=2)] == ["a", "c"]  # no FP32: by MSE

    gt = np.zeros((40, 30), np.float32)
    fp = np.full((40, 30), 0.5, np.float32)
    alpha = fp.copy()
    alpha[:20] += 0.03  # top half drifts by 0.03: full scale 0.05
    img = np.asarray(panel(np.zeros((40, 30, 3), np.float32), gt, fp, alpha, "int8"), np.float32)
    tw = round(30 * 320 / 40)
    drift_tile = img[:320, 5 * (tw + 4):5 * (tw + 4) + tw]
    assert drift_tile[40:100, 10:-10, 0].mean() > 200 and drift_tile[220:300, 10:-10].max() < 10
    alpha[0, :3] = 1.0  # three pixels drift by 0.5: the bulk stays bright, they show white
    img = np.asarray(panel(np.zeros((40, 30, 3), np.float32), gt, fp, alpha, "int8"), np.float32)
    drift_tile = img[:320, 5 * (tw + 4):5 * (tw + 4) + tw]
    assert drift_tile[40:100, 10:-10, 0].mean() > 200 and drift_tile[:4, :20].min() > 240
    legend = img[320 + 14:, 5 * (tw + 4) + 2:5 * (tw + 4) + tw - 2]
    assert legend[:, 0].max() < 30 and legend[:, -1].min() > 220  # black -> white colour bar
