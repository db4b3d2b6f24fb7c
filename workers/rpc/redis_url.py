"""Redis URLs, plain or through Sentinel, and the one function that turns one into a client.

Plain URLs are redis-py's own (``redis://[[user]:password@]host[:port][/db]``, ``rediss://``,
``unix://``). A Sentinel URL names the sentinels and the master they watch::

    redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/<db>]
                     [?sentinel_password=<password>]

The credentials are the data nodes' (master and replicas); the sentinels' own password, when
they have one, is `sentinel_password` or else the SENTINEL_PASSWORD environment variable.
Errors name the part that is wrong and never echo a password.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelManagedConnection

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379
_MASTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SENTINEL_OPTIONS = {"sentinel_password"}


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message names what is wrong, never a password."""


@dataclass(frozen=True)
class RedisUrl:
    """A parsed Redis URL. `hosts` are the sentinels for a Sentinel URL, else the server."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    db: int
    master: str | None = None  # the name Sentinel knows the master by; None: a plain URL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    url: str = field(default="", repr=False)

    @property
    def is_sentinel(self) -> bool:
        return self.master is not None

    def masked(self) -> str:
        """The URL with the passwords left out, for logs and error messages."""
        auth = ""
        if self.username or self.password:
            auth = f"{self.username or ''}{':****' if self.password else ''}@"
        hosts = ",".join(_host_port(host, port) for host, port in self.hosts)
        if self.is_sentinel:
            return f"{SENTINEL_SCHEME}://{auth}{hosts}/{self.master}/{self.db}"
        return f"{self.scheme}://{auth}{hosts}/{self.db}"


def parse_redis_url(url: str, *, sentinel_password: str | None = None) -> RedisUrl:
    """Check and split `url`; raises RedisUrlError naming what is wrong.

    `sentinel_password` (else the URL's, else $SENTINEL_PASSWORD) authenticates to the
    sentinels of a Sentinel URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise RedisUrlError("the Redis URL is empty")
    scheme, sep, _rest = url.partition("://")
    if not sep:
        raise RedisUrlError("the Redis URL has no scheme (redis://, rediss://, redis+sentinel://)")
    scheme = scheme.lower()
    if scheme == SENTINEL_SCHEME:
        return _parse_sentinel(url, sentinel_password)
    if scheme in PLAIN_SCHEMES:
        return _parse_plain(url, scheme)
    known = ", ".join(f"{s}://" for s in (*PLAIN_SCHEMES, SENTINEL_SCHEME))
    raise RedisUrlError(f"unknown Redis URL scheme {scheme!r}: use one of {known}")


def _split(url: str) -> Any:
    try:
        return urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": names no part of the URL
        raise RedisUrlError(f"the Redis URL cannot be parsed: {exc}") from None


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    """(user, password, host part) of a netloc; the last '@' ends the credentials."""
    userinfo, at, hostinfo = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, (unquote(password) if colon else None) or None, hostinfo


def _parse_plain(url: str, scheme: str) -> RedisUrl:
    parts = _split(url)
    user, password, _hostinfo = _credentials(parts.netloc)
    if scheme == "unix":
        return RedisUrl(scheme, (), _db(parts), None, user, password, url=url)
    try:
        port = parts.port or 6379
    except ValueError:
        raise RedisUrlError("the Redis URL's port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise RedisUrlError("the Redis URL names no host")
    return RedisUrl(scheme, ((parts.hostname, port),), _db(parts), None, user, password, url=url)


def _db(parts: Any) -> int:
    text = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    if not text.isdigit():
        raise RedisUrlError(f"the Redis database must be a number, not {text!r}")
    return int(text)


def _parse_sentinel(url: str, sentinel_password: str | None) -> RedisUrl:
    parts = _split(url)
    if parts.fragment:
        raise RedisUrlError("a Sentinel URL takes no #fragment")
    user, password, hostinfo = _credentials(parts.netloc)
    hosts = tuple(_sentinel_address(item) for item in hostinfo.split(","))

    path = parts.path.split("/")[1:]
    if path and path[-1] == "":
        path.pop()  # a trailing slash
    if not path or not path[0]:
        raise RedisUrlError(
            "a Sentinel URL names the master after the sentinels: "
            "redis+sentinel://host:26379,.../<master-name>[/<db>]"
        )
    if len(path) > 2:
        raise RedisUrlError("a Sentinel URL's path is /<master-name>[/<db>], nothing more")
    master = unquote(path[0])
    if not _MASTER_NAME.fullmatch(master):
        raise RedisUrlError(f"the master name {master!r} must be letters, digits, '.', '_' or '-'")
    db_text = path[1] if len(path) == 2 else "0"
    if not db_text.isdigit():
        raise RedisUrlError(f"the Redis database must be a number, not {db_text!r}")

    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - _SENTINEL_OPTIONS)
    if unknown:
        raise RedisUrlError(
            f"unknown Sentinel URL option(s) {', '.join(unknown)}: "
            f"only {', '.join(sorted(_SENTINEL_OPTIONS))} is read"
        )
    from_url = options.get("sentinel_password", [""])[-1]
    sentinels_password = (
        sentinel_password or from_url or os.environ.get("SENTINEL_PASSWORD") or None
    )
    return RedisUrl(
        SENTINEL_SCHEME,
        hosts,
        int(db_text),
        master,
        user,
        password,
        sentinels_password,
        url=url,
    )


def _sentinel_address(item: str) -> tuple[str, int]:
    if not item.strip():
        raise RedisUrlError(
            "a Sentinel URL needs at least one sentinel address, and none empty: "
            "redis+sentinel://host1:26379,host2:26379/<master-name>"
        )
    address = _split(f"//{item}")
    try:
        port = address.port or DEFAULT_SENTINEL_PORT
    except ValueError:
        raise RedisUrlError(
            f"sentinel address {item!r}: the port must be a number from 1 to 65535"
        ) from None
    if not address.hostname or address.username is not None or address.path:
        raise RedisUrlError(f"sentinel address {item!r} is not host[:port]")
    return address.hostname, port


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ------------------------------------------------------------------------ clients


# How often a connection asks Sentinel whether the master moved while it was connected.
MASTER_CHECK_S = 1.0


class SentinelMasterConnection(SentinelManagedConnection):
    """A connection to whichever server Sentinel says is the master now.

    redis-py 8 reconnects a broken connection inside `send_packed_command` without
    `connect()`, so a Sentinel-managed connection went back to the address it had (the
    failed master) or, never connected, to its default localhost:6379. Asking Sentinel on
    every reconnect keeps the raw-connection paths (the RPC's `send_commands`, redis-py's
    own retry) on the current master.

    A connection that still works can point at the wrong server too: after SENTINEL
    FAILOVER the old master goes on taking writes until Sentinel turns it into a replica
    (about 10 s later), and every one of them is then dropped. So at most every
    MASTER_CHECK_S (per pool) a command first asks Sentinel where the master is, and a
    connection to another server is closed and reopened there.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sock is not None and self._master_moved():
            self.disconnect()
        if self._sock is None:
            self.connect()
        super().send_packed_command(command, check_health)

    def _master_moved(self) -> bool:
        proxy = self.connection_pool
        now = time.monotonic()
        if now - getattr(proxy, "checked_at", 0.0) < MASTER_CHECK_S:
            return False
        proxy.checked_at = now
        try:
            host, port = proxy.get_master_address()  # also closes the pool's idle connections
        except redis.RedisError:
            return False  # no sentinel answers: keep the connection that works
        return (host, int(port)) != (self.host, int(self.port))


class _Sentinel(Sentinel):
    """Finds the master with SENTINEL GET-MASTER-ADDR-BY-NAME, which names the promoted
    replica as soon as it is promoted. redis-py asks SENTINEL MASTERS, which names it
    only once the whole failover is over (about 6 s later in the failover test): until
    then every client kept writing to the old master, and its writes were dropped when
    Sentinel turned it into a replica."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        errors = []
        for index, sentinel in enumerate(self.sentinels):
            try:
                address = sentinel.sentinel_get_master_addr_by_name(service_name)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
                errors.append(f"{sentinel}: {type(exc).__name__}: {exc}")
                continue
            if isinstance(address, tuple) and address:
                # The sentinel that answered is asked first next time, as redis-py does.
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                host = address[0]
                return host.decode() if isinstance(host, bytes) else str(host), int(address[1])
            errors.append(f"{sentinel}: does not watch {service_name!r}")
        raise MasterNotFoundError(f"No master found for {service_name!r}: {'; '.join(errors)}")


class _SentinelRedis(redis.Redis):
    """A master client that also closes its connections to the sentinels."""

    # not `sentinel`: that is redis.Redis's SENTINEL command
    watched_by: Sentinel | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.watched_by is not None:
                for client in self.watched_by.sentinels:
                    client.close()


def redis_from_url(url: str | RedisUrl, **options: Any) -> redis.Redis:
    """A client for `url`: redis-py's `from_url` for a plain URL, the master through
    Sentinel for a Sentinel URL. `options` are connection options (socket_timeout,
    socket_connect_timeout, retry, ...); the sentinels get the same timeouts."""
    parsed = url if isinstance(url, RedisUrl) else parse_redis_url(url)
    if parsed.master is None:  # a plain URL, not Sentinel
        return redis.Redis.from_url(parsed.url, **options)
    sentinel_kwargs: dict[str, Any] = {
        key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options
    }
    if parsed.sentinel_password:
        sentinel_kwargs["password"] = parsed.sentinel_password
    sentinel = _Sentinel(parsed.hosts, sentinel_kwargs=sentinel_kwargs)
    client = sentinel.master_for(
        parsed.master,
        redis_class=_SentinelRedis,
        connection_class=SentinelMasterConnection,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )
    client.watched_by = sentinel
    return client


class UrlConnectionPool:
    """`pool_class` for Django's Redis cache: its `from_url` takes Sentinel URLs too.

    Django splits a string LOCATION on ',' and ';' (several servers): give a Sentinel
    URL as a one-item list.
    """

    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:
        return redis_from_url(url, **options).connection_pool


# ------------------------------------------------------------------------- Celery


def celery_url(url: str | RedisUrl) -> tuple[str, dict[str, Any]]:
    """(URL, transport options) in kombu's and Celery's form, for the broker or the result
    backend: a plain URL unchanged with no options; a Sentinel URL as
    ``sentinel://[user:password@]host:port/db;sentinel://...`` with `master_name` and
    the sentinels' password in `sentinel_kwargs`."""
    parsed = url if isinstance(url, RedisUrl) else parse_redis_url(url)
    if not parsed.is_sentinel:
        return parsed.url, {}
    auth = ""
    if parsed.username or parsed.password:
        auth = f"{quote(parsed.username or '', safe='')}:{quote(parsed.password or '', safe='')}@"
    joined = ";".join(
        f"sentinel://{auth}{_host_port(host, port)}/{parsed.db}" for host, port in parsed.hosts
    )
    # The sentinels' own socket timeouts: without them an unreachable one could hang a send.
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
    if parsed.sentinel_password:
        sentinel_kwargs["password"] = parsed.sentinel_password
    return joined, {"master_name": parsed.master, "sentinel_kwargs": sentinel_kwargs}
