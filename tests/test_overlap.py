"""scored_in_background: order, real overlap, errors, early stop, Ctrl-C, bounded look-ahead."""

from __future__ import annotations

import random
import threading
import time

import pytest

from matting_deploy.validate.overlap import scored_in_background

WAIT = 10.0  # seconds before a missing hand-off counts as a failure (instead of a hang)


def _score_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("score") and t.is_alive()]


@pytest.fixture(autouse=True)
def no_threads_left():
    yield
    assert _score_threads() == [], "a scoring thread outlived its loop"


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_come_back_in_item_order(workers):
    rng = random.Random(workers)
    delays = [rng.uniform(0, 0.01) for _ in range(30)]

    def score(i: int) -> int:
        time.sleep(delays[i])
        return i * i

    assert list(scored_in_background(range(30), score, workers=workers)) == [i * i for i in range(30)]


def test_scoring_overlaps_producing():
    # score(k) only returns once item k+1 has been produced: a loop that scored in the caller's
    # thread, or waited for each score before producing the next item, would never finish.
    produced = [threading.Event() for _ in range(6)]

    def items():
        for k in range(5):
            produced[k].set()
            yield k

    def score(k: int) -> int:
        if k < 4:
            assert produced[k + 1].wait(WAIT), f"item {k + 1} was not produced while {k} was scored"
        return k

    assert list(scored_in_background(items(), score)) == list(range(5))


def test_one_worker_scores_one_at_a_time_in_order():
    seen, busy = [], []

    def score(i: int) -> int:
        busy.append(i)
        assert len(busy) == 1, "two scores ran at once"
        time.sleep(0.002)
        seen.append(i)
        busy.pop()
        return i

    list(scored_in_background(range(12), score, workers=1, ahead=4))
    assert seen == list(range(12))


def test_a_scoring_error_is_raised_in_the_caller_and_stops_producing():
    produced = []

    def items():
        for k in range(1000):
            produced.append(k)
            yield k

    def score(k: int) -> int:
        if k == 3:
            raise ValueError("bad matte 3")
        time.sleep(0.001)
        return k

    got = []
    with pytest.raises(ValueError, match="bad matte 3"):
        for value in scored_in_background(items(), score):
            got.append(value)
    assert got == [0, 1, 2]
    assert len(produced) < 10  # it stopped soon after the failure, not at the end of the data


def test_a_producing_error_cancels_queued_scores():
    started = []

    def items():
        yield from range(3)
        raise RuntimeError("inference failed")

    def score(k: int) -> int:
        started.append(k)
        time.sleep(0.05)
        return k

    with pytest.raises(RuntimeError, match="inference failed"):
        list(scored_in_background(items(), score, workers=1, ahead=3))
    assert len(started) < 3  # the queued ones were cancelled, not run


def test_ctrl_c_while_producing_leaves_nothing_running():
    running = []

    def items():
        yield 0
        yield 1
        running.extend(_score_threads())  # the pool's worker, alive while producing
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(scored_in_background(items(), lambda k: time.sleep(0.01)))
    assert running and not any(t.is_alive() for t in running)  # the worker existed and is gone
    assert _score_threads() == []


def test_ctrl_c_inside_a_score_reaches_the_caller():
    def score(k: int) -> int:
        if k == 2:
            raise KeyboardInterrupt
        return k

    with pytest.raises(KeyboardInterrupt):
        list(scored_in_background(range(10), score))


def test_stopping_early_shuts_the_pool_down():
    scored = []

    def score(k: int) -> int:
        scored.append(k)
        return k

    gen = scored_in_background(range(100), score)
    assert next(gen) == 0
    running = _score_threads()
    assert running  # the worker is up while the caller holds the generator
    gen.close()  # what a `break` out of the for loop does
    assert not any(t.is_alive() for t in running) and _score_threads() == []
    assert len(scored) < 10  # the rest was never scored


def test_look_ahead_is_bounded():
    produced, scored = [0], [0]
    lead = []

    def items():
        for k in range(40):
            lead.append(produced[0] - scored[0])
            produced[0] += 1
            yield k

    def score(k: int) -> int:
        time.sleep(0.002)  # scoring is the slow side here
        scored[0] += 1
        return k

    list(scored_in_background(items(), score, workers=1, ahead=2))
    assert max(lead) <= 3  # two waiting or running, plus the one being handed over


def test_no_workers_scores_inline():
    callers = []

    def score(k: int) -> int:
        callers.append(threading.current_thread())
        return -k

    assert list(scored_in_background(range(5), score, workers=0)) == [0, -1, -2, -3, -4]
    assert set(callers) == {threading.current_thread()}


def test_bad_arguments():
    with pytest.raises(ValueError):
        next(scored_in_background([1], lambda k: k, workers=-1))
    with pytest.raises(ValueError):
        next(scored_in_background([1], lambda k: k, ahead=0))
