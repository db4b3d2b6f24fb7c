"""The artifact store against a file:// store in tmp_path and a real S3-compatible server.

Every test that takes `store` runs against both; a `Raw` view of the same place reads and
writes the store's bytes beside the package (the filesystem, or boto3 for S3), which is how
the tests plant dead uploads and hostile manifests and damage published files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3 import CREDENTIALS, REGION, S3Server, s3_server
from workers.index.artifacts import Artifact, ArtifactError, ArtifactStore, CorruptArtifact
from workers.index.artifacts import manifest as manifest_format
from workers.index.artifacts.model import MANIFEST, new_artifact_id

STORE_LOGGER = "workers.index.artifacts.store"
HOUR = 3600.0


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto server for the module; each test works under its own key prefix."""
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


def s3_options(endpoint_url: str) -> dict[str, Any]:
    """Storage options as `Remote` hands them to s3fs (our timeout defaults merge under)."""
    return {
        "endpoint_url": endpoint_url,
        "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"region_name": REGION},
    }


@dataclass
class Raw:
    """The store's bytes, reached without the package; paths are relative to its root."""

    url: str
    options: dict[str, Any]
    root: Path | None = None  # file://
    s3: S3Server | None = None
    prefix: str = ""

    def put(self, rel: str, data: bytes) -> None:
        if self.root is not None:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            assert self.s3 is not None
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=self._key(rel), Body=data)

    def get(self, rel: str) -> bytes:
        if self.root is not None:
            return (self.root / rel).read_bytes()
        assert self.s3 is not None
        reply = self.s3.client().get_object(Bucket=self.s3.bucket, Key=self._key(rel))
        return bytes(reply["Body"].read())

    def remove(self, rel: str) -> None:
        if self.root is not None:
            (self.root / rel).unlink()
        else:
            assert self.s3 is not None
            self.s3.client().delete_object(Bucket=self.s3.bucket, Key=self._key(rel))

    def files(self, under: str = "") -> list[str]:
        """Every file (object) under `under`, relative to the root, sorted."""
        if self.root is not None:
            base = self.root / under
            if not base.exists():
                return []
            return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if not p.is_dir())
        assert self.s3 is not None
        pages = self.s3.client().get_paginator("list_objects_v2")
        keys = []
        for page in pages.paginate(Bucket=self.s3.bucket, Prefix=self._key(under)):
            keys += [obj["Key"][len(self.prefix) + 1 :] for obj in page.get("Contents", [])]
        return sorted(keys)

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}"


@pytest.fixture(params=["file", "s3"])
def raw(request: pytest.FixtureRequest, tmp_path: Path) -> Raw:
    if request.param == "file":
        root = tmp_path / "store"
        return Raw(url=root.as_uri(), options={}, root=root)
    server: S3Server = request.getfixturevalue("s3")
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    return Raw(
        url=f"s3://{server.bucket}/{prefix}",
        options=s3_options(server.endpoint_url),
        s3=server,
        prefix=prefix,
    )


@pytest.fixture
def store(raw: Raw) -> ArtifactStore:
    return ArtifactStore(raw.url, raw.options)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# --- helpers ---


def folder_of(files: dict[str, bytes], where: Path) -> Path:
    where.mkdir(parents=True)
    for name, data in files.items():
        (where / name).write_bytes(data)
    return where


def some_files(seed: int = 0) -> dict[str, bytes]:
    """A few files of different sizes, one of them empty."""
    data = hashlib.sha256(str(seed).encode()).digest() * (300 * 1024 // 32)
    return {"index.faiss": data, "ids.npy": data[:1000] + b"\x00\xff", "empty.bin": b""}


_counter = iter(range(1_000_000))


def publish(
    store: ArtifactStore,
    tmp_path: Path,
    *,
    shard: int = 0,
    kind: str = "build",
    build_id: str = "gen-1",
    log_position: str = "1-0",
    files: dict[str, bytes] | None = None,
    meta: dict[str, Any] | None = None,
) -> Artifact:
    src = folder_of(files or {"index.faiss": b"x" * 100}, tmp_path / f"src-{next(_counter)}")
    return store.publish(
        shard, src, kind=kind, build_id=build_id, log_position=log_position, meta=meta or {}
    )


def rel_folder(artifact: Artifact) -> str:
    return f"shard-{artifact.shard}/{artifact.artifact_id}"


def backdate(raw: Raw, artifact: Artifact, created: float) -> Artifact:
    """Rewrite an artifact's manifest as if it had been published at `created`."""
    older = replace(artifact, created=created)
    raw.put(f"{rel_folder(artifact)}/{MANIFEST}", manifest_format.encode(older))
    return older


def contents(folder: Path) -> dict[str, bytes]:
    """The artifact files of a fetched folder (the store's dot-named marker left out)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


# --- publish and list ---


def test_publish_then_list_returns_what_was_published(
    store: ArtifactStore, raw: Raw, tmp_path: Path
) -> None:
    files = some_files()
    meta = {"vectors": 3, "spec": "Flat", "nested": {"a": [1, 2.5, None, True]}}
    artifact = publish(
        store, tmp_path, kind="build", build_id="gen-7", log_position="17-3", files=files, meta=meta
    )
    assert artifact.kind == "build"
    assert artifact.build_id == "gen-7"
    assert artifact.log_position == "17-3"
    assert artifact.position == (17, 3)
    assert artifact.meta == meta
    assert artifact.files == {
        name: (hashlib.sha256(data).hexdigest(), len(data)) for name, data in files.items()
    }
    assert artifact.uri.endswith(f"/shard-0/{artifact.artifact_id}")
    assert artifact.artifact_id.startswith("000000000000017-000003-build-")

    assert store.list(0) == [artifact]  # the manifest round-trips every field exactly

    # the layout: the files and the manifest, and nothing else (no staging folder left)
    assert raw.files() == sorted(f"{rel_folder(artifact)}/{name}" for name in [*files, MANIFEST])
    doc = json.loads(raw.get(f"{rel_folder(artifact)}/{MANIFEST}"))
    assert doc["files"]["index.faiss"] == {
        "sha256": hashlib.sha256(files["index.faiss"]).hexdigest(),
        "size": len(files["index.faiss"]),
    }


def test_list_is_newest_first_by_numeric_log_position(store: ArtifactStore, tmp_path: Path) -> None:
    # string order would put "9-0" after "10-0" and "10-10" before "10-2"
    positions = ["10-0", "9-0", "100-0", "10-10", "10-2", "9-999999"]
    for i, position in enumerate(positions):
        kind = "build" if i % 2 else "snapshot"
        publish(store, tmp_path, kind=kind, log_position=position)
    listed = store.list(0)
    assert [a.log_position for a in listed] == [
        "100-0",
        "10-10",
        "10-2",
        "10-0",
        "9-999999",
        "9-0",
    ]
    assert [a.position for a in listed] == sorted((a.position for a in listed), reverse=True)


def test_same_log_position_newest_publication_first(store: ArtifactStore, tmp_path: Path) -> None:
    first = publish(store, tmp_path, kind="snapshot", log_position="5-0")
    second = publish(store, tmp_path, kind="snapshot", log_position="5-0")
    assert second.created >= first.created
    assert first.artifact_id != second.artifact_id  # random tails keep publishers apart
    assert store.list(0) == [second, first]


def test_shards_are_separate(store: ArtifactStore, tmp_path: Path) -> None:
    assert store.list(1) == []  # nothing published yet: no shard folder at all
    one = publish(store, tmp_path, shard=1, log_position="3-0")
    two = publish(store, tmp_path, shard=2, log_position="4-0")
    eleven = publish(store, tmp_path, shard=11, log_position="5-0")
    assert store.list(1) == [one]
    assert store.list(2) == [two]
    assert store.list(11) == [eleven]  # shard-1 is not a prefix match for shard-11
    assert store.list(0) == []
    assert store.collect_garbage(1, current_build=None, grace_s=0, now=time.time() + HOUR) == []
    assert store.list(2) == [two]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"shard": -1}, "shard"),
        ({"shard": True}, "shard"),
        ({"kind": "weights"}, "kind"),
        ({"log_position": "10"}, "log position"),
        ({"log_position": "1-0\n"}, "log position"),
        ({"build_id": ""}, "build id"),
        ({"build_id": "a\nb"}, "build id"),
        ({"meta": {"x": float("nan")}}, "JSON"),
        ({"meta": {"x": object()}}, "JSON"),
        ({"meta": ["a list"]}, "not a JSON object"),  # list() would never show it
        ({"meta": {"x": "y" * manifest_format.MAX_BYTES}}, "larger than"),
    ],
)
def test_publish_refuses_bad_arguments_before_uploading(
    store: ArtifactStore, raw: Raw, tmp_path: Path, bad: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {
        "shard": 0,
        "kind": "build",
        "build_id": "gen-1",
        "log_position": "1-0",
        "meta": {},
    }
    args.update(bad)
    src = folder_of({"a.bin": b"a"}, tmp_path / "src")
    with pytest.raises(ValueError, match=match):
        store.publish(args.pop("shard"), src, **args)
    assert raw.files() == []


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ("subfolder", "flat"),
        (".hidden", "plain file name"),
        (MANIFEST, "plain file name"),
        ("missing", "not a folder"),
    ],
)
def test_publish_refuses_folders_it_cannot_publish_flat(
    store: ArtifactStore, raw: Raw, tmp_path: Path, layout: str, match: str
) -> None:
    src = tmp_path / "src"
    if layout != "missing":
        folder_of({"a.bin": b"a"}, src)
        if layout == "subfolder":
            (src / "sub").mkdir()
        else:
            (src / layout).write_bytes(b"{}")
    with pytest.raises(ValueError, match=match):
        store.publish(0, src, kind="build", build_id="g", log_position="1-0", meta={})
    assert raw.files() == []


# --- fetch and the local cache ---


def test_fetch_returns_the_published_files_then_serves_them_from_the_cache(
    store: ArtifactStore, raw: Raw, tmp_path: Path, cache_dir: Path
) -> None:
    files = some_files(1)
    artifact = publish(store, tmp_path, files=files)
    (listed,) = store.list(0)
    path = store.fetch(listed, cache_dir)
    assert path == cache_dir / artifact.artifact_id
    assert contents(path) == files
    assert sorted(p.name for p in cache_dir.iterdir()) == [artifact.artifact_id]

    # the store's copy goes bad: a second fetch never reads it, the verified copy is served
    raw.put(f"{rel_folder(artifact)}/index.faiss", b"gone bad")
    assert store.fetch(listed, cache_dir) == path
    assert contents(path) == files


DAMAGE = {
    "flipped": lambda data: bytes([data[0] ^ 1]) + data[1:],  # same size, other bytes
    "truncated": lambda data: data[: len(data) // 2],
    "longer": lambda data: data + b"!",
    "emptied": lambda data: b"",
}


@pytest.mark.parametrize("damage", [*DAMAGE, "missing"])
def test_fetch_refuses_a_damaged_store_file_and_leaves_nothing_cached(
    store: ArtifactStore, raw: Raw, tmp_path: Path, cache_dir: Path, damage: str
) -> None:
    artifact = publish(store, tmp_path, files=some_files(2))
    target = f"{rel_folder(artifact)}/index.faiss"
    if damage == "missing":
        raw.remove(target)
    else:
        raw.put(target, DAMAGE[damage](raw.get(target)))
    with pytest.raises(CorruptArtifact, match=r"index\.faiss"):
        store.fetch(artifact, cache_dir)
    assert list(cache_dir.iterdir()) == []  # neither the folder nor a temporary one


def test_a_cached_copy_that_lost_bytes_or_its_marker_is_fetched_again(
    store: ArtifactStore, tmp_path: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = some_files(3)
    artifact = publish(store, tmp_path, files=files)
    path = store.fetch(artifact, cache_dir)

    (path / "index.faiss").write_bytes(files["index.faiss"][:-1])  # truncated on local disk
    with caplog.at_level(logging.WARNING, logger=STORE_LOGGER):
        assert store.fetch(artifact, cache_dir) == path
    assert "does not match its manifest" in caplog.text
    assert contents(path) == files

    (path / "ids.npy").unlink()
    assert contents(store.fetch(artifact, cache_dir)) == files

    (path / ".verified").unlink()  # a copy nobody vouches for is not trusted
    (path / "index.faiss").write_bytes(b"\x00" * len(files["index.faiss"]))
    assert contents(store.fetch(artifact, cache_dir)) == files
    assert sorted(p.name for p in cache_dir.iterdir()) == [artifact.artifact_id]


def test_a_damaged_cached_copy_of_a_damaged_artifact_is_refused_and_removed(
    store: ArtifactStore, raw: Raw, tmp_path: Path, cache_dir: Path
) -> None:
    artifact = publish(store, tmp_path, files=some_files(4))
    path = store.fetch(artifact, cache_dir)
    (path / "index.faiss").write_bytes(b"short")
    raw.put(f"{rel_folder(artifact)}/index.faiss", b"also short")
    with pytest.raises(CorruptArtifact):
        store.fetch(artifact, cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_the_cache_check_is_a_stat_not_a_rehash(
    store: ArtifactStore, tmp_path: Path, cache_dir: Path
) -> None:
    """By design (cache.is_verified): sums are checked when a copy is fetched; after that a
    cached copy is trusted while its marker and file sizes hold. Pinned so that a change
    to this trade-off (re-hashing gigabytes on every start) is a deliberate one."""
    files = some_files(5)
    artifact = publish(store, tmp_path, files=files)
    path = store.fetch(artifact, cache_dir)
    damaged = DAMAGE["flipped"](files["index.faiss"])
    (path / "index.faiss").write_bytes(damaged)
    assert store.fetch(artifact, cache_dir) == path
    assert (path / "index.faiss").read_bytes() == damaged


def test_a_verified_copy_for_other_files_is_not_trusted(
    store: ArtifactStore, tmp_path: Path, cache_dir: Path
) -> None:
    """The marker records the sums it was verified against: an artifact whose manifest
    lists other sums (same id and sizes) does not get the old copy."""
    files = some_files(6)
    artifact = publish(store, tmp_path, files=files)
    path = store.fetch(artifact, cache_dir)
    other_sha = hashlib.sha256(b"other").hexdigest()
    size = len(files["index.faiss"])
    forged = replace(artifact, files={**artifact.files, "index.faiss": (other_sha, size)})
    with pytest.raises(CorruptArtifact, match="sha256"):
        store.fetch(forged, cache_dir)
    assert not path.exists()


@pytest.mark.parametrize(
    "forged",
    [
        {"artifact_id": "../../outside"},
        {"artifact_id": "000000000000001-000000-build-0000000g"},
        {"files": {"../escape": ("0" * 64, 1)}},
        {"files": {"/etc/passwd": ("0" * 64, 1)}},
        {"files": {".verified": ("0" * 64, 1)}},
        {"shard": -1},
    ],
)
def test_fetch_and_delete_refuse_an_artifact_record_with_unsafe_names(
    store: ArtifactStore, tmp_path: Path, cache_dir: Path, forged: dict[str, Any]
) -> None:
    artifact = replace(publish(store, tmp_path), **forged)
    with pytest.raises((CorruptArtifact, ValueError)):
        store.fetch(artifact, cache_dir)
    with pytest.raises((CorruptArtifact, ValueError)):
        store.delete(artifact)
    assert not (tmp_path / "outside").exists()
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
    assert len(store.list(0)) == 1


def test_delete_removes_the_manifest_and_every_file(
    store: ArtifactStore, raw: Raw, tmp_path: Path
) -> None:
    kept = publish(store, tmp_path, log_position="1-0")
    doomed = publish(store, tmp_path, log_position="2-0", files=some_files(7))
    store.delete(doomed)
    assert store.list(0) == [kept]
    assert raw.files(rel_folder(doomed)) == []
    store.delete(doomed)  # already gone: nothing to do


# --- uploads that never committed ---


def test_an_upload_without_manifest_is_not_listed_and_collected_after_grace(
    store: ArtifactStore, raw: Raw, tmp_path: Path
) -> None:
    current = publish(store, tmp_path, log_position="1-0")
    dead_id = new_artifact_id("2-0", "build")
    raw.put(f"shard-0/{dead_id}/index.faiss", b"half an upload")  # died before its manifest
    staged = f"shard-0/.tmp-{new_artifact_id('3-0', 'snapshot')}"
    raw.put(f"{staged}/index.faiss", b"staged")  # a local publish that died before rename
    assert store.list(0) == [current]

    uploaded = time.time()
    assert store.collect_garbage(0, current_build=None, grace_s=600, now=uploaded + 60) == []
    assert raw.files(f"shard-0/{dead_id}") != []
    assert raw.files(staged) != []  # young: it may be a publish still under way

    assert store.collect_garbage(0, current_build=None, grace_s=600, now=uploaded + 700) == []
    assert raw.files(f"shard-0/{dead_id}") == []
    assert raw.files(staged) == []
    assert store.list(0) == [current]
    assert raw.files() == sorted(
        f"{rel_folder(current)}/{name}" for name in ["index.faiss", MANIFEST]
    )


# --- hostile manifests ---


def good_doc(artifact_id: str, shard: int = 0) -> dict[str, Any]:
    position = "{}-{}".format(*(int(part) for part in artifact_id.split("-")[:2]))
    return {
        "format": 1,
        "shard": shard,
        "artifact_id": artifact_id,
        "kind": artifact_id.split("-")[2],
        "build_id": "gen-1",
        "log_position": position,
        "created": time.time(),
        "files": {"index.faiss": {"sha256": "a" * 64, "size": 3}},
        "meta": {},
    }


def _set(path: tuple[str, ...], value: Any) -> Any:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return doc

    return change


def _drop(key: str) -> Any:
    return lambda doc: {k: v for k, v in doc.items() if k != key}


def _file(name: Any) -> Any:
    return _set(("files",), {name: {"sha256": "a" * 64, "size": 3}})


HOSTILE: dict[str, Any] = {
    # file names that would leave the folder or shadow the store's own names
    "parent": _file("../x"),
    "deep-parent": _file("../../../../etc/cron.d/x"),
    "absolute": _file("/etc/passwd"),
    "dot": _file("."),
    "dotdot": _file(".."),
    "dot-name": _file(".verified"),
    "manifest-name": _file(MANIFEST),
    "slash": _file("a/b"),
    "backslash": _file("a\\b"),
    "nul": _file("a\x00b"),
    "empty-name": _file(""),
    "newline-name": _file("a\nb"),
    "long-name": _file("x" * 256),
    # ids and positions that disagree with the folder
    "other-id": _set(("artifact_id",), new_artifact_id("5-0", "build")),
    "traversal-id": _set(("artifact_id",), "../../x"),
    "other-kind": _set(("kind",), "snapshot"),
    "unknown-kind": _set(("kind",), "weights"),
    "other-position": _set(("log_position",), "6-0"),
    "numeric-position": _set(("log_position",), 5),
    "other-shard": _set(("shard",), 1),
    "string-shard": _set(("shard",), "0"),
    "bool-shard": _set(("shard",), False),
    # wrong types and values
    "not-object": lambda doc: [doc],
    "null": lambda doc: None,
    "other-format": _set(("format",), 2),
    "no-format": _drop("format"),
    "no-files": _drop("files"),
    "no-meta": _drop("meta"),
    "no-created": _drop("created"),
    "files-list": _set(("files",), ["index.faiss"]),
    "entry-string": _set(("files", "index.faiss"), "a" * 64),
    "size-string": _set(("files", "index.faiss", "size"), "3"),
    "size-float": _set(("files", "index.faiss", "size"), 3.0),
    "size-negative": _set(("files", "index.faiss", "size"), -1),
    "size-bool": _set(("files", "index.faiss", "size"), True),
    "meta-list": _set(("meta",), []),
    "build-id-empty": _set(("build_id",), ""),
    "build-id-number": _set(("build_id",), 7),
    "build-id-long": _set(("build_id",), "b" * 201),
    "created-string": _set(("created",), "yesterday"),
    "created-bool": _set(("created",), True),
    "created-nan": _set(("created",), float("nan")),
    "created-inf": _set(("created",), float("inf")),
    "created-huge": _set(("created",), 10**400),  # an int no float can hold
    # sums
    "sha-short": _set(("files", "index.faiss", "sha256"), "a" * 63),
    "sha-upper": _set(("files", "index.faiss", "sha256"), "A" * 64),
    "sha-not-hex": _set(("files", "index.faiss", "sha256"), "g" * 64),
    "sha-null": _set(("files", "index.faiss", "sha256"), None),
    "sha-missing": _set(("files", "index.faiss"), {"size": 3}),
}

RAW_HOSTILE: dict[str, bytes] = {
    "not-json": b"{this is not json",
    "empty-file": b"",  # S3 refuses a byte range of an empty object (416)
    "not-utf8": b"\xff\xfe\xfa not text",
    "truncated-json": b'{"format": 1, "shard": 0, "files": {',
    "deep-nesting": b'{"meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "oversized": b'{"pad": "' + b"x" * (manifest_format.MAX_BYTES + 10) + b'"}',
}


def hostile_bytes(case: str, artifact_id: str) -> bytes:
    if case in RAW_HOSTILE:
        return RAW_HOSTILE[case]
    return json.dumps(HOSTILE[case](good_doc(artifact_id))).encode()  # NaN as JSON allows


@pytest.mark.parametrize("case", [*HOSTILE, *RAW_HOSTILE])
def test_a_hostile_manifest_is_skipped_with_a_log_line(
    store: ArtifactStore,
    raw: Raw,
    tmp_path: Path,
    cache_dir: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    good = publish(store, tmp_path, log_position="1-0")
    bad_id = new_artifact_id("5-0", "build")
    raw.put(f"shard-0/{bad_id}/index.faiss", b"abc")
    raw.put(f"shard-0/{bad_id}/{MANIFEST}", hostile_bytes(case, bad_id))

    with caplog.at_level(logging.WARNING, logger=STORE_LOGGER):
        assert store.list(0) == [good]
    assert bad_id in caplog.text
    assert "skipping artifact" in caplog.text

    # garbage collection neither crashes nor deletes it: it may be a newer format
    later = time.time() + HOUR
    assert store.collect_garbage(0, current_build=None, grace_s=0, now=later) == []
    assert raw.files(f"shard-0/{bad_id}") != []
    assert contents(store.fetch(good, cache_dir)) == {"index.faiss": b"x" * 100}
    assert not (cache_dir / bad_id).exists()


def test_the_good_manifest_template_is_accepted(store: ArtifactStore, raw: Raw) -> None:
    """The control for the hostile cases: unchanged, the planted manifest is listed."""
    artifact_id = new_artifact_id("5-0", "build")
    raw.put(f"shard-0/{artifact_id}/{MANIFEST}", json.dumps(good_doc(artifact_id)).encode())
    (listed,) = store.list(0)
    assert listed.artifact_id == artifact_id
    assert listed.files == {"index.faiss": ("a" * 64, 3)}


def test_folders_that_are_not_artifact_ids_are_ignored_and_kept(
    store: ArtifactStore, raw: Raw, tmp_path: Path
) -> None:
    """Foreign names in a shard's folder are not the store's: never listed, never deleted."""
    good = publish(store, tmp_path, log_position="1-0")
    for name in ["not-an-id", "000000000000005-000000-build-XYZ", "README"]:
        doc = good_doc(new_artifact_id("5-0", "build"))
        raw.put(f"shard-0/{name}/{MANIFEST}", json.dumps(doc).encode())
    assert store.list(0) == [good]
    assert store.collect_garbage(0, current_build=None, grace_s=0, now=time.time() + HOUR) == []
    assert len(raw.files("shard-0/not-an-id")) == 1


# --- retention ---


def test_retention_keeps_the_current_build_its_newest_snapshots_and_young_artifacts(
    store: ArtifactStore, raw: Raw, tmp_path: Path
) -> None:
    now = time.time()
    old = now - HOUR

    def put(kind: str, build_id: str, position: str, *, young: bool = False) -> Artifact:
        artifact = publish(store, tmp_path, kind=kind, build_id=build_id, log_position=position)
        return artifact if young else backdate(raw, artifact, old)

    g1_build = put("build", "gen-1", "1-0")
    g1_snap = put("snapshot", "gen-1", "2-0")
    g1_young = put("snapshot", "gen-1", "2-5", young=True)  # superseded, but just published
    g2_old_build = put("build", "gen-2", "3-0")  # the same generation, published again later
    g2_build = put("build", "gen-2", "3-5")
    g2_snaps = [put("snapshot", "gen-2", f"{p}-0") for p in (4, 5, 6)]
    g3_early_snap = put("snapshot", "gen-3", "7-0")  # a generation not yet current

    deleted = store.collect_garbage(0, current_build="gen-2", keep_snapshots=2, grace_s=600)
    assert deleted == [g3_early_snap, g2_snaps[0], g2_old_build, g1_snap, g1_build]
    assert store.list(0) == [g2_snaps[2], g2_snaps[1], g2_build, g1_young]
    for artifact in deleted:
        assert raw.files(rel_folder(artifact)) == []  # the files go too, not just manifests

    # nothing more to do, and once it is old, the young superseded snapshot goes as well
    assert store.collect_garbage(0, current_build="gen-2", keep_snapshots=2, grace_s=600) == []
    later = now + HOUR
    assert store.collect_garbage(
        0, current_build="gen-2", keep_snapshots=2, grace_s=600, now=later
    ) == [g1_young]
    assert store.collect_garbage(
        0, current_build="gen-2", keep_snapshots=0, grace_s=600, now=later
    ) == [g2_snaps[2], g2_snaps[1]]
    assert store.list(0) == [g2_build]


def test_retention_without_a_named_build_keeps_the_newest_builds_generation(
    store: ArtifactStore, raw: Raw, tmp_path: Path
) -> None:
    old = time.time() - HOUR
    g1 = backdate(raw, publish(store, tmp_path, build_id="gen-1", log_position="1-0"), old)
    g2 = backdate(raw, publish(store, tmp_path, build_id="gen-2", log_position="2-0"), old)
    snap = backdate(
        raw, publish(store, tmp_path, kind="snapshot", build_id="gen-2", log_position="3-0"), old
    )
    assert store.collect_garbage(0, current_build=None, keep_snapshots=1) == [g1]
    assert store.list(0) == [snap, g2]


def test_retention_keeps_everything_when_the_current_build_is_not_in_the_store(
    store: ArtifactStore, raw: Raw, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = time.time() - HOUR
    g1 = backdate(raw, publish(store, tmp_path, build_id="gen-1", log_position="1-0"), old)
    snap = backdate(
        raw, publish(store, tmp_path, kind="snapshot", build_id="gen-1", log_position="2-0"), old
    )
    with caplog.at_level(logging.WARNING):
        assert store.collect_garbage(0, current_build="gen-9", keep_snapshots=0) == []
    assert "no build artifact of generation 'gen-9'" in caplog.text
    assert store.list(0) == [snap, g1]
    with pytest.raises(ValueError, match="keep_snapshots"):
        store.collect_garbage(0, current_build="gen-1", keep_snapshots=-1)


# --- an unreachable store, bad URLs ---


def closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: connections are refused


def test_an_unreachable_s3_store_fails_promptly_with_artifact_error(
    tmp_path: Path, cache_dir: Path
) -> None:
    endpoint = closed_port_endpoint()
    # with the package's own timeouts and retries (about 2 s against a refused port)
    store = ArtifactStore("s3://bucket/store", s3_options(endpoint))
    started = time.monotonic()
    with pytest.raises(ArtifactError, match="cannot list"):
        store.list(0)
    assert time.monotonic() - started < 15

    # shorter ones from the caller merge over the defaults key by key
    quick = {
        **s3_options(endpoint),
        "config_kwargs": {"connect_timeout": 1, "retries": {"total_max_attempts": 1}},
    }
    store = ArtifactStore("s3://bucket/store", quick)
    started = time.monotonic()
    with pytest.raises(ArtifactError):
        store.collect_garbage(0, current_build=None)
    with pytest.raises(ArtifactError):
        publish(store, tmp_path, files={"a.bin": b"a"})
    artifact = Artifact(
        shard=0,
        artifact_id=new_artifact_id("1-0", "build"),
        kind="build",
        build_id="gen-1",
        log_position="1-0",
        uri="s3://bucket/store/shard-0/x",
        files={"a.bin": (hashlib.sha256(b"a").hexdigest(), 1)},
        meta={},
        created=time.time(),
    )
    with pytest.raises(ArtifactError):
        store.fetch(artifact, cache_dir)
    assert list(cache_dir.iterdir()) == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "url",
    ["relative/store", "store", "", "./store", "file://relative/store", "file://store"],
)
def test_bad_store_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        ArtifactStore(url)


def test_an_absolute_path_is_a_file_url(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    assert store.url == (tmp_path / "store").as_uri()
    assert store.list(0) == []
    assert os.listdir(tmp_path) == []  # listing creates nothing
