"""Redis clients configured for request/reply calls that must fail fast, never hang.

redis-py's defaults retry a failed command ten times with back-off (seconds in all), which
would turn "Redis is down" into a slow request instead of a prompt 503. One retry without
back-off is kept: it transparently replaces a pooled connection that a Redis restart broke.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.config import RpcConfig
from workers.rpc.redis_url import redis_from_url

# hiredis hints its argument as a one-element tuple; it packs a command of any length
_pack_one: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack_one
except ImportError:  # hiredis is a dependency (redis[hiredis]); plain redis-py still works
    _pack_one = None


def connect(
    url: str,
    *,
    socket_timeout: float = RpcConfig.socket_timeout_s,
    connect_timeout: float = RpcConfig.connect_timeout_s,
    retries: int = 1,
) -> redis.Redis:
    """A client for the RPC: bounded connect/read times (blocking waits are cut to fit inside
    the socket timeout), one immediate retry on a broken socket. `url` may be a Sentinel URL
    (workers/rpc/redis_url.py)."""
    return redis_from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), retries),
    )


def max_block_s(client: redis.Redis) -> float | None:
    """The longest blocking wait that stays inside the client's socket timeout (None: no limit)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return None if timeout is None else max(0.8 * float(timeout), 0.001)


class ThreadConnections:
    """Request/reply calls on a Redis connection of each calling thread's own.

    What ``client.pipeline(transaction=False)`` does, minus its command stack and response
    callbacks, and minus the pool checkout (a lock, and a poll system call looking for
    stale data; bench/rpc_bench.py measures what they cost), which buys nothing
    here: `send_commands` reads every reply or closes the connection, so none is ever left
    holding data. A thread's connection closes when the thread ends (its last reference
    goes); a forked child opens its own instead of sharing the parent's socket. Use
    `of(client)`: clients made per request (as the web views make them) then share the
    connections of their pool instead of opening one each.
    """

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._local = threading.local()

    @classmethod
    def of(cls, client: redis.Redis) -> ThreadConnections:
        """The one instance for `client`'s connection pool."""
        pool = client.connection_pool
        with _shared_lock:
            found = _shared.get(pool)
            if found is None:
                found = _shared[pool] = cls(client)
            return found

    def send(self, *commands: tuple[object, ...], replies: int | None = None) -> list[object]:
        """`commands` in one write, their raw replies (BLPOP: ``[key, value]`` or None);
        `replies`: how many come back when some commands run with replies switched off. A
        broken connection is reopened and the whole batch sent once more, like redis-py's
        own retry."""
        conn = self._own()
        try:
            return send_commands(conn, commands, replies=replies)
        except redis.ConnectionError:
            # closed by the failure: this reconnects
            return send_commands(conn, commands, replies=replies)

    def _own(self) -> redis.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.forks != _forks:
            conn = local.conn = self._connection_class(**self._kwargs)
            local.forks = _forks
        return conn


_shared: weakref.WeakKeyDictionary[object, ThreadConnections] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()
_forks = 0  # forks this process is removed from its first ancestor by (see ThreadConnections)


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def send_commands(
    conn: redis.Connection,
    commands: tuple[tuple[object, ...], ...],
    written: Callable[[], None] | None = None,
    replies: int | None = None,
) -> list[object]:
    """`commands` in one write and their raw replies, on a connection the caller owns (a
    serving loop keeps one; see `ThreadConnections`); `written` is called once
    the commands are sent, before their replies are read (a BLPOP among them may block);
    `replies`: how many to read when some commands are sent with CLIENT REPLY SKIP. On
    any error the replies are left unread, so the connection is closed; its next use
    reconnects."""
    try:
        conn.send_packed_command(_packed(conn, commands), check_health=False)
        if written is not None:
            written()
        return [conn.read_response() for _ in range(len(commands) if replies is None else replies)]
    except BaseException:
        conn.disconnect()
        raise


def _packed(conn: redis.Connection, commands: tuple[tuple[object, ...], ...]) -> list[bytes]:
    """The commands in RESP, by hiredis's C packer when present: the same bytes as
    ``conn.pack_commands`` at a fraction of its CPU (both sides of a search pack twice)."""
    if _pack_one is None:
        return conn.pack_commands(commands)
    return [b"".join([_pack_one(command) for command in commands])]


def popped_value(reply: object) -> object | None:
    """The value of a raw BLPOP reply (``[key, value]``), None when the wait timed out."""
    return reply[1] if isinstance(reply, list) and len(reply) == 2 else None
