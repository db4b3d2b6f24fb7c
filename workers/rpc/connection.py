"""Redis clients configured for request/reply calls that must fail fast, never hang.

redis-py's defaults retry a failed command ten times with back-off (seconds in all), which
would turn "Redis is down" into a slow request instead of a prompt 503. One retry without
back-off is kept: it transparently replaces a pooled connection that a Redis restart broke.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

try:
    from hiredis import pack_command as _pack_one
except ImportError:  # hiredis is a dependency (redis[hiredis]); plain redis-py still works
    _pack_one = None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def connect(
    url: str,
    *,
    socket_timeout: float | None = None,
    connect_timeout: float | None = None,
    retries: int = 1,
) -> redis.Redis:
    """A client for the RPC: bounded connect/read times, one immediate retry on a broken socket.

    Defaults come from RPC_SOCKET_TIMEOUT_S (5 s; blocking waits are cut to fit inside it)
    and RPC_CONNECT_TIMEOUT_S (0.25 s).
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout or _env_float("RPC_SOCKET_TIMEOUT_S", 5.0),
        socket_connect_timeout=connect_timeout or _env_float("RPC_CONNECT_TIMEOUT_S", 0.25),
        retry=Retry(NoBackoff(), retries),
    )


def max_block_s(client: redis.Redis) -> float | None:
    """The longest blocking wait that stays inside the client's socket timeout (None: no limit)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return None if timeout is None else max(0.8 * float(timeout), 0.001)


def pipelined(client: redis.Redis, *commands: tuple[object, ...]) -> list[object]:
    """Send `commands` in one write and read their raw replies, on one pooled connection.

    What ``client.pipeline(transaction=False)`` does, minus its command stack and response
    callbacks, which cost ~25 us of CPU a call here: the RPC makes two such calls on each
    side of a search. Replies are as Redis sends them (BLPOP: ``[key, value]`` or None). A
    broken connection is replaced and the whole batch sent once more, like the client's
    own retry.
    """
    pool = client.connection_pool
    for attempt in (1, 2):
        conn = pool.get_connection()
        try:
            return send_commands(conn, commands)
        except redis.ConnectionError:
            if attempt == 2:
                raise
        finally:
            pool.release(conn)
    raise AssertionError("unreachable")


def send_commands(
    conn: redis.Connection,
    commands: tuple[tuple[object, ...], ...],
    written: Callable[[], None] | None = None,
    replies: int | None = None,
) -> list[object]:
    """`pipelined` on a connection the caller owns (a serving loop keeps one: no pool
    checkout, whose liveness poll is a system call per call); `written` is called once
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
    ``conn.pack_commands`` at a fifth of its CPU (2 vs 13 us for a client's four commands,
    several times more on a cold cache, and both sides of a search pack twice)."""
    if _pack_one is None:
        return conn.pack_commands(commands)
    return [b"".join([_pack_one(command) for command in commands])]


def popped_value(reply: object) -> object | None:
    """The value of a raw BLPOP reply (``[key, value]``), None when the wait timed out."""
    return reply[1] if isinstance(reply, list) and len(reply) == 2 else None
