"""The caller's half of a call: push one request to several lists, wait for their replies.

One write and one wake-up a call when every list answers in time: the pushes go with
their replies switched off (CLIENT REPLY OFF), and the wait is a BLPOP on the request's
done key, which the servers' fan-in script fills with the last reply (workers/rpc/server.py),
followed in the same write by an LPOP of all the replies (Redis runs it the moment the
BLPOP returns). Whatever is still missing then (a list that answered twice, one that is
late) is waited for reply by reply until the deadline.
"""

from __future__ import annotations

import logging
import os
import time

import redis

from workers.rpc.connection import ThreadConnections, max_block_s, popped_value
from workers.rpc.errors import RpcUnavailable
from workers.rpc.protocol import (
    REPLY_KEY_PREFIX,
    ProtocolError,
    ProtocolLimits,
    Reply,
    Request,
    RequestPayload,
    decode_reply,
    encode_request,
)

log = logging.getLogger(__name__)

_REPLIES_OFF = ("CLIENT", "REPLY", "OFF")
_REPLIES_ON = ("CLIENT", "REPLY", "ON")  # answered +OK: the one reply of the sends


class Transport:
    """Push one encoded request to several lists, then pop replies from a private list.

    Request lists are bounded (`max_queue_len`, oldest dropped first) and expire
    `queue_ttl_s` after the last push, so a list with no live server cannot make Redis
    grow without end; every deadline must therefore be shorter than `queue_ttl_s`.
    """

    def __init__(
        self, client: redis.Redis, limits: ProtocolLimits, max_queue_len: int, queue_ttl_s: int
    ) -> None:
        self._connections = ThreadConnections.of(client)
        self.limits = limits
        self.max_queue_len = max_queue_len
        self.queue_ttl_s = queue_ttl_s
        self.max_block_s = max_block_s(client)

    def call(
        self, queue_keys: list[str], payload: RequestPayload, timeout_s: float, trace_id: str
    ) -> list[Reply]:
        return [reply for reply, _ in self.call_timed(queue_keys, payload, timeout_s, trace_id)]

    def call_timed(
        self, queue_keys: list[str], payload: RequestPayload, timeout_s: float, trace_id: str
    ) -> list[tuple[Reply, float]]:
        """The replies that arrived in time, each with its seconds since the send (with
        several lists, the replies that came together share the time of the last one)."""
        if not 0 < timeout_s < self.queue_ttl_s:
            raise ValueError(f"timeout_s must be in (0, {self.queue_ttl_s})")
        started = time.monotonic()
        request_id = os.urandom(16).hex()  # what uuid4().hex is for, minus its class
        request = Request(
            id=request_id,
            reply_to=REPLY_KEY_PREFIX + request_id,
            deadline=time.time() + timeout_s,
            payload=payload,
            trace_id=trace_id,
            expect=len(queue_keys),
        )
        raw = encode_request(request)
        commands: list[tuple[object, ...]] = [_REPLIES_OFF]
        for key in queue_keys:
            commands.append(("RPUSH", key, raw))
            commands.append(("LTRIM", key, -self.max_queue_len, -1))
            commands.append(("EXPIRE", key, self.queue_ttl_s))
        commands.append(_REPLIES_ON)
        n_keys = len(queue_keys)  # three commands each, and OFF, answer nothing
        until = started + timeout_s
        wait = self._wait_s(until)
        if wait is not None:
            if request.expect == 1:
                commands.append(("BLPOP", request.reply_to, wait))
            else:
                commands.append(("BLPOP", request.done_key, wait))
                commands.append(("LPOP", request.reply_to, request.expect))
        try:
            results = self._connections.send(*commands, replies=len(commands) - 3 * n_keys - 1)
        except redis.RedisError as exc:
            raise RpcUnavailable(f"cannot send the request through Redis: {exc}") from exc
        replies: list[tuple[Reply, float]] = []
        if wait is not None:
            if request.expect == 1:
                self._accept(popped_value(results[-1]), request, replies, started)
            elif isinstance(results[-1], list):
                for value in results[-1][: request.expect]:
                    self._accept(value, request, replies, started)
        return self._gather(request, until, replies, started)

    def _wait_s(self, until: float) -> float | None:
        """How long the next BLPOP may block, or None when the deadline is (almost) here."""
        remaining = until - time.monotonic()
        if remaining < 0.001:  # BLPOP counts whole ms, and 0 would block forever
            return None
        return remaining if self.max_block_s is None else min(remaining, self.max_block_s)

    def _accept(
        self,
        raw: object,
        request: Request,
        replies: list[tuple[Reply, float]],
        started: float,
    ) -> None:
        if raw is None:
            return
        try:
            reply = decode_reply(raw, self.limits)
        except ProtocolError as exc:
            log.warning("rpc: dropped a malformed reply on %s: %s", request.reply_to, exc)
            return
        if reply.id != request.id:
            return
        if reply.shard is not None and any(seen.shard == reply.shard for seen, _ in replies):
            return  # a request delivered twice (a send retried after a broken read)
        replies.append((reply, time.monotonic() - started))

    def _gather(
        self,
        request: Request,
        until: float,
        replies: list[tuple[Reply, float]],
        started: float,
    ) -> list[tuple[Reply, float]]:
        while len(replies) < request.expect:
            wait = self._wait_s(until)
            if wait is None:
                break
            try:
                (popped,) = self._connections.send(("BLPOP", request.reply_to, wait))
            except redis.RedisError as exc:
                if replies:  # keep what already arrived: a partial answer beats none
                    log.warning("rpc: redis failed while gathering replies: %s", exc)
                    break
                raise RpcUnavailable(f"lost Redis while waiting for replies: {exc}") from exc
            self._accept(popped_value(popped), request, replies, started)
        return replies
