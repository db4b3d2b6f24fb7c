"""Restart Redis (append-only persistence on) while the whole system runs."""

from __future__ import annotations

import time

import pytest

from catalog.models import IndexState, Product
from tests.support.indexing import add_product, all_indexed, shards_match_database, wait
from workers.tasks.encoding import encode_stale

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUERY = {"q": "item", "k": 50}


def test_redis_restart_gives_503_then_resumes_without_losing_updates(
    shard_workers, api_client, redis_server
):
    ids = [add_product("RR", n).pk for n in range(6)]
    wait(all_indexed, what="the first products to be indexed")
    wait(shards_match_database, what="the shards to hold the first products")
    # Saved just before the outage: their tasks are in the broker or in flight when it goes.
    ids.extend(add_product("RR", n).pk for n in range(6, 9))

    redis_server.stop()
    try:
        answers = []
        for _ in range(4):
            started = time.monotonic()
            response = api_client.get("/api/search/", QUERY)
            answers.append((response, time.monotonic() - started))
            time.sleep(0.5)
        # A write while Redis is away: saved in the database (pending), indexed once Redis is back.
        started = time.monotonic()
        ids.append(add_product("RR", 9).pk)
        write_s = time.monotonic() - started
        assert Product.objects.get(pk=ids[-1]).index_state == IndexState.PENDING
    finally:
        redis_server.start()

    for response, took_s in answers:
        assert response.status_code == 503, response.content
        assert response.json()["error"] == "unavailable"
        assert "Redis" in response.json()["detail"]
        assert took_s < 5, f"the API took {took_s:.1f}s to say Redis is away"
    assert write_s < 10, f"a write took {write_s:.1f}s while Redis was away"

    # Everything resumes by itself: searches answer in full, new products get indexed.
    def searching() -> bool:
        response = api_client.get("/api/search/", QUERY)
        return response.status_code == 200 and not response.json()["partial"]

    wait(searching, timeout=60, what="searches to answer again")
    ids.extend(add_product("RR", n).pk for n in range(10, 13))
    # Beat's sweep, every few seconds here: it re-sends what the outage swallowed, a task
    # that could not reach the broker to retry included (its products stay `encoding`
    # until their lease, persisted by Redis, runs out).
    swept_at = [0.0]

    def indexed_with_sweeps() -> bool:
        if time.monotonic() - swept_at[0] > 5:
            encode_stale.apply(kwargs={"older_than_s": 0}).get()
            swept_at[0] = time.monotonic()
        return all_indexed()

    wait(indexed_with_sweeps, timeout=90, what="every product to be indexed")
    wait(shards_match_database, what="the shards to hold every product")
    final = api_client.get("/api/search/", QUERY).json()
    assert {r["product"]["id"] for r in final["results"]} == set(ids)


def test_stale_sweep_resends_what_an_outage_swallowed(redis_client):
    from catalog.services.enqueue import enqueue_stale
    from workers.queues import Queue

    stuck = Product.objects.create(sku="ST-1", title="stuck", price=1)  # its task never went out
    Product.objects.create(sku="ST-2", title="done", price=1, index_state=IndexState.INDEXED)
    Product.objects.create(sku="ST-3", title="off", price=1, is_active=False)
    assert stuck.index_state == IndexState.PENDING
    assert enqueue_stale(older_than_s=3600) == 0, "recent saves are left to their own task"
    assert enqueue_stale(older_than_s=0) == 1
    assert redis_client.llen(Queue.ENCODE.value) == 1
