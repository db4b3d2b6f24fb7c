"""Search over the real RPC: private Redis, RpcServer threads, exact FAISS shards."""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import redis

from tests.workers.rpc.conftest import DIM, Servers, make_shards, unit_vectors, wait_for
from workers.index.types import SearchFilter, SearchResult
from workers.redis_process import RedisProcess
from workers.rpc.client import GatheredResult, SearchClient
from workers.rpc.connection import ThreadConnections, _packed, connect, send_commands
from workers.rpc.errors import BadRequest, NoShardAvailable, RpcUnavailable
from workers.rpc.protocol import (
    REPLY_KEY_PREFIX,
    Request,
    SearchQuery,
    TextQuery,
    encode_request,
)
from workers.rpc.search import make_search_handler, shard_queue_key
from workers.rpc.server import RpcServer


def brute_force(shards: list, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.vstack([s.vectors for s in shards])
    ids = np.concatenate([s.product_ids for s in shards])
    scores = queries @ vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[top], np.take_along_axis(scores, top, axis=1)


def start_shards(servers: Servers, shards: list, **kwargs: object) -> list:
    return [
        servers.start(shard_queue_key(s), make_search_handler(shard.search, shard=s), **kwargs)
        for s, shard in enumerate(shards)
    ]


def test_round_trip_equals_in_process_search(servers: Servers, rpc_redis: redis.Redis) -> None:
    (shard,) = make_shards(1)
    start_shards(servers, [shard])
    client = SearchClient(rpc_redis, n_shards=1)
    queries = unit_vectors(3, seed=7)
    for batch in (queries[:1], queries):  # one query, then one request of three
        got = client.search(batch, k=10, timeout_s=5)
        expected = shard.search(batch, 10, SearchFilter())
        assert got.answered == [0]
        assert got.total == 1
        assert not got.partial
        np.testing.assert_array_equal(got.result.product_ids, expected.product_ids)
        np.testing.assert_array_equal(got.result.image_ids, expected.image_ids)
        np.testing.assert_array_equal(got.result.scores, expected.scores)


def test_filters_travel_to_the_shard(servers: Servers, rpc_redis: redis.Redis) -> None:
    (shard,) = make_shards(1)
    start_shards(servers, [shard])
    only = SearchFilter(category_ids=frozenset({2}))
    got = SearchClient(rpc_redis, 1).search(unit_vectors(2, seed=3), 8, only, timeout_s=5)
    assert (got.result.product_ids % 5 == 2).all()
    expected = shard.search(unit_vectors(2, seed=3), 8, only)
    np.testing.assert_array_equal(got.result.product_ids, expected.product_ids)


def test_two_shards_merge_to_the_brute_force_top_k(
    servers: Servers, rpc_redis: redis.Redis
) -> None:
    shards = make_shards(2)
    start_shards(servers, shards)
    queries = unit_vectors(4, seed=11)
    got = SearchClient(rpc_redis, n_shards=2).search(queries, k=15, timeout_s=5)
    assert got.answered == [0, 1]
    assert not got.partial
    ids, scores = brute_force(shards, queries, 15)
    np.testing.assert_array_equal(got.result.product_ids, ids)
    np.testing.assert_allclose(got.result.scores, scores, rtol=1e-5, atol=1e-6)
    assert set(got.result.product_ids[:, :15].ravel() % 2) == {0, 1}  # both shards contribute


def test_two_shards_answer_in_one_round_trip(
    servers: Servers, rpc_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The servers' fan-in marks the last reply, so the caller's one write (the pushes, a
    wait on the done key, a pop of all replies) brings back both shards' answers."""
    start_shards(servers, make_shards(2))
    client = SearchClient(rpc_redis, n_shards=2)
    client.search(unit_vectors(1, seed=4), k=5, timeout_s=5)  # both servers are up
    sends: list[tuple] = []
    send = ThreadConnections.send

    def counted(self: ThreadConnections, *commands: tuple, replies: int | None = None) -> list:
        sends.append(commands)
        return send(self, *commands, replies=replies)

    monkeypatch.setattr(ThreadConnections, "send", counted)
    got = client.search(unit_vectors(3, seed=5), k=5, timeout_s=5)
    assert got.answered == [0, 1]
    assert len(sends) == 1
    assert rpc_redis.keys(REPLY_KEY_PREFIX + "*") == []  # replies and done marker taken


def test_a_stopped_shard_makes_the_answer_partial(servers: Servers, rpc_redis: redis.Redis) -> None:
    shards = make_shards(2)
    _, second = start_shards(servers, shards)
    servers.stop(second)
    queries = unit_vectors(1, seed=5)
    timeout_s = 0.3
    started = time.monotonic()
    got = SearchClient(rpc_redis, n_shards=2).search(queries, k=10, timeout_s=timeout_s)
    elapsed = time.monotonic() - started
    assert got.partial
    assert got.answered == [0]
    assert got.total == 2
    expected = shards[0].search(queries, 10, SearchFilter())
    np.testing.assert_array_equal(got.result.product_ids, expected.product_ids)
    # It waited for the missing shard until the deadline, and not much longer (hang guard).
    assert timeout_s <= elapsed < timeout_s + 2.0


def test_a_request_delivered_twice_counts_its_shard_once(
    servers: Servers, rpc_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = make_shards(2)
    servers.start(shard_queue_key(0), make_search_handler(shards[0].search, shard=0))
    slow_search = make_search_handler(shards[1].search, shard=1)

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(0.2)
        return slow_search(*args, **kwargs)

    servers.start(shard_queue_key(1), slow)
    send = ThreadConnections.send

    def retried(self: ThreadConnections, *commands: tuple, replies: int | None = None) -> list:
        # what a send retried after a broken read can do: shard 0 gets the request twice
        twice = [c for c in commands if c[:2] == ("RPUSH", shard_queue_key(0))]
        more = None if replies is None else replies + len(twice)
        return send(self, *twice, *commands, replies=more)[len(twice) :]

    monkeypatch.setattr(ThreadConnections, "send", retried)
    got = SearchClient(rpc_redis, n_shards=2).search(unit_vectors(1, seed=2), k=5, timeout_s=3)
    assert got.answered == [0, 1]  # shard 0's second answer did not stand in for shard 1's
    assert not got.partial


def test_no_shard_at_all_raises_no_shard_available(rpc_redis: redis.Redis) -> None:
    started = time.monotonic()
    with pytest.raises(NoShardAvailable):
        SearchClient(rpc_redis, n_shards=2).search(unit_vectors(1), k=5, timeout_s=0.2)
    assert time.monotonic() - started < 0.2 + 2.0  # bounded by the deadline (hang guard)
    # Nobody serves those lists: they are capped and expire by themselves.
    assert 0 < rpc_redis.ttl(shard_queue_key(0)) <= 60


def _raw_request(request_id: str, queries: np.ndarray, k: int, deadline: float) -> bytes:
    return encode_request(
        Request(
            id=request_id,
            reply_to=REPLY_KEY_PREFIX + request_id,
            deadline=deadline,
            payload=SearchQuery(queries=queries, k=k),
        )
    )


def test_expired_requests_are_dropped_not_served_late(
    servers: Servers, rpc_redis: redis.Redis
) -> None:
    (shard,) = make_shards(1)
    key = shard_queue_key(0)
    rpc_redis.rpush(key, _raw_request("late", unit_vectors(1), 5, time.time() - 0.01))
    server = start_shards(servers, [shard])[0]
    got = SearchClient(rpc_redis, 1).search(unit_vectors(1), k=5, timeout_s=5)
    assert got.answered == [0]
    wait_for(lambda: server.served == 1)
    assert server.dropped_expired == 1
    assert rpc_redis.exists(REPLY_KEY_PREFIX + "late") == 0
    assert shard.calls == 1


def test_malformed_messages_are_dropped_and_serving_goes_on(
    servers: Servers, rpc_redis: redis.Redis
) -> None:
    (shard,) = make_shards(1)
    key = shard_queue_key(0)
    good = msgpack.unpackb(_raw_request("x", unit_vectors(1), 5, time.time() + 30), raw=False)
    wrong_type = {**good, "deadline": "tomorrow"}
    wrong_shape = {**good, "payload": {**good["payload"], "shape": [2, DIM]}}
    huge_k = {**good, "payload": {**good["payload"], "k": 10**7}}
    malformed = [
        b"\x00\xffnot msgpack at all",
        msgpack.packb(wrong_type),
        msgpack.packb(wrong_shape),
        msgpack.packb(huge_k),
    ]
    rpc_redis.rpush(key, *malformed)
    server = servers.start(key, make_search_handler(shard.search, shard=0, dim=DIM))
    wait_for(lambda: server.dropped_malformed == len(malformed))
    got = SearchClient(rpc_redis, 1).search(unit_vectors(1), k=5, timeout_s=5)
    assert got.answered == [0]
    # A well-formed request the shard cannot serve gets a bad-request reply, not silence.
    with pytest.raises(BadRequest, match="dimensions"):
        SearchClient(rpc_redis, 1).search(unit_vectors(1, dim=DIM + 1), k=5, timeout_s=5)
    assert server.dropped_malformed == len(malformed)
    assert server.handler_errors == 0


def test_a_queued_batch_is_answered_with_one_search_call(
    servers: Servers, rpc_redis: redis.Redis
) -> None:
    """Requests waiting before the server starts are served by ONE handler call and ONE
    search per distinct (k, filters)."""
    (shard,) = make_shards(1)
    client = SearchClient(rpc_redis, 1, in_flight=0)  # one request a search
    queries = unit_vectors(8, seed=21)
    ks = [10] * 6 + [3] * 2
    results: dict[int, GatheredResult] = {}

    def ask(i: int) -> None:
        results[i] = client.search(queries[i], k=ks[i], timeout_s=10)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(ks))]
    for thread in threads:
        thread.start()
    wait_for(lambda: rpc_redis.llen(shard_queue_key(0)) == len(ks))
    handler = make_search_handler(shard.search, shard=0)
    handler_calls = []

    def counting_handler(requests: list) -> list:
        handler_calls.append(len(requests))
        return handler(requests)

    server = servers.start(shard_queue_key(0), counting_handler)
    for thread in threads:
        thread.join(timeout=15)
    assert handler_calls == [len(ks)]
    assert shard.calls == 2  # one per k
    wait_for(lambda: server.served == len(ks))  # counted just after the replies go out
    assert server.batch_sizes == {len(ks): 1}
    for i, k in enumerate(ks):
        expected = shard.search(queries[i : i + 1], k, SearchFilter())
        np.testing.assert_array_equal(results[i].result.product_ids, expected.product_ids)


def test_searches_waiting_for_a_slot_travel_as_one_request(
    servers: Servers, rpc_redis: redis.Redis
) -> None:
    """With one request in flight, the searches that come meanwhile wait and then go as
    ONE request; each caller gets exactly its own rows' answer."""
    (shard,) = make_shards(1)
    client = SearchClient(rpc_redis, 1, in_flight=1)
    queries = unit_vectors(6, seed=22)
    results: dict[int, GatheredResult] = {}

    def ask(i: int) -> None:
        results[i] = client.search(queries[i], k=7, timeout_s=10)

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    wait_for(lambda: rpc_redis.llen(shard_queue_key(0)) == 1)  # in flight, unanswered
    rest = [threading.Thread(target=ask, args=(i,)) for i in range(1, len(queries))]
    for thread in rest:
        thread.start()
    waiting = client._coalescer._open  # white box: the group the five join
    wait_for(lambda: sum(g.n_rows for g in waiting.values()) == len(rest))
    server = servers.start(shard_queue_key(0), make_search_handler(shard.search, shard=0))
    for thread in [first, *rest]:
        thread.join(timeout=15)
    wait_for(lambda: server.served == 2)
    assert server.served == 2
    for i in range(len(queries)):
        expected = shard.search(queries[i : i + 1], 7, SearchFilter())
        np.testing.assert_array_equal(results[i].result.product_ids, expected.product_ids)
        np.testing.assert_array_equal(results[i].result.scores, expected.scores)


def test_a_search_still_waiting_for_a_slot_at_its_deadline_fails_alone(
    rpc_redis: redis.Redis,
) -> None:
    """A search queued behind one in flight keeps its own deadline: at the deadline it
    fails with NoShardAvailable without being sent; the one in flight fails at its own."""
    client = SearchClient(rpc_redis, 1, in_flight=1)  # nobody serves the shard
    slow: list[BaseException] = []

    def ask_slowly() -> None:
        try:
            client.search(unit_vectors(1, seed=1), k=3, timeout_s=3)
        except NoShardAvailable as exc:
            slow.append(exc)

    first = threading.Thread(target=ask_slowly)
    first.start()
    wait_for(lambda: rpc_redis.llen(shard_queue_key(0)) == 1)
    with pytest.raises(NoShardAvailable, match="before the search could be sent"):
        client.search(unit_vectors(1, seed=2), k=3, timeout_s=0.2)
    first.join(timeout=10)
    assert len(slow) == 1


def test_batch_cap_bounds_the_batch(servers: Servers, rpc_redis: redis.Redis) -> None:
    (shard,) = make_shards(1)
    key = shard_queue_key(0)
    deadline = time.time() + 30
    rpc_redis.rpush(key, *[_raw_request(f"r{i}", unit_vectors(1), 5, deadline) for i in range(7)])
    server = servers.start(key, make_search_handler(shard.search, shard=0), batch_cap=3)
    wait_for(lambda: server.served == 7)
    assert server.batch_sizes == {3: 2, 1: 1}
    assert all(rpc_redis.ttl(REPLY_KEY_PREFIX + f"r{i}") > 0 for i in range(7))


def test_a_wrong_kind_on_a_shard_list_gets_an_error_reply(
    servers: Servers, rpc_redis: redis.Redis
) -> None:
    (shard,) = make_shards(1)
    key = shard_queue_key(0)
    request = Request(
        id="t", reply_to=REPLY_KEY_PREFIX + "t", deadline=time.time() + 30,
        payload=TextQuery(text="boots"),
    )  # fmt: skip
    start_shards(servers, [shard])
    rpc_redis.rpush(key, encode_request(request))
    popped = rpc_redis.blpop([REPLY_KEY_PREFIX + "t"], timeout=5)
    assert popped is not None
    assert b"does not serve" in popped[1]


def test_redis_restart_is_survived_by_server_and_client(
    servers: Servers, redis_server: RedisProcess, redis_url: str
) -> None:
    (shard,) = make_shards(1)
    server = start_shards(servers, [shard])[0]
    client = SearchClient(connect(redis_url), n_shards=1)
    queries = unit_vectors(1, seed=2)
    expected = shard.search(queries, 5, SearchFilter())
    assert client.search(queries, k=5, timeout_s=5).answered == [0]
    try:
        redis_server.stop()
        started = time.monotonic()
        with pytest.raises(RpcUnavailable):
            client.search(queries, k=5, timeout_s=5)
        assert time.monotonic() - started < 5  # failed fast, well before the 5 s deadline
        wait_for(lambda: server.redis_errors > 0)
    finally:
        redis_server.start()
    # The very next call works: the client reconnects by itself, the server resumes.
    got = client.search(queries, k=5, timeout_s=5)
    assert got.answered == [0]
    np.testing.assert_array_equal(got.result.product_ids, expected.product_ids)
    wait_for(lambda: server.served == 2)


def test_a_failing_search_answers_with_errors_and_serving_goes_on(
    servers: Servers, rpc_redis: redis.Redis
) -> None:
    (shard,) = make_shards(1)

    def search_refusing_k7(queries: np.ndarray, k: int, filters: SearchFilter) -> SearchResult:
        if k == 7:
            raise RuntimeError("index is being swapped")
        return shard.search(queries, k, filters)

    server = servers.start(shard_queue_key(0), make_search_handler(search_refusing_k7, shard=0))
    client = SearchClient(rpc_redis, 1)
    with pytest.raises(NoShardAvailable, match="index is being swapped"):
        client.search(unit_vectors(1), k=7, timeout_s=5)
    assert client.search(unit_vectors(1), k=5, timeout_s=5).answered == [0]
    assert server.loop_errors == 0


def test_stop_finishes_the_batch_in_flight(redis_url: str, rpc_redis: redis.Redis) -> None:
    (shard,) = make_shards(1)
    handler = make_search_handler(shard.search, shard=0)
    stop = threading.Event()

    def stopping_handler(requests: list) -> list:
        stop.set()  # the stop arrives while this batch is being answered
        return handler(requests)

    server = RpcServer(connect(redis_url), shard_queue_key(0), stopping_handler, block_s=0.1)
    thread = threading.Thread(target=server.serve_forever, args=(stop,))
    thread.start()
    try:
        got = SearchClient(rpc_redis, 1).search(unit_vectors(1), k=5, timeout_s=5)
        assert got.answered == [0]
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert server.served == 1


def test_idle_waits_fit_inside_the_socket_timeout(redis_url: str, rpc_redis: redis.Redis) -> None:
    """A block_s longer than the client's socket timeout is cut down, not turned into
    socket timeouts while idle."""
    (shard,) = make_shards(1)
    # The margin (socket timeout minus the cut-down wait) is 0.4 s: wide enough for a busy box.
    server = RpcServer(
        connect(redis_url, socket_timeout=2.0),
        shard_queue_key(0),
        make_search_handler(shard.search, shard=0),
        block_s=10.0,
    )
    assert server.serve_once(10.0) == 0  # idle: returns after ~1.6 s, no TimeoutError
    rpc_redis.rpush(shard_queue_key(0), _raw_request("idle", unit_vectors(1), 5, time.time() + 30))
    assert server.serve_once(10.0) == 1
    assert server.redis_errors == 0


def test_commands_are_packed_as_redis_py_packs_them(rpc_redis: redis.Redis) -> None:
    """The C packer the RPC uses writes the bytes redis-py would, for every argument type
    the RPC sends (bytes, str, negative ints, fractional seconds), and Redis runs them."""
    commands = (
        ("RPUSH", "search:rpc:test", b"\x00\xff raw"),
        ("LTRIM", "search:rpc:test", -4096, -1),
        ("EXPIRE", "search:rpc:test", 60),
        ("BLPOP", "search:rpc:test", 0.4999),
    )
    conn = rpc_redis.connection_pool.get_connection()
    try:
        assert b"".join(_packed(conn, commands)) == b"".join(conn.pack_commands(commands))
        replies = send_commands(conn, commands)
    finally:
        rpc_redis.connection_pool.release(conn)
    assert replies[0] == 1
    assert replies[3] == [b"search:rpc:test", b"\x00\xff raw"]


def test_each_thread_talks_on_its_own_connection(redis_url: str) -> None:
    """Threads sharing one ThreadConnections never read each other's replies, and a
    connection that Redis closes is reopened on the next call."""
    connections = ThreadConnections(connect(redis_url))
    mixed_up: list[tuple[int, object]] = []

    def echo(t: int) -> None:
        for i in range(200):
            (reply,) = connections.send(("ECHO", f"{t}:{i}"))
            if reply != f"{t}:{i}".encode():
                mixed_up.append((t, reply))

    threads = [threading.Thread(target=echo, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not mixed_up
    names = connections.send(("CLIENT", "SETNAME", "rpc-test"), ("CLIENT", "ID"))
    connect(redis_url).client_kill_filter(_id=names[1])
    assert connections.send(("PING",)) == [b"PONG"]


def test_clients_made_per_request_share_their_pools_connections(
    redis_url: str, rpc_redis: redis.Redis
) -> None:
    """The web views make a SearchClient per request: over one Redis client they must
    reuse one connection per thread, not open one a request."""
    shared = connect(redis_url)
    assert ThreadConnections.of(shared) is ThreadConnections.of(shared)
    assert ThreadConnections.of(shared) is not ThreadConnections.of(connect(redis_url))
    before = len(rpc_redis.client_list())
    for _ in range(20):
        with pytest.raises(NoShardAvailable):
            SearchClient(shared, 1).search(unit_vectors(1), 5, timeout_s=0.01)
    assert len(rpc_redis.client_list()) <= before + 1
