"""Recall probe, reconciliation and the Search health page against real workers."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from catalog.models import IndexState, Product, ProductImage, RecallMeasurement
from catalog.redis_clients import redis_client
from catalog.services.encode_leases import EncodeLease, lease_key, lease_until_retry
from catalog.services.recall import run_probe
from catalog.services.reconcile import live_ids, reconcile
from tests.support.indexing import add_product, all_indexed, shards_match_database, wait
from workers.encoding.registry import published_model
from workers.index.log import UpdateLog, shard_for_product
from workers.index.types import VectorAttrs
from workers.queues import Queue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def indexed_catalog(shard_workers):
    for n in range(10):
        add_product("M", n)
    wait(all_indexed, what="indexing")
    wait(shards_match_database, what="shards to catch up")
    return published_model(redis_client())


def test_recall_probe_on_exact_shards_is_perfect(indexed_catalog):
    result = run_probe(n_queries=8, seed=1)
    assert result is not None
    assert result.recall == pytest.approx(1.0)
    assert set(result.per_shard) <= {0, 1}
    assert result.partial == 0
    stored = RecallMeasurement.objects.filter(shard__isnull=True).get()
    assert stored.queries == 8
    assert stored.latency_p50_ms > 0


def test_reconcile_repairs_missing_and_extra_ids(indexed_catalog):
    model, dim = indexed_catalog
    client = redis_client()
    victim = ProductImage.objects.order_by("pk").first()
    shard = shard_for_product(victim.product_id, 2)
    log = UpdateLog(client, shard, model, dim)
    log.append_deletes(np.asarray([victim.pk], dtype=np.int64))  # the shard loses a real id
    ghost = 10_000_000
    log.append_upserts(  # and gains one that no database row backs
        np.asarray([ghost], dtype=np.int64),
        np.full((1, dim), 1 / np.sqrt(dim), dtype=np.float32),
        VectorAttrs.build([ghost], [-1], [1.0], [True]),
    )
    wait(lambda: ghost in live_ids(shard).tolist(), what="the sabotage to apply")

    diffs = {d.shard: d for d in reconcile()}
    assert (diffs[shard].missing, diffs[shard].extra) == (1, 1)
    wait(
        lambda: victim.pk in live_ids(shard).tolist() and ghost not in live_ids(shard).tolist(),
        what="the repair",
    )
    again = {d.shard: d for d in reconcile(repair=False)}
    assert all((d.missing, d.extra) == (0, 0) for d in again.values())


def test_search_health_page(indexed_catalog, client, django_user_model):
    run_probe(n_queries=4, seed=2)
    admin = django_user_model.objects.create_superuser("root", password="pw-root-123")
    assert client.get("/admin/search-health/").status_code == 302  # staff only
    client.force_login(admin)
    page = client.get("/admin/search-health/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<tr>") >= 3  # header + one row per shard
    assert "data:image/png;base64," in html
    assert "Flat" in html
    assert html.count("<td>exact</td>") == 2, "each shard's knobs, readable"
    assert "nprobe&#x27;" not in html  # never the params dict's repr
    assert "Replicas" in html
    assert html.count("<td>yes</td>") == 2, "each shard's replica, ready"
    assert "/admin/search-health/" in client.get("/admin/").content.decode()


def _command(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, verbosity=0)
    return out.getvalue()


def _table(text: str) -> list[list[str]]:
    """A command's table: its lines split on the two-space column gaps."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def test_build_index_prints_what_each_shard_got(indexed_catalog, caplog):
    """Exact shards say "exact", with no warning about a recall target, and every vector
    goes into the index before anything is said about it."""
    with caplog.at_level(logging.INFO, logger="workers.index"):
        table = _table(_command("build_index"))
    assert table[0] == ["shard", "vectors", "spec", "tuned knobs", "recall@10", "seconds"]
    rows = {int(row[0]): row for row in table[1:]}
    assert set(rows) == {0, 1}
    assert sum(int(row[1]) for row in rows.values()) == 10
    for row in rows.values():
        assert row[2:5] == ["Flat", "exact", "exact"], row
        assert float(row[5]) >= 0  # a few milliseconds for 5 vectors
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    added = [re.match(r"Flat: added (\d+) vectors in ", r.getMessage()) for r in caplog.records]
    assert sorted(int(m.group(1)) for m in added if m) == sorted(int(r[1]) for r in rows.values())

    [built] = json.loads(_command("build_index", "--shard", "1", "--spec", "hnsw", "--json"))
    assert (built["shard"], built["spec"], built["exact"]) == (1, "HNSW32", False)
    assert built["vectors"] == int(rows[1][1])
    assert built["knobs"] == f"nprobe -, efSearch {built['params']['ef_search']}"
    assert built["recall_at_10"] == pytest.approx(1.0)
    assert built["target_reached"] is True
    assert isinstance(built["seconds"], float)
    assert built["build_id"]
    assert built["log_position"]


def test_recall_probe_command_plain_and_json(indexed_catalog):
    text = _command("recall_probe", "--queries", "4", "--seed", "3")
    lines = text.splitlines()
    assert lines[0] == "recall@10 1.000 over 4 queries (0 partial answers)", text
    assert re.fullmatch(r"latency p50 \d+\.\d ms, p99 \d+\.\d ms", lines[1]), text
    table = _table("\n".join(lines[3:]))
    assert table[0] == ["shard", "recall@10"]
    assert {row[0] for row in table[1:]} <= {"0", "1"}
    assert all(row[1] == "1.000" for row in table[1:])

    document = json.loads(_command("recall_probe", "--queries", "4", "--seed", "3", "--json"))
    assert document["queries"] == 4
    assert document["recall_at_10"] == pytest.approx(1.0)
    assert set(document["per_shard"]) <= {"0", "1"}
    assert 0 < document["latency_ms"]["p50"] <= document["latency_ms"]["p99"]
    assert document["partial_answers"] == 0
    assert RecallMeasurement.objects.filter(shard__isnull=True).count() == 2  # both stored


def test_recall_probe_says_when_there_is_nothing_to_probe(redis_client):
    with pytest.raises(CommandError, match="nothing to probe"):
        _command("recall_probe")


def _product(sku: str, state: str, saved_s_ago: float) -> int:
    """A row as a task left it (no task is queued for it: Product.objects.create sends none)."""
    product = Product.objects.create(sku=sku, title=sku, price=1)
    Product.objects.filter(pk=product.pk).update(
        index_state=state, updated_at=timezone.now() - timedelta(seconds=saved_s_ago)
    )
    return product.pk


def _state(pk: int) -> str:
    return Product.objects.get(pk=pk).index_state


def _reconcile(*args: str) -> str:
    out = io.StringIO()
    call_command("reconcile", *args, stdout=out)
    return out.getvalue()


def test_reconcile_reports_and_resends_products_stuck_encoding(redis_client):
    """A killed encode worker left products `encoding` with no lease: reported, then re-sent."""
    dead = [_product(f"D-{n}", IndexState.ENCODING, 316) for n in range(3)]
    alive = _product("A-1", IndexState.ENCODING, 900)  # a live task holds its lease
    lost = _product("P-1", IndexState.PENDING, 600)  # its task never went out
    fresh = _product("P-2", IndexState.PENDING, 1)  # its task is on its way

    with EncodeLease([alive], ttl_s=30):
        report = _reconcile("--dry-run")
        assert re.search(
            r"encoding: 4 product\(s\), 3 with no live encode task "
            rf"\(longest wait since the last save 31[67]s\): would re-send ids {dead[0]}, "
            rf"{dead[1]}, {dead[2]}\n",
            report,
        ), report
        assert re.search(
            r"pending for over 60s: 1 product\(s\) \(longest wait since the last save 60[01]s\), "
            rf"ids {lost}; would re-send them \(no encode task is queued\)\n",
            report,
        ), report
        assert "nothing to reconcile" in report  # no model published: no shard to compare
        assert redis_client.llen(Queue.ENCODE.value) == 0, "a dry run sends nothing"
        assert _state(dead[0]) == IndexState.ENCODING

        report = _reconcile()
        assert f"re-sent ids {dead[0]}, {dead[1]}, {dead[2]}\n" in report, report
        assert f"ids {lost}; re-sent them" in report, report

    assert [_state(pk) for pk in dead] == [IndexState.PENDING] * 3  # their task is gone
    assert _state(alive) == IndexState.ENCODING
    assert _state(fresh) == IndexState.PENDING
    assert queued_encode_ids(redis_client) == sorted([*dead, lost])

    # Tasks now wait in the encode queue: pending products are left to them.
    report = _reconcile("--dry-run", "--pending-after", "0")
    assert "pending for over 0s: 5 product(s)" in report, report  # dead ones, lost, fresh
    assert "left to the 1 queued encode task(s)" in report, report


def test_pending_products_whose_retry_is_scheduled_are_left_to_it(redis_client):
    """A task retrying products (a storage outage) holds their leases until the retry:
    the sweep, which sees them pending with no queued task, must not send them again."""
    retrying = [_product(f"R-{n}", IndexState.PENDING, 600) for n in range(2)]
    lost = _product("P-1", IndexState.PENDING, 600)
    lease_until_retry(retrying, countdown_s=30)

    report = _reconcile()
    assert re.search(
        rf"pending for over 60s: 3 product\(s\) .*, ids {lost}; re-sent them "
        rf"\(no encode task is queued\); ids {retrying[0]}, {retrying[1]} wait for their "
        r"task's scheduled retry\n",
        report,
    ), report
    assert queued_encode_ids(redis_client) == [lost]

    redis_client.delete(*[lease_key(pk) for pk in retrying])  # the retrying worker died
    redis_client.delete(Queue.ENCODE.value)
    _reconcile()
    assert queued_encode_ids(redis_client) == sorted([*retrying, lost])


def queued_encode_ids(client) -> list[int]:
    """Product ids of the encode tasks waiting on the private broker."""
    ids = []
    for raw in client.lrange(Queue.ENCODE.value, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.extend(args[0])
    return sorted(ids)
