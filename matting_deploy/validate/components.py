"""4-connected components of threshold masks, from their row runs.

A mask is kept as its row runs [start, end), keyed ``row * (w + 1) + col`` (so a run may end at
col w). Runs in consecutive rows that share a column are the edges of a small graph whose
components come from ``scipy.sparse.csgraph.connected_components``: a real matte has a few runs
per row, so this costs far less than labelling every pixel of ten 1080p masks with
``scipy.ndimage.label``, which is used instead for masks with many runs (noise).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

DENSE_RUNS = 1 / 64  # runs per pixel above which scipy.ndimage.label labels each mask instead


def transitions(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a row's level changes: keys ``row * (w + 1) + col`` and the levels left/right.

    Columns -1 and w count as level 0, so every run of a mask (level >= i) starts at a key whose
    left level is < i and ends (exclusive) at one whose right level is < i.
    """
    h, w = levels.shape
    framed = np.zeros((h, w + 2), np.uint8)
    framed[:, 1:-1] = levels
    key = np.flatnonzero(framed[:, 1:] != framed[:, :-1])
    left = key + key // (w + 1)  # the same place in the (h, w + 2) frame
    framed = framed.ravel()
    return key, framed[left], framed[left + 1]


def largest_runs(starts: np.ndarray, ends: np.ndarray, width: int, band: int) -> np.ndarray:
    """Per row run [start, end): is it in the largest 4-connected component of its band.

    Keys are ``row * width + col`` in a tall image of bands ``band`` keys high, each band ending
    with an empty row, sorted. Ties go to the component whose first pixel comes first in row
    order. Runs in consecutive rows that share a column are the graph's edges; one
    ``connected_components`` call labels every band.
    """
    n = len(starts)
    if n == 0:
        return np.zeros(0, bool)
    # key - width is the same column one row up: the runs above that share a column with [s, e)
    lo = np.searchsorted(ends, starts - width, side="right")  # first run above ending after s
    hi = np.searchsorted(starts, ends - width, side="left")  # first run above starting at/after e
    cnt = hi - lo
    src = np.repeat(np.arange(n), cnt)
    dst = np.arange(len(src)) - np.repeat(np.cumsum(cnt) - cnt - lo, cnt)
    graph = coo_array((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    count, comp = connected_components(graph, directed=False)
    size = np.bincount(comp, weights=ends - starts)
    first = np.unique(comp, return_index=True)[1]  # earliest run (= first pixel) per component
    where = starts[first] // band
    order = np.lexsort((first, -size, where))  # per band: largest first, then earliest
    best = np.zeros(count, bool)
    best[order[np.r_[True, where[order][1:] != where[order][:-1]]]] = True
    return best[comp]


def _inside(key: int, starts: np.ndarray, ends: np.ndarray) -> bool:
    k = int(np.searchsorted(starts, key, side="right")) - 1
    return k >= 0 and key < ends[k]


def _largest_labelled(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of the largest component of ``mask`` by ``scipy.ndimage.label`` (4-connected).

    ndimage numbers components by their first pixel in row order, so the first of the largest
    sizes is the tie rule's choice.
    """
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    key, left, right = transitions((labels == np.argmax(sizes)).view(np.uint8))
    return key[right > left], key[left > right]


def omega_runs(levels: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Runs (starts, ends) of omega_i, the largest 4-connected component of (levels >= i), i = 1..n.

    Few runs per pixel (real mattes): one graph of every level's runs. Many (noise): label each
    mask with ``scipy.ndimage.label``, which then costs less than a graph of that size.
    """
    h, w = levels.shape
    key, left, right = transitions(levels)
    rising = [(left < i) & (right >= i) for i in range(1, n + 1)]
    if sum(np.count_nonzero(r) for r in rising) > DENSE_RUNS * levels.size:
        return [_largest_labelled(levels >= i) for i in range(1, n + 1)]
    band = (h + 1) * (w + 1)  # the masks of all levels stacked, an empty row between them
    starts = np.concatenate([key[r] + i * band for i, r in enumerate(rising, 1)])
    ends = np.concatenate([key[(left >= i) & (right < i)] + i * band for i in range(1, n + 1)])
    keep = largest_runs(starts, ends, w + 1, band)
    starts, ends = starts[keep], ends[keep]
    mask_of = starts // band
    return [(starts[mask_of == i] - i * band, ends[mask_of == i] - i * band) for i in range(1, n + 1)]


def omega_chain(levels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of omega_1, omega_2, ... while each lies inside the one before (see omega_runs).

    omega_i lies inside one component of (levels >= i-1): either omega_{i-1}, or one apart from
    it, after which no pixel stays in every omega. A pixel's depth (the number of leading omegas
    holding it) is then the number of returned runs covering it. Both arrays come back sorted.
    """
    chain: list[tuple[np.ndarray, np.ndarray]] = []
    for starts, ends in omega_runs(levels, n):
        if len(starts) == 0 or (chain and not _inside(int(starts[0]), *chain[-1])):
            break
        chain.append((starts, ends))
    if not chain:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.sort(np.concatenate([s for s, _ in chain])), np.sort(np.concatenate([e for _, e in chain]))


def covered(keys: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many runs [starts, ends) (each sorted) cover each key."""
    return np.searchsorted(starts, keys, side="right") - np.searchsorted(ends, keys, side="right")


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of ``mask`` (ties: the one starting first); empty if none."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got {mask.shape}")
    h, w = mask.shape
    key, left, right = transitions(mask.view(np.uint8))
    starts, ends = key[right > left], key[left > right]
    keep = largest_runs(starts, ends, w + 1, (h + 1) * (w + 1))
    starts, ends = starts[keep], ends[keep]
    grid = np.arange(h)[:, None] * (w + 1) + np.arange(w)
    return covered(grid, starts, ends).astype(bool)
