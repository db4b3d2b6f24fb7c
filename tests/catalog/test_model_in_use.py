"""Naming the CLIP model in use: `make run`'s banner and what the site reads from Redis."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from catalog.management.commands.run_local import Command
from catalog.model_in_use import RANDOM_WEIGHTS_WARNING, ModelInUse, model_in_use
from workers.encoding.registry import publish_model

TINY = ModelInUse("tiny-clip-d64-i32-s0", 64, True, "encoder")
REAL = ModelInUse("openai/clip-vit-base-patch32", 512, False, "encoder")


def banner(model: ModelInUse, settings) -> str:
    settings.CLIP_MODEL = "openai/clip-vit-base-patch32"
    out = io.StringIO()
    Command(stdout=out)._banner(8000, 5555, {}, None, Path("data/supervisord.conf"), model)
    return out.getvalue()


def test_banner_names_the_random_model_with_a_warning(settings):
    text = banner(TINY, settings)
    assert "CLIP model   tiny-clip-d64-i32-s0 (dim 64)" in text
    assert f"WARNING: {RANDOM_WEIGHTS_WARNING}" in text
    assert '"A real CLIP model"' in text  # where to read how to get a real one


def test_banner_names_a_real_model_without_warning(settings):
    text = banner(REAL, settings)
    assert "CLIP model   openai/clip-vit-base-patch32 (dim 512)" in text
    assert "WARNING" not in text


def test_banner_says_when_no_encoder_has_loaded_the_model(settings):
    text = banner(ModelInUse("openai/clip-vit-base-patch32", None, None, "configured"), settings)
    assert "not loaded yet (CLIP_MODEL=openai/clip-vit-base-patch32)" in text


def test_model_in_use_reads_what_the_encoder_published(redis_client, settings):
    settings.CLIP_MODEL = "some/configured-model"
    assert model_in_use(redis_client) == ModelInUse(
        "some/configured-model", None, None, "configured"
    )
    publish_model(redis_client, "tiny-clip-d64-i32-s0", 64, random_weights=True)
    found = model_in_use(redis_client)
    assert found == TINY
    assert found.warning == RANDOM_WEIGHTS_WARNING
    assert model_in_use(redis_client).as_dict()["warning"] == RANDOM_WEIGHTS_WARNING


@pytest.mark.parametrize("model", [REAL, ModelInUse("x", 8, None, "encoder")])
def test_no_warning_unless_the_weights_are_random(model):
    assert model.warning is None


@pytest.mark.django_db
def test_admin_search_health_names_the_model(
    client, django_user_model, redis_client, settings, monkeypatch
):
    settings.CLIP_MODEL = "openai/clip-vit-base-patch32"
    # No shard worker runs here: skip the page's 3 s wait for each shard's stats.
    monkeypatch.setattr("catalog.admin_views.shard_rows", list)
    admin = django_user_model.objects.create_user("ops", password="pw-ops-123", is_staff=True)
    client.force_login(admin)
    page = client.get("/admin/search-health/").content.decode()
    assert "<code>openai/clip-vit-base-patch32</code>" in page
    assert "no encode worker has said" in page
    assert 'id="model-warning"' not in page
    publish_model(redis_client, "tiny-clip-d64-i32-s0", 64, random_weights=True)
    page = client.get("/admin/search-health/").content.decode()
    assert "<code>tiny-clip-d64-i32-s0</code> (dim 64)" in page
    assert RANDOM_WEIGHTS_WARNING in page
