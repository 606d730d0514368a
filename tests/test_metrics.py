"""Matting metrics: answers worked out by hand, and equality with the plain definitions.

``metrics_reference`` keeps the original, slow but plainly written functions; the tiled ones
must give the same values (to 1e-9) on every fixture below.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from matting_deploy.validate import components
from matting_deploy.validate import metrics as M
from matting_deploy.validate.components import largest_component
from tests import metrics_reference as ref
from tests.alpha_fixtures import portrait_pair

PRED = np.array([[0.0, 0.5], [1.0, 1.0]])
GT = np.array([[0.0, 1.0], [1.0, 0.0]])  # differences 0, -0.5, 0, 1
ONE_BY_ONE = {
    "mse": M.mse,
    "mad": M.mad,
    "sad": M.sad,
    "grad": M.gradient_error,
    "conn": M.connectivity_error,
    "miou": M.miou,
}


def assert_same_as_reference(pred: np.ndarray, gt: np.ndarray) -> None:
    """Every metric, alone and through all_metrics, equals the reference to 1e-9."""
    want = ref.all_metrics(pred, gt)
    got = M.all_metrics(pred, gt)
    assert tuple(got) == M.METRICS
    for name, metric in ONE_BY_ONE.items():
        assert got[name] == pytest.approx(want[name], rel=0, abs=1e-9), name
        assert metric(pred, gt) == pytest.approx(want[name], rel=0, abs=1e-9), name


# ----------------------------------------------------------------------------- by hand


def test_mse_mad_sad_by_hand():
    assert M.mse(PRED, GT) == pytest.approx((0.25 + 1.0) / 4)
    assert M.mad(PRED, GT) == pytest.approx(1.5 / 4)
    assert M.sad(PRED, GT) == pytest.approx(1.5 / 1000)  # in thousands


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError):
        M.mse(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        M.all_metrics(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError):
        M.all_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError):
        M.dtssd_term(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 3)))


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


@pytest.mark.parametrize("b_first", [False, True])
def test_connectivity_tie_goes_to_the_component_starting_first(b_first, labelling):
    # Two 3x3 squares, A (alpha 1 in both) and B (pred 0.9, gt 1), equal in size up to t = 0.9.
    # If A is omega, B's level is 0: |phi_p - phi_g| = |1 - 0.9| = 0.1 on its 9 pixels. If B is
    # omega, its level is 0.9: d = 0 and 0.1, both under theta, so B adds nothing.
    gt = np.zeros((9, 9))
    gt[1:4, 1:4] = gt[5:8, 5:8] = 1.0
    pred = gt.copy()
    pred[(slice(1, 4), slice(1, 4)) if b_first else (slice(5, 8), slice(5, 8))] = 0.9
    want = 0.0 if b_first else 9 * 0.1 / 1000
    assert M.connectivity_error(pred, gt) == pytest.approx(want, abs=1e-12)
    assert_same_as_reference(pred, gt)


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


# ----------------------------------------------------------------------------- components


def test_largest_component_four_connected():
    diag = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 1]], bool)  # (0,1)-(1,2) touch only diagonally
    assert largest_component(diag).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 1]]
    pair = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 1]], bool)  # a tie: the first one wins
    assert largest_component(pair).tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]
    u_shape = np.array([[1, 0, 1], [1, 0, 1], [1, 1, 1]], bool)  # joined only at the bottom row
    assert np.array_equal(largest_component(u_shape), u_shape)
    assert not largest_component(np.zeros((3, 3), bool)).any()
    assert largest_component(np.ones((1, 1), bool)).tolist() == [[True]]


def test_largest_component_spiral():
    # A single serpentine path needs many merges across rows.
    mask = np.zeros((15, 15), bool)
    mask[::2, :] = True
    for i, r in enumerate(range(1, 15, 2)):
        mask[r, -1 if i % 2 == 0 else 0] = True
    assert np.array_equal(largest_component(mask), mask)


def _largest_by_ndimage(mask: np.ndarray) -> np.ndarray:
    """scipy.ndimage.label, biggest label; ties to the label whose first pixel comes first."""
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    firsts = [np.flatnonzero(labels.ravel() == k + 1)[0] for k in range(n)]
    best = min(np.flatnonzero(sizes == sizes.max()), key=lambda k: firsts[k])
    return labels == best + 1


@pytest.mark.parametrize("seed", range(12))
def test_largest_component_matches_ndimage_and_reference(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 40, 2))
    mask = rng.random(shape) < rng.uniform(0.2, 0.8)
    got = largest_component(mask)
    assert np.array_equal(got, _largest_by_ndimage(mask))
    assert np.array_equal(got, ref.largest_component(mask))


# ----------------------------------------------------------------------------- vs the reference


@pytest.fixture(params=["run graph", "ndimage.label"])
def labelling(request, monkeypatch):
    """Run the test once with each way of finding the omegas (graph of runs, or per-mask labels)."""
    monkeypatch.setattr(components, "DENSE_RUNS", np.inf if request.param == "run graph" else 0.0)
    return request.param


@pytest.mark.parametrize("seed", range(6))
def test_flat_tiles_are_exactly_the_constant_ones(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 90, 2)
    pred, gt = _blocky(rng, h, w), _blocky(rng, h, w)
    tiles = M.Tiles(pred, gt)
    t = tiles.t
    for ty in range(tiles.ny):
        for tx in range(tiles.nx):
            block = (slice(ty * t, ty * t + t), slice(tx * t, tx * t + t))
            constant = np.ptp(pred[block]) == 0 and np.ptp(gt[block]) == 0
            assert tiles.flat[ty, tx] == constant, (ty, tx)


def _blocky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Flat patches of random size and level, edges off the tile grid, some soft."""
    out = np.zeros((h, w))
    for _ in range(8):
        y, x = rng.integers(0, h), rng.integers(0, w)
        out[y : y + rng.integers(1, h // 2 + 2), x : x + rng.integers(1, w // 2 + 2)] = rng.choice(
            [1.0, 0.5, 0.2, rng.random()]
        )
    if rng.random() < 0.5:
        out = ndi.uniform_filter(out, 3)
    return out


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 17), (17, 1), (5, 3), (16, 16), (17, 33), (31, 47), (48, 64), (65, 97)]
)
def test_random_alphas_of_odd_sizes(shape, labelling):
    rng = np.random.default_rng(sum(shape))
    assert_same_as_reference(rng.random(shape), rng.random(shape))
    assert_same_as_reference(np.round(rng.random(shape) * 4) / 4, np.round(rng.random(shape)))


@pytest.mark.parametrize("seed", range(10))
def test_blocky_alphas(seed, labelling):
    # flat tiles next to flat tiles of another value, and edges inside or between tiles
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 90, 2)
    gt = _blocky(rng, h, w)
    pred = np.clip(gt + _blocky(rng, h, w) * 0.3 - 0.1, 0, 1) if seed % 2 else _blocky(rng, h, w)
    assert_same_as_reference(pred, gt)


def test_empty_full_and_single_pixel_masks(labelling):
    zeros, ones = np.zeros((23, 37)), np.ones((23, 37))
    for pred, gt in [(zeros, zeros), (ones, ones), (ones, zeros), (zeros, ones), (ones * 0.5, ones)]:
        assert_same_as_reference(pred, gt)
    dots = zeros.copy()
    dots[0, 0] = dots[22, 36] = dots[11, 17] = 1.0  # three 1-pixel components, a 3-way tie
    dots[5, 30] = 0.4
    assert_same_as_reference(dots, zeros)
    assert_same_as_reference(dots, np.where(dots > 0, 0.7, 0.0))
    assert_same_as_reference(ones - dots, ones)  # 1-pixel holes


def test_dtypes_and_gradient_sigma(labelling):
    pred, gt = portrait_pair(70, 90, seed=3)  # float32
    assert_same_as_reference(pred, gt)
    assert_same_as_reference(pred, gt.astype(np.float64))
    assert_same_as_reference((pred * 255).astype(np.uint8), gt)
    for sigma in (0.8, 2.5):  # other kernel sizes, other halos
        want = ref.gradient_error(pred, gt, sigma=sigma)
        assert M.gradient_error(pred, gt, sigma=sigma) == pytest.approx(want, rel=0, abs=1e-9)
    for step, theta in ((0.05, 0.15), (0.25, 0.3)):
        want = ref.connectivity_error(pred, gt, step=step, theta=theta)
        assert M.connectivity_error(pred, gt, step, theta) == pytest.approx(want, rel=0, abs=1e-9)


def test_dtssd_term_matches_reference():
    rng = np.random.default_rng(0)
    frames = [rng.random((31, 45)).astype(np.float32) for _ in range(4)]
    want = ref.dtssd_term(*frames)
    assert M.dtssd_term(*frames) == pytest.approx(want, rel=0, abs=1e-9)


def test_realistic_1080p_pair(labelling):
    pred, gt = portrait_pair(1080, 1920, seed=0)
    assert 0.8 < np.mean((pred == 0) | (pred == 1)) < 1.0  # mostly flat, as real mattes are
    assert_same_as_reference(pred, gt)
