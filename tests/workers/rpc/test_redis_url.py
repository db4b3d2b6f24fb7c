"""Redis URLs, plain and Sentinel: parsing, refusals, and the clients and Celery forms made
from them (no server needed: the Sentinel clients connect lazily)."""

from __future__ import annotations

import kombu
import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from workers.rpc.redis_url import (
    RedisUrlError,
    SentinelMasterConnection,
    UrlConnectionPool,
    celery_url,
    parse_redis_url,
    redis_from_url,
)

SECRET = "hunter2"


def test_plain_url():
    parsed = parse_redis_url(f"redis://:{SECRET}@cache.internal:6380/2")
    assert not parsed.is_sentinel
    assert parsed.hosts == (("cache.internal", 6380),)
    assert (parsed.db, parsed.username, parsed.password) == (2, None, SECRET)
    assert parsed.masked() == "redis://:****@cache.internal:6380/2"
    assert SECRET not in repr(parsed)


def test_plain_url_defaults():
    parsed = parse_redis_url("redis://127.0.0.1")
    assert (parsed.hosts, parsed.db, parsed.password) == ((("127.0.0.1", 6379),), 0, None)


def test_sentinel_url_with_everything():
    parsed = parse_redis_url(
        "redis+sentinel://vps:s3cr%40t@10.0.0.1:26379,sentinel-b:26380,[::1]:26381"
        "/search-master/3?sentinel_password=sp%2F1"
    )
    assert parsed.is_sentinel
    assert parsed.hosts == (("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381))
    assert (parsed.master, parsed.db) == ("search-master", 3)
    assert (parsed.username, parsed.password, parsed.sentinel_password) == ("vps", "s3cr@t", "sp/1")
    assert parsed.masked() == (
        "redis+sentinel://vps:****@10.0.0.1:26379,sentinel-b:26380,[::1]:26381/search-master/3"
    )
    assert "s3cr" not in repr(parsed)
    assert "sp/1" not in repr(parsed)


def test_sentinel_url_defaults(monkeypatch):
    monkeypatch.delenv("SENTINEL_PASSWORD", raising=False)
    parsed = parse_redis_url("redis+sentinel://s1,s2:26390/mymaster/")
    assert parsed.hosts == (("s1", 26379), ("s2", 26390))
    assert (parsed.master, parsed.db, parsed.password, parsed.sentinel_password) == (
        "mymaster",
        0,
        None,
        None,
    )


def test_sentinel_password_from_argument_url_or_environment(monkeypatch):
    monkeypatch.setenv("SENTINEL_PASSWORD", "from-env")
    url = "redis+sentinel://s1:26379/m"
    assert parse_redis_url(url).sentinel_password == "from-env"
    assert parse_redis_url(url + "?sentinel_password=in-url").sentinel_password == "in-url"
    assert parse_redis_url(url, sentinel_password="given").sentinel_password == "given"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty"),
        (f":{SECRET}@host:6379", "no scheme"),
        (f"http://:{SECRET}@host:6379/0", "unknown Redis URL scheme 'http'"),
        (f"redis://:{SECRET}@host:port/0", "port must be a number"),
        (f"redis://:{SECRET}@host:70000/0", "port must be a number"),
        (f"redis://:{SECRET}@/0", "names no host"),
        (f"redis://:{SECRET}@host:6379/zero", "database must be a number"),
        (f"redis+sentinel://:{SECRET}@/mymaster", "at least one sentinel address"),
        (f"redis+sentinel://:{SECRET}@s1:26379,,s2:26379/mymaster", "none empty"),
        (f"redis+sentinel://:{SECRET}@s1:26379,s2:x/mymaster", "'s2:x': the port"),
        (f"redis+sentinel://:{SECRET}@s1:99999/mymaster", "'s1:99999': the port"),
        (f"redis+sentinel://:{SECRET}@[::1/mymaster", "cannot be parsed"),
        (f"redis+sentinel://:{SECRET}@s1:26379", "names the master"),
        (f"redis+sentinel://:{SECRET}@s1:26379/", "names the master"),
        (f"redis+sentinel://:{SECRET}@s1:26379//0", "names the master"),
        (f"redis+sentinel://:{SECRET}@s1:26379/my%20master", "master name 'my master'"),
        (f"redis+sentinel://:{SECRET}@s1:26379/m/one", "database must be a number, not 'one'"),
        (f"redis+sentinel://:{SECRET}@s1:26379/m/0/x", "nothing more"),
        (f"redis+sentinel://:{SECRET}@s1:26379/m?socket_timeout=1", "unknown Sentinel URL"),
        (f"redis+sentinel://:{SECRET}@s1:26379/m#frag", "no #fragment"),
    ],
)
def test_malformed_urls_are_refused_by_name_without_the_password(url, says):
    with pytest.raises(RedisUrlError) as refused:
        parse_redis_url(url)
    assert says in str(refused.value)
    assert SECRET not in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_plain_client_is_redis_pys_own():
    client = redis_from_url(f"redis://:{SECRET}@127.0.0.1:6399/4", socket_timeout=1.5)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (
        6399,
        4,
        SECRET,
        1.5,
    )
    assert type(client.connection_pool) is redis.ConnectionPool


def test_sentinel_client_goes_through_sentinel():
    url = "redis+sentinel://vps:pw@127.0.0.1:26399,127.0.0.1:26398/mymaster/5?sentinel_password=sp"
    client = redis_from_url(url, socket_timeout=2.0, socket_connect_timeout=0.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_class is SentinelMasterConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (5, "vps", "pw")
    sentinels = client.watched_by.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26399, 26398]
    sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs
    assert (sentinel_kwargs["password"], sentinel_kwargs["socket_connect_timeout"]) == ("sp", 0.5)
    client.close()


def test_django_cache_pool_class_takes_both_forms():
    plain = UrlConnectionPool.from_url("redis://127.0.0.1:6399/1", socket_timeout=1.0)
    assert type(plain) is redis.ConnectionPool
    sentinel = UrlConnectionPool.from_url("redis+sentinel://127.0.0.1:26399/m", socket_timeout=1.0)
    assert isinstance(sentinel, SentinelConnectionPool)


def test_celery_form_of_a_plain_url_is_the_url():
    assert celery_url("redis://:pw@h:6379/0") == ("redis://:pw@h:6379/0", {})


def test_celery_form_of_a_sentinel_url_is_kombus():
    url, options = celery_url(
        "redis+sentinel://vps:s3cr%40t@s1:26379,[::1]:26380/mymaster/2?sentinel_password=sp"
    )
    assert url == "sentinel://vps:s3cr%40t@s1:26379/2;sentinel://vps:s3cr%40t@[::1]:26380/2"
    assert options["master_name"] == "mymaster"
    assert options["sentinel_kwargs"]["password"] == "sp"
    # kombu reads the form back: every sentinel, and the master's credentials and db.
    connection = kombu.Connection(url, transport_options=options)
    assert connection.transport_cls == "sentinel"
    assert len(connection.alt) == 2
    assert (connection.userid, connection.password, connection.virtual_host) == (
        "vps",
        "s3cr@t",
        "2",
    )
