"""Matting metrics on tiny alphas whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from matting_deploy.validate import metrics as M

PRED = np.array([[0.0, 0.5], [1.0, 1.0]])
GT = np.array([[0.0, 1.0], [1.0, 0.0]])  # differences 0, -0.5, 0, 1


def test_mse_mad_sad_by_hand():
    assert M.mse(PRED, GT) == pytest.approx((0.25 + 1.0) / 4)
    assert M.mad(PRED, GT) == pytest.approx(1.5 / 4)
    assert M.sad(PRED, GT) == pytest.approx(1.5 / 1000)  # in thousands


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        M.mse(np.zeros((2, 2)), np.zeros((2, 3)))


def test_gradient_kernel_is_dim_filter():
    g, dg = M.gaussian_derivative_kernels(1.4)
    # half-size ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) * 1.4 * 0.01))) = ceil(3.62) = 4 -> 9 taps
    assert len(g) == len(dg) == 9
    assert np.linalg.norm(np.outer(g, dg)) == pytest.approx(1.0)  # unit L2 norm
    assert np.allclose(g, g[::-1]) and np.allclose(dg, -dg[::-1]) and dg[4] == 0


def test_gradient_error_impulse_is_two_thousandths():
    # A unit impulse far from the border: its gradients are the kernels themselves, so
    # sum |grad|^2 = sum hx^2 + sum hy^2 = 1 + 1 (unit-norm kernels) and the flat GT has none.
    pred = np.zeros((21, 21))
    pred[10, 10] = 1.0
    assert M.gradient_error(pred, np.zeros_like(pred)) == pytest.approx(2 / 1000)
    assert M.gradient_error(np.zeros_like(pred), pred) == pytest.approx(2 / 1000)


def test_gradient_error_ignores_constant_offset():
    ramp = np.tile(np.linspace(0, 0.6, 12), (10, 1))
    assert M.gradient_error(ramp + 0.3, ramp) == pytest.approx(0.0, abs=1e-12)
    assert M.mse(ramp + 0.3, ramp) == pytest.approx(0.09)


def test_label_components_four_connected():
    diag = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 1]], bool)
    labels, n = M.label_components(diag)
    assert n == 2  # (0,1)-(1,2) touch only diagonally
    assert labels.tolist() == [[1, 1, 0], [0, 0, 2], [0, 2, 2]]
    assert M.largest_component(diag).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 1]]
    checker = np.indices((3, 3)).sum(0) % 2 == 0
    assert M.label_components(checker)[1] == 5
    u_shape = np.array([[1, 0, 1], [1, 0, 1], [1, 1, 1]], bool)  # joined only at the bottom row
    assert M.label_components(u_shape)[1] == 1
    assert M.label_components(np.zeros((3, 3), bool))[1] == 0
    assert not M.largest_component(np.zeros((3, 3), bool)).any()


def _flood_labels(mask):
    """Reference 4-connected labelling by breadth-first flood fill (row-major order)."""
    labels = np.zeros(mask.shape, int)
    n = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if labels[y, x]:
            continue
        n += 1
        labels[y, x] = n
        todo = [(y, x)]
        while todo:
            cy, cx = todo.pop()
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if (
                    0 <= ny < mask.shape[0]
                    and 0 <= nx < mask.shape[1]
                    and mask[ny, nx]
                    and not labels[ny, nx]
                ):
                    labels[ny, nx] = n
                    todo.append((ny, nx))
    return labels, n


@pytest.mark.parametrize("seed", range(4))
def test_label_components_matches_flood_fill(seed):
    mask = np.random.default_rng(seed).random((23, 31)) < 0.55
    labels, n = M.label_components(mask)
    want, want_n = _flood_labels(mask)
    assert n == want_n
    assert np.array_equal(labels, want)


def test_label_components_spiral():
    # A single serpentine path needs many merges across rows.
    mask = np.zeros((15, 15), bool)
    mask[::2, :] = True
    for i, r in enumerate(range(1, 15, 2)):
        mask[r, -1 if i % 2 == 0 else 0] = True
    assert M.label_components(mask)[1] == 1


def test_connectivity_error_by_hand():
    gt = np.array([[1.0, 1.0]])
    # Pixel 1 leaves the component at t = 0.1 -> level 0; pred d = 0 -> phi 1, gt d = 1 -> phi 0.
    assert M.connectivity_error(np.array([[1.0, 0.0]]), gt) == pytest.approx(1 / 1000)
    # Pixel 1 stays in up to t = 0.3 -> level 0.3; pred d = 0.05 < 0.15 -> phi 1, gt phi 1 - 0.7.
    assert M.connectivity_error(np.array([[1.0, 0.35]]), gt) == pytest.approx(0.7 / 1000)
    # An island (pixel 3) outside the largest component: level 0, phi 0.5 vs 0.
    pred = np.array([[1.0, 1.0, 0.0, 0.5]])
    assert M.connectivity_error(pred, np.array([[1.0, 1.0, 0.0, 1.0]])) == pytest.approx(0.5 / 1000)
    assert M.connectivity_error(gt, gt) == 0.0


def test_miou_by_hand():
    pred = np.array([[0.6, 0.4], [0.2, 0.9]])
    gt = np.array([[1.0, 0.0], [1.0, 1.0]])
    # fg: inter 2, union 3; bg: inter 1, union 2
    assert M.miou(pred, gt) == pytest.approx((2 / 3 + 1 / 2) / 2)
    zeros = np.zeros((2, 2))
    assert M.miou(zeros, zeros) == 1.0  # no foreground in either: empty union counts as 1
    assert M.miou(np.ones((2, 2)), zeros) == 0.0
    assert M.miou(np.full((1, 1), 0.5), np.ones((1, 1))) == 1.0  # 0.5 is foreground


def test_dtssd_by_hand():
    zero = np.zeros((1, 2))
    moved = np.array([[1.0, 0.0]])
    # change (1, 0) vs none: sqrt(mean(1, 0)) = sqrt(0.5), x 100
    assert M.dtssd([zero, moved], [zero, zero]) == pytest.approx(100 * np.sqrt(0.5))
    assert M.dtssd([zero, moved, moved], [zero, zero, zero]) == pytest.approx(50 * np.sqrt(0.5))
    # a constant error does not flicker
    gts = [np.full((2, 2), v) for v in (0.1, 0.4, 0.2)]
    assert M.dtssd([g + 0.2 for g in gts], gts) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        M.dtssd([zero], [zero])


def test_all_metrics_keys():
    assert tuple(M.all_metrics(PRED, GT)) == M.METRICS
