"""Recall probe, reconciliation and the Search health page against real workers."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import signal
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from catalog.models import IndexState, Product, ProductImage, RecallMeasurement
from catalog.redis_clients import redis_client
from catalog.services.encode_leases import EncodeLease, lease_key, lease_until_retry
from catalog.services.index_builds import index_store
from catalog.services.recall import run_probe
from catalog.services.reconcile import live_ids, reconcile
from tests.support.indexing import (
    add_product,
    all_indexed,
    encoders_idle,
    shards_match_database,
    wait,
)
from tests.support.processes import CeleryWorker
from workers.encoding.registry import published_model
from workers.index.build_pointer import current_build
from workers.index.lifecycle import generation
from workers.index.log import UpdateLog, shard_for_product
from workers.index.membership import live_members
from workers.index.shard import Shard
from workers.index.types import VectorAttrs
from workers.queues import Queue, shard_queue
from workers.tasks.shards import shard_snapshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def snapshot_shard(shard: int) -> Path:
    """Publish the shard's state now; the folder of the artifact in the (file://) store."""
    uri = shard_snapshot.apply_async(args=[shard], queue=shard_queue(shard)).get(timeout=30)
    assert uri.startswith("file://"), uri
    return Path(urlparse(uri).path)


@pytest.fixture
def indexed_catalog(shard_workers):
    for n in range(10):
        add_product("M", n)
    wait(all_indexed, what="indexing")
    wait(shards_match_database, what="shards to catch up")
    wait(encoders_idle, what="the encode worker to finish its queue")
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


def _reconcile_json(*args: str) -> dict:
    return json.loads(_reconcile("--json", *args))


def _replica(report: dict, shard: int) -> dict:
    """The one replica row of a shard served by one replica."""
    (row,) = report["shards"][shard]["replicas"]
    return row


def _all_clean(report) -> bool:
    return all(
        (s.missing, s.extra, s.stale, s.in_flight, s.not_answering) == (0, 0, 0, 0, [])
        for s in report.shards
    )


def test_reconcile_finds_and_repairs_missing_extra_and_stale_ids(indexed_catalog):
    model, dim = indexed_catalog
    client = redis_client()
    images = list(ProductImage.objects.order_by("pk"))
    victim = images[0]
    shard = shard_for_product(victim.product_id, 2)
    log = UpdateLog(client, shard, model, dim)
    log.append_deletes(np.asarray([victim.pk], dtype=np.int64))  # the shard loses a real id
    ghost = 10_000_000
    log.append_upserts(  # and gains one that no database row backs
        np.asarray([ghost], dtype=np.int64),
        np.full((1, dim), 1 / np.sqrt(dim), dtype=np.float32),
        VectorAttrs.build([ghost], [-1], [1.0], [True]),
    )
    # A price changed behind the index's back: no service, no encode task, still `indexed`.
    changed = images[-1]
    changed_shard = shard_for_product(changed.product_id, 2)
    Product.objects.filter(pk=changed.product_id).update(price=Decimal("123.45"))
    wait(lambda: ghost in live_ids(shard).tolist(), what="the sabotage to apply")

    report = _reconcile_json("--dry-run")
    row = _replica(report, shard)
    assert row["compared"]
    assert (row["missing_ids"], row["extra_ids"]) == ([victim.pk], [ghost])
    assert _replica(report, changed_shard)["stale_ids"] == [changed.pk]
    assert report["shards"][changed_shard]["stale"] == 1
    assert report["shards"][shard]["products_resent"] >= 1  # what a repair would re-send
    assert report["redis_bytes"] == 16 * sum(
        r["rows"] for s in report["shards"] for r in s["replicas"]
    )
    # a repair marks what it re-sends pending: a dry run leaves every product as it was
    # (the encode queue may still hold the catalog's own duplicate tasks on a busy machine)
    assert set(Product.objects.values_list("index_state", flat=True)) == {IndexState.INDEXED}

    repaired = reconcile()
    by_shard = {s.shard: s for s in repaired.shards}
    assert (by_shard[shard].missing, by_shard[shard].extra) == (1, 1)
    assert by_shard[changed_shard].stale == 1
    wait(lambda: _all_clean(reconcile(repair=False)), what="the repair to reach the replicas")
    assert Product.objects.get(pk=changed.product_id).index_state == IndexState.INDEXED
    assert victim.pk in live_ids(shard).tolist()
    assert ghost not in live_ids(shard).tolist()


def _doctored_snapshot(shard: int, missing: int, stale: int, tmp_path) -> None:
    """Publish to the store a snapshot of `shard` that lacks image `missing` and holds
    another price for image `stale`, as the newest artifact: a replica that starts now
    begins from it (a bad restore), while the running one stays right."""
    model, dim = published_model(redis_client())
    client = redis_client()
    folder = snapshot_shard(shard)
    state, _ = Shard.load_dir(folder, tmp_path / "work")
    state.delete(np.asarray([missing], dtype=np.int64))
    attrs = state.attrs_of(np.asarray([stale], dtype=np.int64))
    state.upsert(
        np.asarray([stale], dtype=np.int64),
        np.full((1, dim), 1 / np.sqrt(dim), dtype=np.float32),
        VectorAttrs.build(attrs.product_ids, attrs.category_ids, attrs.prices + 1, attrs.in_stock),
    )
    # One more log entry (a no-op delete), so the doctored state is the newest position.
    position = UpdateLog(client, shard, model, dim).append_deletes(np.asarray([-1]))
    store = index_store()
    build_id = generation(current_build(client, shard), store.list(shard))
    store.publish(
        shard,
        state.snapshot(tmp_path / "doctored", position),
        kind="snapshot",
        build_id=build_id,
        log_position=position,
        meta={"vectors": state.n_vectors, "by": "test"},
    )


def test_a_diverged_replica_is_named_while_the_other_is_right(
    indexed_catalog, redis_url, worker_logs, tmp_path
):
    client = redis_client()
    images = list(ProductImage.objects.order_by("pk"))
    on_zero = [i.pk for i in images if shard_for_product(i.product_id, 2) == 0]
    missing, stale = on_zero[0], on_zero[-1]
    first = {m.name for m in live_members(client, 0)}
    _doctored_snapshot(0, missing, stale, tmp_path)
    second = CeleryWorker([shard_queue(0)], redis_url, worker_logs).start()
    try:
        wait(
            lambda: any(m.ready and m.name not in first for m in live_members(client, 0)),
            what="the second replica of shard 0 to be ready",
        )
        (diverged,) = {m.name for m in live_members(client, 0)} - first
        assert diverged.endswith(f":{second.proc.pid}:0")

        report = _reconcile_json("--dry-run")
        rows = {r["name"]: r for r in report["shards"][0]["replicas"]}
        assert set(rows) == first | {diverged}
        (right,) = first
        assert rows[right]["compared"]
        assert (rows[right]["missing"], rows[right]["extra"], rows[right]["stale"]) == (0, 0, 0)
        assert rows[diverged]["missing_ids"] == [missing]
        assert rows[diverged]["stale_ids"] == [stale]
        assert rows[diverged]["extra"] == 0
        text = _reconcile("--dry-run")
        assert re.search(rf"replica {re.escape(diverged)} on \S+: DIVERGED", text), text
        assert re.search(rf"replica {re.escape(right)} on \S+: ok", text), text

        reconcile()  # repairs go through the log: the diverged replica takes them too
        wait(lambda: _all_clean(reconcile(repair=False)), what="the diverged replica's repair")

        # A live replica that does not answer (stopped, its heartbeat not lapsed yet) is named.
        os.kill(second.proc.pid, signal.SIGSTOP)
        try:
            silent = reconcile(repair=False, timeout=2.0)
        finally:
            os.kill(second.proc.pid, signal.SIGCONT)
        assert silent.shards[0].not_answering == [diverged]
        assert [r.name for r in silent.shards[0].replicas if r.compared] == [right]
    finally:
        second.stop()


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


def _in_state(sku: str, state: str, entered_s_ago: float, *, active: bool = True) -> int:
    product = Product.objects.create(sku=sku, title=sku, price=1, is_active=active)
    Product.objects.filter(pk=product.pk).update(
        index_state=state, index_state_at=timezone.now() - timedelta(seconds=entered_s_ago)
    )
    return product.pk


def test_reconcile_reports_products_stuck_in_a_state(redis_client):
    pending = [_in_state(f"SP-{n}", IndexState.PENDING, 1000 + n) for n in range(2)]
    encoding = _in_state("SE-1", IndexState.ENCODING, 5000)
    _in_state("SP-new", IndexState.PENDING, 10)  # within the limit
    _in_state("SI-1", IndexState.INDEXED, 5000)  # a state products stay in
    _in_state("SP-off", IndexState.PENDING, 5000, active=False)  # not for the index

    with EncodeLease([encoding], ttl_s=30):  # a live task holds it: stuck all the same
        report = _reconcile_json("--dry-run")
        text = _reconcile("--dry-run", "--stuck-after", "2000")

    stuck = {s["state"]: s for s in report["stuck"]}
    assert report["stuck_after_s"] == 900
    assert (stuck["pending"]["count"], stuck["pending"]["ids"]) == (2, [pending[1], pending[0]])
    assert stuck["pending"]["longest_s"] == pytest.approx(1001, abs=5)
    assert (stuck["encoding"]["count"], stuck["encoding"]["ids"]) == (1, [encoding])
    assert stuck["encoding"]["longest_s"] == pytest.approx(5000, abs=5)
    assert re.search(
        rf"in a state for over 2000s: pending 0, encoding 1 \(longest 500[0-4]s; ids {encoding}\)",
        text,
    ), text


def test_only_one_reconcile_runs_at_a_time(redis_client):
    from django.core.management.base import CommandError

    from catalog.services.reconcile import LOCK_KEY
    from workers.tasks.maintenance import reconcile_shards

    lock = redis_client.lock(LOCK_KEY, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        with pytest.raises(CommandError, match="another reconcile is running"):
            _reconcile("--dry-run")
        assert reconcile_shards() == {"skipped": "another reconcile is running"}
    finally:
        lock.release()
    ran = reconcile_shards()
    assert "skipped" not in ran
    assert ran["shards"] == []  # no model published yet: nothing to compare
    assert not redis_client.exists(LOCK_KEY), "the lock is released after the run"


def queued_encode_ids(client) -> list[int]:
    """Product ids of the encode tasks waiting on the private broker."""
    ids = []
    for raw in client.lrange(Queue.ENCODE.value, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.extend(args[0])
    return sorted(ids)
