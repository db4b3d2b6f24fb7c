"""The shard's readers-writer lock: shared readers, an exclusive writer that is not starved."""

from __future__ import annotations

import threading
import time

import pytest

from workers.index.rwlock import RWLock

LOCKS = [RWLock]


@pytest.fixture(params=LOCKS, ids=lambda cls: cls.__module__.rsplit(".", 1)[-1])
def lock_class(request):
    return request.param


def _started(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _settle() -> None:
    time.sleep(0.05)  # long enough for a woken thread to run; only ordering is checked


def test_readers_share_and_a_writer_waits_for_the_last_one(lock_class) -> None:
    lock = lock_class()
    events: list[str] = []
    first, second = lock.read(), lock.read()
    first.__enter__()
    second.__enter__()  # two readers at once

    def write() -> None:
        with lock.write():
            events.append("write")

    writer = _started(write)
    _settle()
    assert events == []
    first.__exit__(None, None, None)
    _settle()
    assert events == []  # one reader still inside
    second.__exit__(None, None, None)
    writer.join(timeout=5)
    assert events == ["write"]  # the last reader out woke it


def test_a_waiting_writer_goes_before_new_readers_and_then_lets_them_in(lock_class) -> None:
    lock = lock_class()
    events: list[str] = []
    held = lock.read()
    held.__enter__()

    def write() -> None:
        with lock.write():
            events.append("write")

    def read() -> None:
        with lock.read():
            events.append("read")

    writer = _started(write)
    _settle()
    reader = _started(read)  # arrives while the writer waits: queues behind it
    _settle()
    assert events == []
    held.__exit__(None, None, None)
    writer.join(timeout=5)
    reader.join(timeout=5)
    assert events == ["write", "read"]


def test_many_threads_never_overlap_a_writer(lock_class) -> None:
    lock = lock_class()
    inside = {"readers": 0, "writers": 0}
    overlaps: list[str] = []
    guard = threading.Lock()

    def enter(kind: str) -> None:
        with guard:
            inside[kind] += 1
            if inside["writers"] > 1 or (inside["writers"] and inside["readers"]):
                overlaps.append(kind)

    def leave(kind: str) -> None:
        with guard:
            inside[kind] -= 1

    def reader() -> None:
        for _ in range(2000):
            with lock.read():
                enter("readers")
                leave("readers")

    def writer() -> None:
        for _ in range(300):
            with lock.write():
                enter("writers")
                leave("writers")

    threads = [_started(reader) for _ in range(4)] + [_started(writer) for _ in range(2)]
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == []
