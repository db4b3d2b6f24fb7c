"""Concurrent calls of one process that can share a request travel as one (group commit).

A web process serves many searches at once, each a request to every shard: at 8 callers
the per-request costs (a message to encode and decode on each side, Redis commands,
wake-ups) bound the rate well before the shards' search does. Here at most `in_flight`
calls run at a time; a caller that finds them all busy joins the group waiting for the
next free slot, and the group's first caller (its leader) sends every member's rows as one
request when the slot frees. A lone caller finds a free slot and goes at once.

A group holds calls of one key (k, filters, query width, timeout); its deadline is its
earliest member's, and all members share its outcome: the result rows of each, or the
error that ended the call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from workers.rpc.errors import NoShardAvailable

Outcome = TypeVar("Outcome")
# run(stacked rows, seconds left, trace ids joined, members) -> the outcome all members share
Run = Callable[[np.ndarray, float, str, int], Outcome]


@dataclass
class _Group(Generic[Outcome]):
    deadline: float  # time.monotonic() by which the earliest member wants its answer
    rows: list[np.ndarray] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    n_rows: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    error: BaseException | None = None


class Coalescer(Generic[Outcome]):
    """Runs calls at most `in_flight` at a time, each carrying every call that waited for it."""

    def __init__(self, in_flight: int = 1, *, max_rows: int = 256, max_trace_chars: int = 128):
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self.max_rows = max_rows
        self.max_trace_chars = max_trace_chars
        self._slots = threading.BoundedSemaphore(in_flight)
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Group[Outcome]] = {}

    def call(
        self, key: Hashable, rows: np.ndarray, timeout_s: float, trace_id: str, run: Run
    ) -> tuple[Outcome, slice]:
        """The shared outcome, and which of its rows are this caller's."""
        now = time.monotonic()
        with self._lock:
            group = self._open.get(key)
            # A free slot and nobody waiting: go at once, with no group for others to join
            # (one would close the moment the slot is taken).
            alone = group is None and self._slots.acquire(blocking=False)
            if not alone:
                leader = group is None or group.n_rows + len(rows) > self.max_rows
                if leader:
                    group = self._open[key] = _Group(deadline=now + timeout_s)
                assert group is not None
                mine = slice(group.n_rows, group.n_rows + len(rows))
                group.rows.append(rows)
                group.traces.append(trace_id)
                group.n_rows += len(rows)
                group.deadline = min(group.deadline, now + timeout_s)
        if alone:
            try:
                return run(rows, timeout_s, self._trace([trace_id]), 1), slice(0, len(rows))
            finally:
                self._slots.release()
        assert group is not None
        if leader:
            self._lead(key, group, run)
        elif not group.done.wait(timeout_s * 2 + 1.0):  # the leader ends by the deadline
            raise NoShardAvailable("the search this call joined never finished")
        if group.error is not None:
            raise group.error
        return group.outcome, mine  # type: ignore[return-value]

    def _lead(self, key: Hashable, group: _Group[Outcome], run: Run) -> None:
        acquired = self._slots.acquire(timeout=max(0.0, group.deadline - time.monotonic()))
        with self._lock:  # closed: nobody joins once the rows are read
            if self._open.get(key) is group:
                del self._open[key]
        try:
            left = group.deadline - time.monotonic()
            if not acquired or left < 0.001:
                raise NoShardAvailable("the deadline passed before the search could be sent")
            rows = group.rows[0] if len(group.rows) == 1 else np.vstack(group.rows)
            group.outcome = run(rows, left, self._trace(group.traces), len(group.traces))
        except BaseException as exc:  # every member gets it, the leader included
            group.error = exc
        finally:
            if acquired:
                self._slots.release()
            group.done.set()

    def _trace(self, traces: list[str]) -> str:
        """The members' trace ids, whole ones only, within the protocol's length."""
        out = ""
        for trace in dict.fromkeys(t for t in traces if t):
            joined = f"{out},{trace}" if out else trace
            if len(joined) > self.max_trace_chars:
                break
            out = joined
        return out
