"""Where uploaded product images live: MEDIA_STORAGE_URL -> Django's STORAGES["default"].

- unset, empty or `file://`: FileSystemStorage under MEDIA_ROOT (the local default);
- `file:///abs/path`: FileSystemStorage under that folder (MEDIA_ROOT follows it);
- `s3://bucket[/prefix]`: django-storages' S3Storage, objects under `prefix/` in `bucket`.
  The endpoint is MEDIA_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL, else AWS's own (an
  S3-compatible server such as MinIO needs one); the region MEDIA_S3_REGION, else boto3's
  (AWS_DEFAULT_REGION, a profile). Credentials never go in the URL or the settings: boto3
  finds them (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, a profile,
  an instance role).

A plain function of an environment mapping, so it is tested without reloading settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from django.core.exceptions import ImproperlyConfigured

FILESYSTEM_BACKEND = "django.core.files.storage.FileSystemStorage"
S3_BACKEND = "storages.backends.s3.S3Storage"
# S3's rule for new buckets: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def media_storage(environ: Mapping[str, str]) -> dict[str, Any]:
    """STORAGES["default"] for the MEDIA_STORAGE_URL (and MEDIA_S3_*) in `environ`."""
    url = environ.get("MEDIA_STORAGE_URL", "").strip()
    if not url:
        return {"BACKEND": FILESYSTEM_BACKEND}
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(f"MEDIA_STORAGE_URL ({scheme}://...) takes no query or fragment")
    if scheme == "file":
        return _filesystem(parts)
    if scheme == "s3":
        return _s3(parts, environ)
    raise ImproperlyConfigured(
        f"MEDIA_STORAGE_URL has the scheme {parts.scheme!r}; "
        "use file://[/absolute/path] or s3://bucket[/prefix]"
    )


def _filesystem(parts: SplitResult) -> dict[str, Any]:
    if parts.netloc not in ("", "localhost"):
        raise ImproperlyConfigured(
            "MEDIA_STORAGE_URL file:// names a local folder: file:///absolute/path "
            "(three slashes), or file:// alone for MEDIA_ROOT"
        )
    if not parts.path.strip("/"):
        return {"BACKEND": FILESYSTEM_BACKEND}  # follows MEDIA_ROOT
    return {"BACKEND": FILESYSTEM_BACKEND, "OPTIONS": {"location": parts.path}}


def _s3(parts: SplitResult, environ: Mapping[str, str]) -> dict[str, Any]:
    if "@" in parts.netloc:
        raise ImproperlyConfigured(
            "MEDIA_STORAGE_URL must not hold credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or a profile or role) instead"
        )
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise ImproperlyConfigured(
            f"MEDIA_STORAGE_URL s3://{bucket}/...: the bucket must be 3-63 lowercase "
            "letters, digits, dots or hyphens (s3://bucket[/prefix])"
        )
    prefix = parts.path.strip("/")
    if ".." in prefix.split("/"):
        raise ImproperlyConfigured(
            "MEDIA_STORAGE_URL: the prefix after the bucket may not contain '..'"
        )
    options: dict[str, Any] = {
        "bucket_name": bucket,
        "location": prefix,
        # Like FileSystemStorage: a name already taken gets a suffix, never overwritten (an
        # upload that loses a race deletes its own file, not the winner's).
        "file_overwrite": False,
    }
    endpoint = environ.get("MEDIA_S3_ENDPOINT_URL", "") or environ.get("AWS_ENDPOINT_URL", "")
    if endpoint:
        options["endpoint_url"] = endpoint
    region = environ.get("MEDIA_S3_REGION", "")
    if region:
        options["region_name"] = region
    return {"BACKEND": S3_BACKEND, "OPTIONS": options}
