"""OwnedThread: one thread per owner, a stop that says whether it worked, a fresh stop Event per start."""

from __future__ import annotations

import threading
import time

import pytest

from engine.threads import OwnedThread, ThreadStillRunningError


def test_a_thread_that_ignores_stop_is_not_restarted_beside_itself() -> None:
    release = threading.Event()
    running = []

    def stubborn(stop: threading.Event) -> None:  # stuck in a call that does not look at `stop`
        running.append(threading.current_thread())
        release.wait(10)

    t = OwnedThread(stubborn, "stubborn")
    t.start()
    try:
        assert t.stop(timeout=0.1) is False  # it did not end: said so
        assert t.alive
        with pytest.raises(ThreadStillRunningError, match="stubborn"):
            t.start()
        assert len(running) == 1 and sum(th.name == "stubborn" for th in threading.enumerate()) == 1
    finally:
        release.set()
    assert t.stop(timeout=5) is True and not t.alive
    t.start()  # once the old one has ended, a new one may start
    assert t.stop(timeout=5) is True and len(running) == 2


def test_each_start_gets_a_fresh_stop_event_so_an_old_thread_still_sees_its_stop() -> None:
    events: list[threading.Event] = []
    ended = threading.Event()

    def worker(stop: threading.Event) -> None:
        events.append(stop)
        stop.wait(10)
        ended.set()

    t = OwnedThread(worker, "worker")
    t.start()
    while not events:
        time.sleep(0.001)
    assert t.stop(timeout=5)
    t.start()
    while len(events) < 2:
        time.sleep(0.001)
    assert events[0] is not events[1]
    assert events[0].is_set() and not events[1].is_set()  # the new start did not clear the old stop
    assert t.stop(timeout=5) and events[1].is_set()


def test_the_exception_that_ended_the_thread_is_kept_for_a_supervisor() -> None:
    def broken(stop: threading.Event) -> None:
        raise OSError("device gone")

    t = OwnedThread(broken, "broken", daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while t.alive and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not t.alive and isinstance(t.error, OSError) and t.started
    assert t.stop() is True and not t.started


def test_wake_interrupts_a_wait_on_something_else() -> None:
    cond = threading.Condition()

    def waiter(stop: threading.Event) -> None:
        with cond:
            while not stop.is_set():
                cond.wait(30)

    def wake() -> None:
        with cond:
            cond.notify_all()

    t = OwnedThread(waiter, "waiter", wake=wake)
    t.start()
    start = time.monotonic()
    assert t.stop(timeout=5) and time.monotonic() - start < 2
