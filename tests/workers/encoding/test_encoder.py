"""ClipEncoder on the tiny model: shapes, normalisation, batching, the pipeline, fallback."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from workers.encoding.device import choose_placement
from workers.encoding.encoder import ClipEncoder, l2_normalise, load_encoder_with_fallback
from workers.encoding.errors import ImageRejected
from workers.encoding.hf_compat import features_tensor
from workers.encoding.images import load_image_bytes
from workers.encoding.pipeline import EncodedItem, FailedItem

from .conftest import gradient_image

TEXTS = [
    "red leather ankle boots",
    "",
    "a very long product description that goes on and on " * 12,
    "blue",
    "Ünïcödé 漢字 👢",
    "white cotton shirt for summer",
]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def _check_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_image_embeddings_are_unit_float32_rows(encoder: ClipEncoder) -> None:
    images = [gradient_image(i) for i in range(7)]
    vectors = encoder.encode_images(images)
    _check_unit_rows(vectors, 7, encoder.dim)
    assert encoder.dim == 64
    assert encoder.model_name == "tiny-clip-d64-i32-s0"
    # different pictures, different vectors
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3


def test_text_embeddings_are_unit_float32_rows(encoder: ClipEncoder) -> None:
    vectors = encoder.encode_texts(TEXTS)
    _check_unit_rows(vectors, len(TEXTS), encoder.dim)
    assert np.abs(vectors[0] - vectors[3]).max() > 1e-3


def test_empty_inputs_give_empty_arrays(encoder: ClipEncoder) -> None:
    for vectors in (encoder.encode_images([]), encoder.encode_texts([])):
        assert vectors.shape == (0, encoder.dim)
        assert vectors.dtype == np.float32


def test_batches_equal_one_by_one(encoder: ClipEncoder) -> None:
    images = [gradient_image(i, size=(40 + 3 * i, 30 + i)) for i in range(9)]  # 9 = 2 batches + 1
    batched = encoder.encode_images(images)
    single = np.concatenate([encoder.encode_images([img]) for img in images])
    np.testing.assert_allclose(batched, single, atol=1e-5)

    batched_texts = encoder.encode_texts(TEXTS)  # sorted by length and padded inside
    single_texts = np.concatenate([encoder.encode_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(batched_texts, single_texts, atol=1e-5)


def test_texts_longer_than_the_context_are_truncated(encoder: ClipEncoder) -> None:
    long = "boots " * 200
    longer = long + "and a hat at the very end"
    vectors = encoder.encode_texts([long, longer])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_zero_rows_stay_zero_when_normalised() -> None:
    features = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.bfloat16)
    out = l2_normalise(features)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), [[0.6, 0.8], [0.0, 0.0]], atol=1e-6)


def test_features_from_transformers_4_and_5_outputs() -> None:
    tensor = torch.ones(2, 3)
    assert features_tensor(tensor) is tensor  # transformers 4
    wrapped = BaseModelOutputWithPooling(
        last_hidden_state=torch.zeros(2, 5, 3), pooler_output=tensor
    )
    assert features_tensor(wrapped) is tensor  # transformers 5
    assert features_tensor((torch.zeros(2, 5, 3), tensor)) is tensor  # return_dict=False
    with pytest.raises(TypeError):
        features_tensor({"nothing": 1})


def test_placement() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    auto = choose_placement()
    assert auto.device.type == expected
    assert auto.dtype == (torch.float16 if expected == "cuda" else torch.float32)
    assert choose_placement("cpu", bf16=True).dtype == torch.bfloat16
    assert choose_placement("cuda").dtype == torch.float16  # no GPU needed to decide
    assert choose_placement("cpu", compile=True).describe() == "cpu float32 compiled"


def test_bf16_weights_stay_close_to_fp32(tiny_clip_dir: Path, encoder: ClipEncoder) -> None:
    bf16 = ClipEncoder.load(str(tiny_clip_dir), device="cpu", bf16=True)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    images = [gradient_image(i) for i in range(4)]
    for ours, ref in (
        (bf16.encode_images(images), encoder.encode_images(images)),
        (bf16.encode_texts(TEXTS), encoder.encode_texts(TEXTS)),
    ):
        _check_unit_rows(ours, len(ref), 64)
        assert (ours * ref).sum(axis=1).min() > 0.98


def test_pipeline_reports_bad_sources_and_encodes_the_rest(encoder: ClipEncoder) -> None:
    images = [gradient_image(i) for i in range(10)]
    sources = [_png(img) for img in images]
    sources[1] = b"this is a text file named photo.jpg"
    jpeg = _jpeg(images[5])
    sources[5] = jpeg[: len(jpeg) // 2]  # truncated
    sources[6] = jpeg[: len(jpeg) // 2]  # a second failure in the same batch
    results = list(encoder.encode_image_sources(sources, lambda data: load_image_bytes(data)))

    assert [r.index for r in results] == list(range(10))  # one result per source, in order
    failed = {r.index: r for r in results if isinstance(r, FailedItem)}
    assert {i: (f.reason_code, f.transient) for i, f in failed.items()} == {
        1: ("unsupported_format", False),
        5: ("truncated", False),
        6: ("truncated", False),
    }
    assert failed[1].source == sources[1]
    encoded = [r for r in results if isinstance(r, EncodedItem)]
    good = [i for i in range(10) if i not in failed]
    assert [r.index for r in encoded] == good
    expected = encoder.encode_images([images[i] for i in good])
    np.testing.assert_allclose(np.stack([r.vector for r in encoded]), expected, atol=1e-5)
    assert encoded[0].sha256 is not None
    assert len(encoded[0].sha256) == 64
    assert (encoded[0].width, encoded[0].height, encoded[0].format) == (64, 48, "PNG")


def test_pipeline_survives_unexpected_errors_and_bare_images(encoder: ClipEncoder) -> None:
    images = {f"img{i}": gradient_image(i) for i in range(5)}

    def load(key: str) -> Image.Image:
        if key == "boom":
            raise RuntimeError("storage exploded")
        if key == "slow-net":
            raise ImageRejected("timeout", "no answer", True)
        return images[key]

    keys = ["img0", "boom", "img1", "slow-net", "img2", "img3", "img4"]
    results = list(encoder.encode_image_sources(iter(keys), load, batch_size=2, threads=3))
    assert [r.source for r in results] == keys
    boom, slow = results[1], results[3]
    assert isinstance(boom, FailedItem)
    assert (boom.reason_code, boom.transient) == ("load_failed", False)
    assert "storage exploded" in boom.message
    assert isinstance(slow, FailedItem)
    assert (slow.reason_code, slow.transient) == ("timeout", True)
    vectors = np.stack([r.vector for r in results if isinstance(r, EncodedItem)])
    expected = encoder.encode_images([images[f"img{i}"] for i in range(5)])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert all(r.sha256 is None for r in results if isinstance(r, EncodedItem))


def test_pipeline_with_only_failures_and_with_nothing(encoder: ClipEncoder) -> None:
    results = list(encoder.encode_image_sources([b"", b"x"], lambda d: load_image_bytes(d)))
    assert [type(r) for r in results] == [FailedItem, FailedItem]
    assert list(encoder.encode_image_sources([], lambda d: load_image_bytes(d))) == []


def test_fallback_builds_the_tiny_model_with_a_loud_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fallback = tmp_path / "fallback"
    with caplog.at_level(logging.WARNING, logger="workers.encoding.encoder"):
        enc = load_encoder_with_fallback("openai/clip-vit-base-patch32", fallback, batch_size=3)
    assert enc.model_name == "tiny-clip-d64-i32-s0"
    assert enc.batch_size == 3
    assert (fallback / "config.json").is_file()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("FALLING BACK" in r.getMessage() for r in warnings)
    _check_unit_rows(enc.encode_texts(["boots"]), 1, 64)


def test_fallback_not_used_when_the_model_loads(
    tiny_clip_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="workers.encoding.encoder"):
        enc = load_encoder_with_fallback(str(tiny_clip_dir), tmp_path / "unused")
    assert enc.model_name == "tiny-clip-d64-i32-s0"
    assert not (tmp_path / "unused").exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_explicit_model_name_wins(tiny_clip_dir: Path) -> None:
    enc = ClipEncoder.load(str(tiny_clip_dir), model_name="catalog-clip-v1")
    assert enc.model_name == "catalog-clip-v1"
