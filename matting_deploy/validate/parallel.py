"""Score many items at once on the CPU backend: one runner per worker thread, each given a share
of the cores.

On the CPU backend inference is the slow side of validate and it already uses every core, so
scoring on a background thread (:mod:`.overlap`) has nothing left to overlap with. What does pay
is running several small onnxruntime sessions side by side instead of one wide one: an operator
split over all cores waits for the slowest at every node, while independent sessions never wait
for each other (RVM 480x288 on 2 cores: two one-thread sessions ran 1.35x the frames per second
of one two-thread session; bench/NOTES-validate.md). onnxruntime releases the GIL while it runs,
so threads are enough.

Every still image starts from zero state and every clip is one task (its frames in order, state
carried), so results do not depend on which worker ran what. The workers themselves are
:func:`.overlap.scored_in_background` with several threads (results in item order).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

MAX_WORKERS = 4


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split(cores: int, max_workers: int = MAX_WORKERS) -> tuple[int, int]:
    """(worker threads, onnxruntime threads per worker) for ``cores`` cores: one worker per core
    up to ``max_workers`` (each session holds its own copy of the model), the cores shared out."""
    workers = max(1, min(cores, max_workers))
    return workers, max(1, cores // workers)


class RunnerPool:
    """One runner per worker thread, opened on first use by ``open_runner(threads)`` and all
    closed by :meth:`close`."""

    def __init__(self, open_runner: Callable[[int], Any], threads: int):
        self._open, self._threads = open_runner, threads
        self._local = threading.local()
        self._lock = threading.Lock()
        self._runners: list[Any] = []

    def get(self) -> Any:
        runner = getattr(self._local, "runner", None)
        if runner is None:
            runner = self._open(self._threads)
            with self._lock:
                self._runners.append(runner)
            self._local.runner = runner
        return runner

    def close(self) -> None:
        with self._lock:
            runners, self._runners = self._runners, []
        for runner in runners:
            runner.close()
