"""MEDIA_STORAGE_URL -> STORAGES["default"]: parsed by a plain function, checked at boot."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from storages.backends.s3 import S3Storage

from searchsite.media_storage import FILESYSTEM_BACKEND, S3_BACKEND, media_storage
from tests.searchsite.test_settings import _manage, _setting


@pytest.mark.parametrize("url", ["", "  ", "file://", "file:///", "FILE://"])
def test_unset_or_bare_file_url_is_the_local_media_root(url):
    assert media_storage({"MEDIA_STORAGE_URL": url}) == {"BACKEND": FILESYSTEM_BACKEND}
    assert media_storage({}) == {"BACKEND": FILESYSTEM_BACKEND}


def test_file_url_with_a_path_names_the_folder():
    for url in ("file:///srv/media", "file://localhost/srv/media"):
        assert media_storage({"MEDIA_STORAGE_URL": url}) == {
            "BACKEND": FILESYSTEM_BACKEND,
            "OPTIONS": {"location": "/srv/media"},
        }


def test_s3_url_gives_bucket_prefix_endpoint_and_region():
    config = media_storage(
        {
            "MEDIA_STORAGE_URL": "s3://shop-media/catalog/images/",
            "MEDIA_S3_ENDPOINT_URL": "http://minio.internal:9000",
            "AWS_ENDPOINT_URL": "http://ignored:1",
            "MEDIA_S3_REGION": "eu-central-1",
        }
    )
    assert config == {
        "BACKEND": S3_BACKEND,
        "OPTIONS": {
            "bucket_name": "shop-media",
            "location": "catalog/images",
            "file_overwrite": False,
            "endpoint_url": "http://minio.internal:9000",
            "region_name": "eu-central-1",
        },
    }
    # The options are ones django-storages' S3Storage takes (built here without a request).
    storage = S3Storage(**config["OPTIONS"])
    assert (storage.bucket_name, storage.location) == ("shop-media", "catalog/images")
    assert storage.endpoint_url == "http://minio.internal:9000"
    assert storage.file_overwrite is False


def test_s3_endpoint_falls_back_to_aws_endpoint_url_and_region_to_boto3():
    config = media_storage({"MEDIA_STORAGE_URL": "s3://media", "AWS_ENDPOINT_URL": "http://s3:1"})
    assert config["OPTIONS"] == {
        "bucket_name": "media",
        "location": "",
        "file_overwrite": False,
        "endpoint_url": "http://s3:1",
    }
    bare = media_storage({"MEDIA_STORAGE_URL": "s3://media/p"})["OPTIONS"]
    assert "endpoint_url" not in bare
    assert "region_name" not in bare


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("gs://bucket/p", "scheme 'gs'"),
        ("minio://bucket", "scheme 'minio'"),
        ("/srv/media", "scheme ''"),
        ("s3://", "the bucket must be"),
        ("s3://Bad_Bucket/p", "the bucket must be"),
        ("s3://bucket:9000/p", "the bucket must be"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3://bucket/p?region=x", "no query"),
        ("file://media", "three slashes"),
    ],
)
def test_bad_urls_are_refused_with_a_clear_message(url, says):
    with pytest.raises(ImproperlyConfigured, match=r"MEDIA_STORAGE_URL") as refused:
        media_storage({"MEDIA_STORAGE_URL": url})
    assert says in str(refused.value)


def test_credentials_in_the_url_are_refused_without_being_repeated():
    with pytest.raises(ImproperlyConfigured) as refused:
        media_storage({"MEDIA_STORAGE_URL": "s3://AKIAKEY:s3cret@bucket/p"})
    assert "AWS_ACCESS_KEY_ID" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_settings_take_the_storage_from_the_environment(tmp_path):
    storages = _setting(
        "STORAGES",
        MEDIA_STORAGE_URL="s3://shop-media/img",
        MEDIA_S3_ENDPOINT_URL="http://127.0.0.1:9",
        DATA_DIR=str(tmp_path),
    )
    assert "'BACKEND': 'storages.backends.s3.S3Storage'" in storages
    assert "'bucket_name': 'shop-media'" in storages
    assert "'endpoint_url': 'http://127.0.0.1:9'" in storages


def test_an_unknown_scheme_fails_at_boot(tmp_path):
    result = _manage("check", MEDIA_STORAGE_URL="ftp://host/media", DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "MEDIA_STORAGE_URL has the scheme 'ftp'" in result.stderr
