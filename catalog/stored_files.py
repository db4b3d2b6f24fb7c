"""Reading a stored image back from media storage, and what a failed read means.

Encode workers may run on other hosts than the web that stored the file, reading a shared
volume or a bucket (MEDIA_STORAGE_URL). A read that fails there is one of two things:

- the storage answered that the file does not exist: missing for good once the image row
  is older than MEDIA_MISSING_AFTER_S, but before that it may still be on its way (a
  replicated volume or bucket), so it is retried as not stored yet;
- the storage did not answer (OSError, an S3 error other than 404, a connection error or
  a timeout), or its root is not there at all (an unmounted volume, a missing bucket):
  retried whatever the image's age, since an outage says nothing about the file.

Anything else (a bad name, a bug) is not a storage failure and propagates.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from datetime import datetime

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.storage import FileSystemStorage, Storage
from django.utils import timezone
from s3transfer.exceptions import RetriesExceededError

# What the S3 API calls an object that is not there (HEAD answers a bare "404").
_S3_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # FileNotFoundError is told apart first
    BotoCoreError,  # connection refused or closed, connect and read timeouts, no credentials
    ClientError,  # S3 said no: 403, 500, 503 SlowDown, ... (404 is told apart first)
    Boto3Error,
    RetriesExceededError,  # s3transfer gave up re-reading a body that broke off
)


class StoredFileOutcome(enum.StrEnum):
    """How a read of a stored file ended; the values are the encoders' reason codes."""

    READ = "read"
    NOT_STORED_YET = "not_stored_yet"  # not there, but the row is young: retry
    MISSING = "missing_file"  # not there, and the row is old: permanent
    UNAVAILABLE = "storage_unavailable"  # the storage failed to answer: retry

    @property
    def transient(self) -> bool:
        return self in (StoredFileOutcome.NOT_STORED_YET, StoredFileOutcome.UNAVAILABLE)


@dataclass(frozen=True)
class StoredFileRead:
    outcome: StoredFileOutcome
    data: bytes = b""
    detail: str = ""  # why, for the image's error and the product's index_error


def says_not_found(exc: BaseException) -> bool:
    """Whether the storage answered that the file does not exist."""
    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) in _S3_NOT_FOUND
    return False


def classify_read_error(
    exc: BaseException, *, age_s: float, missing_after_s: float, root_present: bool = True
) -> StoredFileOutcome | None:
    """The outcome of a read that raised `exc`; None when it is no storage failure.

    `age_s`: seconds since the image row was saved; `root_present`: whether the storage's
    root (the media folder, the bucket) is there, asked only after a not-found answer.
    """
    if says_not_found(exc):
        if not root_present:
            return StoredFileOutcome.UNAVAILABLE
        if age_s < missing_after_s:
            return StoredFileOutcome.NOT_STORED_YET
        return StoredFileOutcome.MISSING
    if isinstance(exc, STORAGE_ERRORS):
        return StoredFileOutcome.UNAVAILABLE
    return None


def storage_root_present(storage: Storage) -> bool:
    """Whether the storage's root is there: a non-empty media folder, an existing bucket.

    An unmounted volume leaves an empty folder (or none) behind, in which every file
    would look missing. Storages of other kinds are taken to be there.
    """
    if isinstance(storage, FileSystemStorage):
        try:
            with os.scandir(storage.location) as entries:
                return any(True for _ in entries)
        except OSError:
            return False
    bucket = getattr(storage, "bucket", None)  # django-storages' S3Storage
    if bucket is not None:
        try:
            bucket.meta.client.head_bucket(Bucket=bucket.name)
        except STORAGE_ERRORS:
            return False
    return True


def read_stored_file(
    storage: Storage,
    name: str,
    *,
    max_bytes: int,
    saved_at: datetime,
    missing_after_s: float,
    now: datetime | None = None,
) -> StoredFileRead:
    """Read up to `max_bytes` of `name` from `storage`, or say why not (see the module)."""
    try:
        with storage.open(name, "rb") as handle:
            data = handle.read(max_bytes)
    except Exception as exc:
        age_s = ((now or timezone.now()) - saved_at).total_seconds()
        root_present = storage_root_present(storage) if says_not_found(exc) else True
        outcome = classify_read_error(
            exc, age_s=age_s, missing_after_s=missing_after_s, root_present=root_present
        )
        if outcome is None:
            raise
        detail = _detail(outcome, name, exc, age_s, missing_after_s, root_present)
        return StoredFileRead(outcome, detail=detail)
    return StoredFileRead(StoredFileOutcome.READ, data)


def _detail(
    outcome: StoredFileOutcome,
    name: str,
    exc: BaseException,
    age_s: float,
    missing_after_s: float,
    root_present: bool,
) -> str:
    if not root_present:
        return f"media storage root is not there (an unmounted volume, no bucket?) reading {name}"
    if outcome is StoredFileOutcome.MISSING:
        return f"stored file {name} is missing ({age_s:.0f} s after the image was saved)"
    if outcome is StoredFileOutcome.NOT_STORED_YET:
        return (
            f"stored file {name} is not in storage yet ({age_s:.0f} s after the image was "
            f"saved; missing after {missing_after_s:.0f} s)"
        )
    return f"media storage could not read {name}: {type(exc).__name__}: {exc}"
