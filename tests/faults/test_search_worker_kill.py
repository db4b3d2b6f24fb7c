"""kill -9 a search worker while updates and queries flow, then restart it."""

from __future__ import annotations

import pytest

from catalog.models import Product
from catalog.services.products import product_delete
from tests.support.indexing import (
    add_product,
    add_until_on_shard,
    all_indexed,
    expected_ids,
    live_ids,
    on_shard,
    shards_match_database,
    wait,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# By pictures alone: the words of a dead shard's products still match in the database.
QUERY = {"q": "item", "k": 50, "mode": "vector"}


def test_killed_search_worker_answers_partially_then_catches_up(shard_workers, api_client):
    ids = add_until_on_shard(1, "KILL", 0, count=2, at_least=10)
    wait(all_indexed, what="the first products to be indexed")
    wait(shards_match_database, what="the shards to hold the first products")
    before = api_client.get("/api/search/", QUERY)
    assert before.status_code == 200, before.content
    assert before.json()["partial"] is False

    victim = shard_workers[1]
    victim.kill()

    # Updates (creates and deletes) and queries keep flowing while shard 1 has no replica.
    doomed = on_shard(1, ids)[:2]  # deleted during the outage: updates for the dead shard
    outage = []
    for n in range(8):
        ids.append(add_product("OUTAGE", n).pk)
        if n % 4 == 0 and doomed:
            gone = doomed.pop()
            product_delete(product=Product.objects.get(pk=gone))
            ids.remove(gone)
        outage.append(api_client.get("/api/search/", QUERY))
    wait(all_indexed, what="the outage's products to be encoded")
    outage.append(api_client.get("/api/search/", QUERY))

    for response in outage:
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["partial"] is True
        assert body["shards"] == {"answered": 1, "total": 2, "missing": [1]}
    # The last partial answer holds shard 0's products, all of them (k covers them).
    found = {r["product"]["id"] for r in outage[-1].json()["results"]}
    assert found == set(on_shard(0, ids))

    victim.start()
    ids.extend(add_product("AFTER", n).pk for n in range(4))
    wait(all_indexed, what="the last products to be encoded")
    wait(shards_match_database, what="the restarted shard to catch up")
    assert live_ids(1) == expected_ids(1)
    assert expected_ids(1)
    assert len(expected_ids(0)) + len(expected_ids(1)) == len(ids)

    after = api_client.get("/api/search/", QUERY)
    assert after.status_code == 200, after.content
    assert after.json()["partial"] is False
    assert {r["product"]["id"] for r in after.json()["results"]} == set(ids)
