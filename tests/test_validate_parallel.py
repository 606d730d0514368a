"""validate's CPU workers (validate/parallel.py, on overlap.scored_in_background with several
threads): same scores as one runner, item order, errors."""

from __future__ import annotations

import threading
import time

import pytest

from matting_deploy.bundle import Bundle
from matting_deploy.data.pairs import load_dataset
from matting_deploy.validate.jobs import Job
from matting_deploy.validate.overlap import scored_in_background
from matting_deploy.validate.parallel import RunnerPool, split
from matting_deploy.validate.scoring import Scorer, run_job
from tests.fixtures import make_clip, make_ppm_data, make_runtime_bundle


def test_split_shares_the_cores():
    assert split(1) == (1, 1)
    assert split(2) == (2, 1)
    assert split(16) == (4, 4)
    assert split(3, max_workers=8) == (3, 1)


def test_results_come_back_in_item_order():
    def work(i):
        time.sleep(0.02 * (5 - i))  # the first items finish last
        return i * i

    assert list(scored_in_background(range(6), work, workers=3)) == [i * i for i in range(6)]


def test_the_first_error_is_raised_and_queued_items_are_not_run():
    ran = []

    def work(i):
        if i == 1:
            raise ValueError("item 1")
        time.sleep(0.05)
        ran.append(i)
        return i

    with pytest.raises(ValueError, match="item 1"):
        list(scored_in_background(range(40), work, workers=2, ahead=4))
    assert len(ran) < 10  # the rest was cancelled, not run


def test_runner_pool_opens_one_runner_per_thread_and_closes_all():
    opened = []

    class Fake:
        closed = False

        def close(self):
            self.closed = True

    def open_runner(threads):
        opened.append(threads)
        return Fake()

    pool = RunnerPool(open_runner, threads=3)
    seen = []
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=10)  # each call waits for one on the other worker

    def use(_):
        runner = pool.get()
        assert pool.get() is runner  # the same thread gets its own runner back
        with lock:
            seen.append(runner)
        both.wait()
        return True

    assert all(scored_in_background(range(6), use, workers=2))
    runners = set(map(id, seen))
    assert len(runners) == 2 and opened == [3, 3]  # one runner per worker thread, each opened once
    pool.close()
    assert all(r.closed for r in seen)


@pytest.mark.parametrize("artifact", ["fp32", "int8"])
def test_workers_score_exactly_like_one_runner(tmp_path, artifact):
    """Stills and a clip (state carried) give the same metrics on 2 workers as on one runner."""
    bundle = Bundle.open(make_runtime_bundle(tmp_path / "b", "rvm", int8=True))
    root = make_ppm_data(tmp_path / "data", n=5)
    make_clip(root / "clip", frames=4)
    data = load_dataset(root)
    job = Job(artifact, "cpu", bundle.artifact_path(artifact))
    runs = [run_job(bundle, job, data, Scorer(bundle), progress=False, cores=c) for c in (1, 2)]
    one, two = ([(s.name, s.metrics) for s in r.images] for r in runs)
    assert [n for n, _ in one] == [p.name for p in data.images] and one == two
    clips = [[(f.name, f.metrics) for c in r.clips for f in c.frames] for r in runs]
    assert len(clips[0]) == 4 and clips[0] == clips[1]
