"""Update log on a real private Redis, replicas following it, snapshots and rebuild swaps."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.workers.index.conftest import DIM, attrs_for, random_vectors
from workers.index.artifacts import ArtifactStore
from workers.index.build_pointer import BuildPointer
from workers.index.bulk_build import build_bulk
from workers.index.log import UpdateLog, log_key, shard_for_product
from workers.index.membership import beat, leave, live_members
from workers.index.replica import NotCovered, ShardReplica

MODEL = "clip-test"


def test_log_round_trip_and_malformed_entries_skipped(redis_client: redis.Redis) -> None:
    log = UpdateLog(redis_client, 0, MODEL, DIM)
    ids = np.array([5, 9], dtype=np.int64)
    x = random_vectors(2)
    first = log.append_upserts(ids, x, attrs_for(ids))
    redis_client.xadd(log_key(0), {"v": "1", "op": "upsert", "n": "2", "ids": b"short"})
    redis_client.xadd(log_key(0), {"garbage": "yes"})
    last = log.append_deletes(np.array([9], dtype=np.int64))
    entries, position = log.read_batch("0-0", count=10)
    assert [e.entry_id for e in entries] == [first, last]
    assert position == last
    up, dele = entries
    np.testing.assert_array_equal(up.ids, ids)
    np.testing.assert_array_equal(up.vectors, x)
    assert up.vectors.dtype == np.float32
    np.testing.assert_array_equal(up.attrs.category_ids, attrs_for(ids).category_ids)
    assert dele.op == "delete"
    np.testing.assert_array_equal(dele.ids, [9])
    assert log.read(last, count=10) == []


def test_trim_records_what_it_removed_so_gaps_are_seen(redis_client: redis.Redis) -> None:
    log = UpdateLog(redis_client, 1, MODEL, DIM)
    positions = [log.append_deletes(np.array([i], dtype=np.int64)) for i in range(10)]
    assert log.covers("0-0")  # nothing removed yet: the log alone is the whole history
    assert log.trim_before(positions[3]) == 3
    assert [e.entry_id for e in log.read("0-0", count=100)] == positions[3:]
    assert log.trimmed_through() == positions[2]
    assert not log.covers("0-0")
    assert not log.covers(positions[1])
    assert log.covers(positions[2])  # everything after it is still there
    assert log.trim_before(positions[1]) == 0  # floors only move forward
    assert log.trimmed_through() == positions[2]


def test_shard_for_product_is_stable_and_spreads() -> None:
    shards = [shard_for_product(p, 4) for p in range(4000)]
    assert shards[:8] == [shard_for_product(p, 4) for p in range(8)]
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 800


def _fill_log(log: UpdateLog, ids: np.ndarray, seed: int) -> np.ndarray:
    x = random_vectors(len(ids), seed=seed)
    for chunk in range(0, len(ids), 50):
        sl = slice(chunk, chunk + 50)
        log.append_upserts(ids[sl], x[sl], attrs_for(ids[sl]))
    return x


def _replica(client: redis.Redis, shard: int, tmp_path: Path, host: str = "a", **kw):
    """A replica on its own 'host' folder, sharing the store under tmp_path."""
    store = ArtifactStore((tmp_path / "store").as_uri())
    return ShardReplica(
        client, shard, MODEL, DIM, store=store, local_dir=tmp_path / host, host=host, **kw
    )


def test_replica_on_another_host_starts_from_the_store(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = UpdateLog(redis_client, 2, MODEL, DIM)
    ids = np.arange(300, dtype=np.int64)
    x = _fill_log(log, ids, seed=1)
    replica = _replica(redis_client, 2, tmp_path, spec="Flat")
    assert replica.recover()  # nothing trimmed yet: the whole log is the whole shard
    shard = replica.shard
    assert shard.stats()["vectors"] == 300
    artifact = replica.publish_snapshot()
    assert artifact is not None
    assert artifact.log_position == replica.last_applied
    assert log.length() == 1  # trimmed behind the only artifact (its own entry is kept)
    log.append_deletes(ids[:10])
    assert replica.poll_once() == 1
    assert not shard.contains(ids[:10]).any()
    # another host, empty disk: the artifact plus the rest of the log, nothing missing
    other = _replica(redis_client, 2, tmp_path, host="b", spec="Flat")
    assert other.recover()
    np.testing.assert_array_equal(other.shard.ids(), ids[10:])
    q = x[50:55]
    np.testing.assert_array_equal(other.shard.search(q, 5).image_ids, shard.search(q, 5).image_ids)
    assert other.last_applied == replica.last_applied


def test_no_covering_state_means_not_ready_and_asks_for_a_build(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = UpdateLog(redis_client, 7, MODEL, DIM)
    ids = np.arange(100, dtype=np.int64)
    _fill_log(log, ids, seed=3)
    log.trim_before(log.last_id())  # the history is gone and the store is empty
    replica = _replica(redis_client, 7, tmp_path, spec="Flat")
    with pytest.raises(NotCovered):
        replica.recover()
    assert not replica.ready
    assert "no artifact" in replica.reason
    assert replica.state().position == ""  # holds no trim floor while it has no state


def test_expired_heartbeat_releases_the_trim_floor(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = UpdateLog(redis_client, 8, MODEL, DIM)
    _fill_log(log, np.arange(50, dtype=np.int64), seed=8)
    replica = _replica(redis_client, 8, tmp_path, spec="Flat")
    assert replica.recover()
    behind = replace(replica.state(), name="b:1:8", host="b")
    beat(redis_client, behind, ttl_s=0.3)  # a replica on another host, then killed
    _fill_log(log, np.arange(50, 100, dtype=np.int64), seed=9)
    replica.catch_up()
    replica.publish_snapshot()
    assert log.length() > 1  # the dead replica still holds the floor
    assert [m.name for m in live_members(redis_client, 8)] == [behind.name]
    time.sleep(0.4)
    assert live_members(redis_client, 8) == []
    replica.trim_log()
    assert log.length() == 1


def test_corrupt_artifact_is_refused_and_the_previous_one_used(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = UpdateLog(redis_client, 3, MODEL, DIM)
    ids = np.arange(200, dtype=np.int64)
    _fill_log(log, ids[:100], seed=2)
    replica = _replica(redis_client, 3, tmp_path, spec="Flat")
    replica.recover()
    older = replica.publish_snapshot()
    _fill_log(log, ids[100:], seed=3)
    replica.poll_once()
    newest = replica.publish_snapshot()
    assert older is not None
    assert newest is not None
    assert log.covers(older.log_position)  # the log reaches back to the previous artifact
    leave(redis_client, 3, replica.name)
    columns = Path(newest.uri.removeprefix("file://")) / "columns.npz"
    data = bytearray(columns.read_bytes())
    data[len(data) // 2] ^= 0xFF
    columns.write_bytes(bytes(data))
    again = _replica(redis_client, 3, tmp_path, host="b", spec="Flat")
    assert again.recover()
    np.testing.assert_array_equal(again.shard.ids(), ids)  # previous artifact + longer replay


def test_replica_survives_redis_restart(
    redis_server, redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = UpdateLog(redis_client, 4, MODEL, DIM)
    ids = np.arange(100, dtype=np.int64)
    _fill_log(log, ids, seed=4)
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    replica = _replica(client, 4, tmp_path, spec="Flat", backoff_base=0.01)
    replica.recover()
    redis_client.close()
    redis_server.stop()
    try:
        assert replica.poll_once() == 0  # backs off instead of raising
        assert replica.failures == 1
    finally:
        redis_server.start()
    writer = UpdateLog(redis.Redis.from_url(redis_server.url), 4, MODEL, DIM)
    writer.append_deletes(ids[:7])
    replica.catch_up()
    np.testing.assert_array_equal(replica.shard.ids(), ids[7:])
    assert replica.failures == 0


def test_update_during_rebuild_survives_the_swap(redis_client: redis.Redis, tmp_path: Path) -> None:
    log = UpdateLog(redis_client, 5, MODEL, DIM)
    ids = np.arange(1000, dtype=np.int64)
    x = _fill_log(log, ids, seed=5)
    replica = _replica(redis_client, 5, tmp_path, spec="Flat")
    replica.recover()
    # the rebuild reads the stored vectors as of this log position...
    position = log.last_id()
    source = [
        (ids[i : i + 250], x[i : i + 250], attrs_for(ids[i : i + 250])) for i in range(0, 1000, 250)
    ]
    # ...while updates keep arriving and the live replica applies them
    fresh_ids = np.arange(5000, 5010, dtype=np.int64)
    fresh = _fill_log(log, fresh_ids, seed=6)
    log.append_deletes(ids[:5])
    replica.catch_up()
    built = build_bulk(
        iter(source),
        DIM,
        MODEL,
        "IVF8,Flat",
        log_position=position,
        work_dir=tmp_path / "b",
        tune_queries=50,
    )
    folder = built.shard.snapshot(tmp_path / "out", position)
    artifact = replica.store.publish(
        5, folder, kind="build", build_id="b1", log_position=position, meta={}
    )
    more = np.arange(6000, 6003, dtype=np.int64)
    _fill_log(log, more, seed=7)  # and one more after the build finished
    pointer = BuildPointer("b1", artifact.artifact_id, artifact.uri, position, "IVF8,Flat")
    assert replica.swap_to_build(pointer)
    shard = replica.shard
    assert shard.spec.factory == "IVF8,Flat"
    assert replica.build_id == "b1"
    np.testing.assert_array_equal(shard.ids(), np.sort(np.concatenate([ids[5:], fresh_ids, more])))
    top = shard.search(fresh[:3], 1, params=None).image_ids[:, 0]
    np.testing.assert_array_equal(top, fresh_ids[:3])


def test_concurrent_follow_and_search(redis_client: redis.Redis, tmp_path: Path) -> None:
    log = UpdateLog(redis_client, 6, MODEL, DIM)
    replica = _replica(redis_client, 6, tmp_path, spec="Flat")
    replica.recover()
    shard = replica.shard
    stop = threading.Event()
    follower = threading.Thread(target=replica.follow, args=(stop, 50))
    follower.start()
    try:
        for start in range(0, 400, 40):
            _fill_log(log, np.arange(start, start + 40, dtype=np.int64), seed=start)
            shard.search(random_vectors(2, seed=start), 5)
        deadline = 200
        while shard.stats()["vectors"] < 400 and deadline:
            stop.wait(0.05)
            deadline -= 1
    finally:
        stop.set()
        follower.join()
    assert shard.stats()["vectors"] == 400


@pytest.mark.parametrize("spec", ["IVF16,Flat", "IVF16,PQ4x4"])
def test_build_tunes_to_recall_target(spec: str, tmp_path: Path) -> None:
    from workers.index.synthetic import clustered_vectors

    x = clustered_vectors(4000, DIM, n_clusters=30)
    ids = np.arange(4000, dtype=np.int64) + 10
    batches = (
        (ids[i : i + 1000], x[i : i + 1000], attrs_for(ids[i : i + 1000]))
        for i in range(0, 4000, 1000)
    )
    built = build_bulk(
        batches, DIM, MODEL, spec, work_dir=tmp_path, tune_queries=100, train_size=2000
    )
    assert built.tune["reached"]
    assert built.tune["recall_at_k"] >= 0.95
    assert built.shard.tune_report["params"] == built.shard.params.to_dict()
    # how deep a larger k or a filtered search must probe: recall@20, @100 and @1000 tuned
    depths = built.shard.tune_report["depths"]
    probes = [built.shard.params.nprobe] + [depths[d]["nprobe"] for d in ("20", "100", "1000")]
    assert probes == sorted(probes)
    for entry in depths.values():
        assert entry["recall"] >= 0.96 or entry["nprobe"] == 16
    assert built.n_vectors == 4000
    assert built.device == "cpu"


def test_a_compressed_build_tunes_the_candidates_a_filter_needs(tmp_path: Path) -> None:
    """Each depth's entry holds the re-rank candidates a random filter keeping k/depth
    needed; a real filter keeping 10% (categories 0-9), searched with them, finds its
    exact top 10."""
    from workers.index.synthetic import clustered_vectors
    from workers.index.types import SearchFilter

    x = clustered_vectors(6000, DIM, n_clusters=30)
    ids = np.arange(6000, dtype=np.int64)
    built = build_bulk(
        iter([(ids, x, attrs_for(ids))]), DIM, MODEL, "IVF16,PQ4x4", work_dir=tmp_path
    )
    shard = built.shard
    depths = shard.tune_report["depths"]
    counts = [shard.params.rerank_k] + [depths[d]["rerank_k"] for d in ("20", "100", "1000")]
    assert counts == sorted(counts)  # each depth's ladder starts at the shallower count
    assert all(0 < depths[d]["filtered_recall"] <= 1 for d in depths)
    q = clustered_vectors(100, DIM, n_clusters=30, seed=71)
    found = shard.search(q, 10, SearchFilter(category_ids=frozenset(range(10)))).image_ids
    scores = np.where(ids % 100 < 10, q @ x.T, -np.inf)
    truth = ids[np.argsort(-scores, axis=1)[:, :10]]
    recall = np.mean([np.intersect1d(f, t).size / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_a_graph_build_tunes_the_efsearch_each_depth_needs(tmp_path: Path) -> None:
    from workers.index.synthetic import clustered_vectors

    x = clustered_vectors(3000, DIM, n_clusters=30)
    ids = np.arange(3000, dtype=np.int64)
    built = build_bulk(
        iter([(ids, x, attrs_for(ids))]), DIM, MODEL, "HNSW16", work_dir=tmp_path, tune_queries=100
    )
    depths = built.shard.tune_report["depths"]
    efs = [built.shard.params.ef_search] + [depths[d]["ef_search"] for d in ("20", "100", "1000")]
    assert efs == sorted(efs)
    assert efs[2] >= 100  # a graph search keeps at most efSearch candidates
    assert efs[3] >= 1000
    assert all(entry["recall"] >= 0.96 for entry in depths.values())
