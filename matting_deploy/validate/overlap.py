"""Score item k on a worker thread while the caller produces item k+1 (e.g. runs inference).

The heavy parts of scoring (numpy, scipy, BLAS) and of inference (onnxruntime, TensorRT) release
the GIL, so one thread is enough for the two to run side by side: a loop then takes about as long
as the slower of the two instead of their sum.

    for scored in scored_in_background(inferred(pairs), score):
        ...

Results come back in item order. The first error, from producing or from scoring, is raised in
the caller; nothing is left running behind it: queued work is cancelled and the pool shut down
(a score already running is waited for, it cannot be interrupted). Ctrl-C works the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def scored_in_background(
    items: Iterable[T], score: Callable[[T], R], workers: int = 1, ahead: int | None = None
) -> Iterator[R]:
    """Yield ``score(item)`` for each item, in order, scoring on ``workers`` threads.

    ``items`` is consumed in the caller's thread, lazily: a generator that runs inference keeps
    inferring while earlier items are scored. At most ``ahead`` items (default ``workers + 1``)
    wait or run in the pool; producing then pauses, so memory stays bounded when scoring is the
    slower side. With ``workers=1`` the score calls run one at a time in item order, so ``score``
    may carry state from one item to the next (a clip's previous frame). ``workers=0`` scores in
    the caller's thread, one item after the other (no overlap; for comparing and debugging).
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    if workers == 0:
        yield from map(score, items)
        return
    ahead = workers + 1 if ahead is None else ahead
    if ahead < 1:
        raise ValueError(f"ahead must be at least 1, got {ahead}")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(score, item))
            while len(pending) > ahead or (pending and pending[0].done()):
                yield pending.popleft().result()  # raises the item's error here, in order
        while pending:
            yield pending.popleft().result()
    finally:  # also on error, on Ctrl-C and when the caller stops early (generator closed)
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)

