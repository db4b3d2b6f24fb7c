"""The tiny CLIP: built locally, saved, and loaded back offline with identical output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from workers.encoding.encoder import ClipEncoder
from workers.encoding.tiny_clip import build_tiny_clip, build_tokenizer, byte_alphabet

from .conftest import gradient_image

REPO = Path(__file__).resolve().parents[3]
TEXTS = ["a photo of red leather ankle boots", "blue cotton shirt", ""]

OFFLINE_SCRIPT = """
import json, sys
from workers.encoding.tiny_clip import main
main([sys.argv[1]])  # what `python -m workers.encoding.tiny_clip DIR` runs
from workers.encoding.encoder import ClipEncoder
enc = ClipEncoder.load(sys.argv[1])
texts = enc.encode_texts(json.loads(sys.argv[2]))
print(json.dumps({"name": enc.model_name, "dim": enc.dim, "texts": texts.tolist()}))
"""


def _run(args: list[str]) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_saved_directory_has_model_tokenizer_and_processor(tiny_clip_dir: Path) -> None:
    names = {p.name for p in tiny_clip_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
    assert "tokenizer.json" in names or "vocab.json" in names
    config = json.loads((tiny_clip_dir / "config.json").read_text())
    assert config["encoder_name"] == "tiny-clip-d64-i32-s0"
    assert config["projection_dim"] == 64


def test_cli_build_then_offline_load_in_a_fresh_process_gives_identical_embeddings(
    tmp_path: Path, encoder: ClipEncoder
) -> None:
    """Built by the command-line entry point and loaded back with the hub switched off,
    in another process: same weights as the fixture's build (same seed), same output."""
    target = tmp_path / "cli_tiny"
    lines = _run(["-c", OFFLINE_SCRIPT, str(target), json.dumps(TEXTS)]).splitlines()
    assert lines[0] == str(target)
    out = json.loads(lines[-1])
    assert out["name"] == encoder.model_name
    assert out["dim"] == encoder.dim
    np.testing.assert_allclose(
        np.asarray(out["texts"], dtype=np.float32), encoder.encode_texts(TEXTS), atol=1e-6
    )


def test_same_seed_same_weights_other_seed_different(tmp_path: Path, tiny_clip_dir: Path) -> None:
    again = load_file(str(build_tiny_clip(tmp_path / "again", seed=0) / "model.safetensors"))
    first = load_file(str(tiny_clip_dir / "model.safetensors"))
    other = load_file(str(build_tiny_clip(tmp_path / "other", seed=1) / "model.safetensors"))
    assert first.keys() == again.keys() == other.keys()
    for key, value in first.items():
        np.testing.assert_array_equal(value, again[key], err_msg=key)
    differing = [k for k, v in first.items() if not np.array_equal(v, other[k])]
    assert "visual_projection.weight" in differing


def test_reloaded_encoder_gives_identical_embeddings(
    tiny_clip_dir: Path, encoder: ClipEncoder
) -> None:
    images = [gradient_image(i) for i in range(3)]
    again = ClipEncoder.load(str(tiny_clip_dir), batch_size=encoder.batch_size)
    np.testing.assert_array_equal(again.encode_images(images), encoder.encode_images(images))
    np.testing.assert_array_equal(again.encode_texts(TEXTS), encoder.encode_texts(TEXTS))


def test_existing_build_with_same_parameters_is_reused(tiny_clip_dir: Path) -> None:
    before = (tiny_clip_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_clip(tiny_clip_dir, seed=0) == tiny_clip_dir
    assert (tiny_clip_dir / "model.safetensors").stat().st_mtime_ns == before


def test_tokenizer_covers_every_byte_and_round_trips() -> None:
    tokenizer = build_tokenizer()
    assert len(set(byte_alphabet())) == 256
    text = "red boots 4 €, 漢字 and emoji 👢"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    # merges learnt from the built-in words make common words shorter than their letters
    assert len(tokenizer("leather")["input_ids"]) < len("leather") + 2


@pytest.mark.parametrize(("image_size", "dim"), [(16, 64), (72, 64), (32, 7)])
def test_bad_sizes_are_refused(tmp_path: Path, image_size: int, dim: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        build_tiny_clip(tmp_path / "bad", image_size=image_size, dim=dim)
