"""The model record the encode workers publish: written whole, read back checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workers.encoding.encoder import ClipEncoder
from workers.encoding.registry import (
    MODEL_KEY,
    PublishedModel,
    publish_model,
    published_encoder,
    published_model,
)


def test_round_trip(redis_client) -> None:
    assert published_encoder(redis_client) is None
    publish_model(redis_client, "tiny-clip-d64-i32-s0", 64, random_weights=True)
    assert published_encoder(redis_client) == PublishedModel("tiny-clip-d64-i32-s0", 64, True)
    assert published_model(redis_client) == ("tiny-clip-d64-i32-s0", 64)
    publish_model(redis_client, "openai/clip-vit-base-patch32", 512, random_weights=False)
    assert published_encoder(redis_client).random_weights is False


def test_a_record_without_the_flag_says_nothing_about_the_weights(redis_client) -> None:
    """What an encoder from before the flag wrote: readable, the weights not known."""
    redis_client.hset(MODEL_KEY, mapping={"name": "openai/clip-vit-base-patch32", "dim": 512})
    assert published_encoder(redis_client) == PublishedModel(
        "openai/clip-vit-base-patch32", 512, None
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "m", "dim": "x", "random_weights": 0},
        {"name": "m", "dim": 0, "random_weights": 0},
        {"name": "m", "dim": -3, "random_weights": 1},
        {"name": "", "dim": 64, "random_weights": 1},
        {"name": b"\xff\xfe", "dim": 64, "random_weights": 1},
        {"name": "m", "dim": 64, "random_weights": "yes"},
        {"name": "m", "dim": 64, "random_weights": 2},
        {"dim": 64, "random_weights": 1},
    ],
)
def test_malformed_records_are_not_trusted(redis_client, fields) -> None:
    redis_client.hset(MODEL_KEY, mapping=fields)
    assert published_encoder(redis_client) is None
    assert published_model(redis_client) is None


def test_the_tiny_clip_says_its_weights_are_random(tiny_clip_dir: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_clip_dir / "config.json").read_text())
    assert config["random_weights"] is True
    assert ClipEncoder.load(str(tiny_clip_dir)).random_weights is True
    # A checkpoint without the flag (every real one) is taken as trained.
    trained = tmp_path / "trained"
    shutil.copytree(tiny_clip_dir, trained)
    del config["random_weights"]
    (trained / "config.json").write_text(json.dumps(config))
    assert ClipEncoder.load(str(trained)).random_weights is False
