"""What a failed read of a stored image means: real files on disk and a real S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.utils import timezone
from storages.backends.s3 import S3Storage

from catalog.stored_files import (
    StoredFileOutcome,
    classify_read_error,
    read_stored_file,
    storage_root_present,
)
from tests.support.s3 import CREDENTIALS, REGION, S3Server, s3_server

Out = StoredFileOutcome
WINDOW = 600.0
FRESH, OLD = 5.0, 3600.0


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    body = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(body, operation)  # type: ignore[arg-type]


NOT_FOUND = [
    FileNotFoundError(2, "No such file or directory"),
    client_error("404", 404, "HeadObject"),
    client_error("NoSuchKey", 404),
]
STORAGE_FAILURES = [
    OSError(5, "Input/output error"),
    IsADirectoryError(21, "Is a directory"),
    PermissionError(13, "Permission denied"),
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError("timed out"),
    EndpointConnectionError(endpoint_url="http://s3"),
    ConnectTimeoutError(endpoint_url="http://s3"),
    ReadTimeoutError(endpoint_url="http://s3"),
    ConnectionClosedError(endpoint_url="http://s3"),
    NoCredentialsError(),
    client_error("AccessDenied", 403),
    client_error("InternalError", 500),
    client_error("SlowDown", 503),
]


@pytest.mark.parametrize("exc", NOT_FOUND, ids=repr)
def test_not_found_is_missing_only_after_the_window(exc):
    assert classify_read_error(exc, age_s=FRESH, missing_after_s=WINDOW) is Out.NOT_STORED_YET
    assert classify_read_error(exc, age_s=OLD, missing_after_s=WINDOW) is Out.MISSING
    assert classify_read_error(exc, age_s=WINDOW, missing_after_s=WINDOW) is Out.MISSING


@pytest.mark.parametrize("exc", NOT_FOUND, ids=repr)
def test_not_found_without_the_storage_root_is_an_outage(exc):
    outcome = classify_read_error(exc, age_s=OLD, missing_after_s=WINDOW, root_present=False)
    assert outcome is Out.UNAVAILABLE


@pytest.mark.parametrize("exc", STORAGE_FAILURES, ids=repr)
def test_storage_failures_are_transient_at_any_age(exc):
    for age in (FRESH, OLD):
        outcome = classify_read_error(exc, age_s=age, missing_after_s=WINDOW)
        assert outcome is Out.UNAVAILABLE
        assert outcome.transient


def test_other_errors_are_not_storage_failures():
    assert classify_read_error(ValueError("bad name"), age_s=OLD, missing_after_s=WINDOW) is None


def test_outcomes_say_which_are_retried():
    assert {o for o in Out if o.transient} == {Out.NOT_STORED_YET, Out.UNAVAILABLE}
    assert Out.MISSING.value == "missing_file"


# --- on disk -------------------------------------------------------------------------


def read(storage, name: str, age_s: float, **kwargs):
    now = timezone.now()
    return read_stored_file(
        storage,
        name,
        max_bytes=kwargs.pop("max_bytes", 1000),
        saved_at=now - timedelta(seconds=age_s),
        missing_after_s=WINDOW,
        now=now,
    )


@pytest.fixture
def disk(tmp_path: Path) -> FileSystemStorage:
    storage = FileSystemStorage(location=tmp_path / "media")
    storage.save("products/1/a.png", ContentFile(b"0123456789"))
    return storage


def test_disk_reads_bytes_up_to_the_cap(disk):
    result = read(disk, "products/1/a.png", OLD, max_bytes=4)
    assert (result.outcome, result.data) == (Out.READ, b"0123")


def test_disk_missing_file_is_missing_after_the_window(disk):
    young = read(disk, "products/1/gone.png", FRESH)
    assert young.outcome is Out.NOT_STORED_YET
    assert "not in storage yet" in young.detail
    old = read(disk, "products/1/gone.png", OLD)
    assert old.outcome is Out.MISSING
    assert "products/1/gone.png is missing" in old.detail


def test_disk_without_its_volume_is_an_outage_not_a_missing_file(tmp_path):
    absent = FileSystemStorage(location=tmp_path / "not-mounted")
    empty_dir = tmp_path / "mount-point"
    empty_dir.mkdir()
    for storage in (absent, FileSystemStorage(location=empty_dir)):
        assert not storage_root_present(storage)
        result = read(storage, "products/1/a.png", OLD)
        assert result.outcome is Out.UNAVAILABLE
        assert "root is not there" in result.detail


def test_disk_read_error_is_an_outage(disk):
    Path(disk.path("products/1/dir.png")).mkdir()
    result = read(disk, "products/1/dir.png", OLD)
    assert result.outcome is Out.UNAVAILABLE
    assert "IsADirectoryError" in result.detail


# --- on a real S3 server (moto) ------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


def bucket_storage(endpoint_url: str, bucket: str, location: str = "media") -> S3Storage:
    return S3Storage(
        bucket_name=bucket,
        location=location,
        endpoint_url=endpoint_url,
        region_name=REGION,
        access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        # One attempt, short timeouts: the retrying is the encode task's.
        client_config=Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1}),
    )


def test_s3_reads_and_tells_missing_from_not_stored_yet(s3):
    storage = bucket_storage(s3.endpoint_url, s3.bucket)
    name = storage.save("products/7/a.png", ContentFile(b"png bytes"))
    assert read(storage, name, OLD).data == b"png bytes"
    assert read(storage, "products/7/gone.png", FRESH).outcome is Out.NOT_STORED_YET
    assert read(storage, "products/7/gone.png", OLD).outcome is Out.MISSING


def test_s3_missing_bucket_is_an_outage(s3):
    storage = bucket_storage(s3.endpoint_url, "no-such-bucket")
    assert not storage_root_present(storage)
    assert read(storage, "products/7/a.png", OLD).outcome is Out.UNAVAILABLE


def test_s3_server_that_is_down_is_an_outage_not_a_missing_file(tmp_path):
    with s3_server(tmp_path) as stopped:
        pass  # started, then stopped: nothing listens on its port any more
    storage = bucket_storage(stopped.endpoint_url, stopped.bucket)
    result = read(storage, "products/7/a.png", OLD)
    assert result.outcome is Out.UNAVAILABLE
    assert "EndpointConnectionError" in result.detail
