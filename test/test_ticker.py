"""Ticks on a thread of their own (qai_edge.ticker): under the lock, on schedule, past errors, stopped for good."""

import threading
import time

import pytest

from harness import wait_for
from qai_edge.ticker import Ticker


def test_each_tick_runs_under_the_lock_on_its_own_schedule():
    lock = threading.Lock()
    seen = {"fast": [], "slow": []}

    def tick(name):
        assert lock.locked()  # the ticker holds it: the executor's uses of the same state wait
        seen[name].append(time.monotonic())

    ticker = Ticker([(0.01, lambda: tick("fast")), (0.05, lambda: tick("slow"))], lock, pytest.fail)
    began = time.monotonic()
    ticker.start()
    try:
        wait_for(lambda: len(seen["slow"]) >= 3, 10, "three slow ticks")
    finally:
        ticker.stop()
    assert len(seen["fast"]) > len(seen["slow"]) and ticker.ticks == [len(seen["fast"]), len(seen["slow"])]
    assert all(at >= began + (k + 1) * 0.05 for k, at in enumerate(seen["slow"]))  # tick k never before its time


def test_a_tick_that_raises_is_reported_and_the_next_one_runs():
    errors = []
    count = [0]

    def tick():
        count[0] += 1
        raise RuntimeError(f"tick {count[0]}")

    ticker = Ticker([(0.01, tick)], threading.Lock(), lambda fn, error: errors.append(str(error)))
    ticker.start()
    try:
        wait_for(lambda: len(errors) >= 3, 10, "three reported errors")
    finally:
        ticker.stop()
    assert errors[:3] == ["tick 1", "tick 2", "tick 3"]


def test_ticks_missed_by_a_slow_one_are_skipped_not_run_in_a_burst():
    times = []

    def tick():
        times.append(time.monotonic())
        if len(times) == 2:
            time.sleep(0.2)  # twenty periods

    ticker = Ticker([(0.01, tick)], threading.Lock(), pytest.fail)
    ticker.start()
    try:
        wait_for(lambda: len(times) >= 4, 10, "ticks after the slow one")
    finally:
        ticker.stop()
    assert ticker.skipped[0] >= 19 and times[2] - times[1] >= 0.2  # the slots it missed were skipped


def test_stop_waits_for_the_tick_under_way_and_no_tick_runs_after_it():
    started, release, after = threading.Event(), threading.Event(), []

    def tick():
        started.set()
        release.wait(5)
        after.append(time.monotonic())

    ticker = Ticker([(0.01, tick)], threading.Lock(), pytest.fail)
    ticker.start()
    assert started.wait(5)
    threading.Timer(0.1, release.set).start()
    ticker.stop(timeout=5)
    stopped = time.monotonic()
    assert len(after) == 1 and after[0] <= stopped and not ticker._thread.is_alive()


@pytest.mark.parametrize("period", [0, -1.0, float("nan")])
def test_a_period_that_is_not_positive_is_refused(period):
    with pytest.raises(ValueError, match="period: expected > 0 s"):
        Ticker([(period, lambda: None)], threading.Lock(), pytest.fail)


def test_ticks_without_a_lock_run_all_the_same():
    count = []
    ticker = Ticker([(0.01, lambda: count.append(1))], None, pytest.fail)
    ticker.start()
    try:
        wait_for(lambda: len(count) >= 3, 10, "three ticks")
    finally:
        ticker.stop()
    assert not ticker._thread.is_alive()
