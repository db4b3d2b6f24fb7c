"""The CLIP encoder: loaded once per worker process, then asked for embeddings.

Every embedding leaves as a row of a C-contiguous float32 array, L2-normalised
on the device (a zero vector stays zero rather than becoming NaN) and moved to
the CPU once per batch.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoTokenizer, CLIPModel, CLIPTextConfig

from workers.config.encoding import DEFAULT_INPUT_SIDE, ImageLimits
from workers.encoding.device import Placement, choose_placement
from workers.encoding.hf_compat import features_tensor, image_processor_class
from workers.encoding.images import LoadedImage, check_dimensions
from workers.encoding.pipeline import EncodedItem, FailedItem, run_pipeline

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
T = TypeVar("T")

_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".", 1)[0])


def l2_normalise(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length in float32, on the features' own device; zero rows stay zero."""
    features = features.float()
    norms = torch.linalg.vector_norm(features, dim=-1, keepdim=True)
    return features / norms.clamp_min(1e-12)


class ClipEncoder:
    """Image and text embeddings from one CLIP model held in memory.

    Build it with `ClipEncoder.load(...)` once per process and hand it to what
    needs it. Encoding methods are safe to call from one thread at a time.
    """

    def __init__(
        self,
        model: CLIPModel,
        image_processor: object,
        tokenizer: object,
        *,
        placement: Placement,
        model_name: str,
        batch_size: int = 32,
        loader_threads: int = 2,
        limits: ImageLimits | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.placement = placement
        self.batch_size = batch_size
        self.loader_threads = loader_threads
        self._model_name = model_name
        # The resize caps, with the shortest side this model's processor really resizes to.
        self.limits = replace(limits or ImageLimits(), input_side=_input_side(image_processor))
        text_config = model.config.text_config
        if model.config.projection_dim is None or not isinstance(text_config, CLIPTextConfig):
            raise ValueError("a CLIP config names its projection_dim and text config")
        self._dim = int(model.config.projection_dim)
        # Set by workers/encoding/tiny_clip.py on the checkpoints it initialises at random.
        self._random_weights = bool(getattr(model.config, "random_weights", False))
        self._max_text_tokens = int(text_config.max_position_embeddings)
        self._pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
        self._image_fn: Callable[..., object] = model.get_image_features
        self._text_fn: Callable[..., object] = model.get_text_features
        if placement.compile:
            self._image_fn = torch.compile(self._image_fn, dynamic=True)
            self._text_fn = torch.compile(self._text_fn, dynamic=True)

    @classmethod
    def load(
        cls,
        name_or_path: str = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        bf16: bool = False,
        compile: bool = False,
        batch_size: int = 32,
        model_name: str | None = None,
        loader_threads: int = 2,
        local_files_only: bool = False,
        limits: ImageLimits | None = None,
    ) -> ClipEncoder:
        """Load model, image processor and tokenizer with `from_pretrained`.

        `name_or_path` is a hub name or a local directory (offline it must be one
        already on disk). The stable `model_name` recorded with every embedding is,
        in order: the argument, the `encoder_name` a locally built checkpoint keeps
        in its config, or `name_or_path`.
        """
        placement = choose_placement(device, bf16=bf16, compile=compile)
        if _TRANSFORMERS_MAJOR >= 5:
            model = CLIPModel.from_pretrained(
                name_or_path, local_files_only=local_files_only, dtype=placement.dtype
            )
        else:
            model = CLIPModel.from_pretrained(
                name_or_path, local_files_only=local_files_only, torch_dtype=placement.dtype
            )
        # transformers 5 wraps PreTrainedModel.to in a decorator whose type drops `self`
        model = model.to(placement.device)  # type: ignore[arg-type]
        model = model.eval().requires_grad_(False)
        image_processor = image_processor_class().from_pretrained(
            name_or_path, local_files_only=local_files_only
        )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
        name = model_name or getattr(model.config, "encoder_name", None) or str(name_or_path)
        log.info(
            "loaded CLIP %s (dim %d) on %s",
            name,
            model.config.projection_dim,
            placement.describe(),
        )
        return cls(
            model,
            image_processor,
            tokenizer,
            placement=placement,
            model_name=name,
            batch_size=batch_size,
            loader_threads=loader_threads,
            limits=limits,
        )

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def random_weights(self) -> bool:
        """Whether the checkpoint says it was initialised at random (embeddings mean nothing)."""
        return self._random_weights

    # -- images ---------------------------------------------------------------

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Resize, crop and normalise to the model's input: float32 (n, 3, H, W).

        Refuses (ImageRejected) an image whose resize would cost too much, however it
        got here: the loaders check the same limits, this is the last line.
        """
        for image in images:
            check_dimensions(image.width, image.height, self.limits)
        out = self.image_processor(images=list(images), return_tensors="np")  # type: ignore[operator]
        return np.ascontiguousarray(out["pixel_values"], dtype=np.float32)

    def encode_pixels(self, pixel_values: np.ndarray | torch.Tensor) -> np.ndarray:
        """One forward pass over preprocessed pixels: float32 (n, dim), unit rows."""
        pixels = torch.as_tensor(pixel_values)
        with torch.inference_mode():
            pixels = pixels.to(self.placement.device, self.placement.dtype)
            features = features_tensor(self._image_fn(pixel_values=pixels))
            return _to_numpy(l2_normalise(features))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embeddings of already decoded RGB images, in batches of `batch_size`."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            out[start : start + len(batch)] = self.encode_pixels(self.preprocess(batch))
        return out

    def encode_image_sources(
        self,
        sources: Iterable[T],
        load: Callable[[T], Image.Image | LoadedImage],
        *,
        batch_size: int | None = None,
        threads: int | None = None,
    ) -> Iterator[EncodedItem[T] | FailedItem[T]]:
        """Load, preprocess and encode `sources`, one result per source in input order.

        `load` runs in a small thread pool together with preprocessing, overlapping
        the forward pass of the previous batch. A source whose `load` raises becomes
        a FailedItem (ImageRejected keeps its reason code and transient flag) and the
        rest of its batch is encoded as usual.
        """
        return run_pipeline(
            self,
            sources,
            load,
            batch_size=batch_size or self.batch_size,
            threads=threads or self.loader_threads,
        )

    # -- texts ----------------------------------------------------------------

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of texts (truncated to the model's 77 tokens), in batches.

        Texts are tokenised once, grouped by length so that batches carry little
        padding, and written back in the order given.
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer(  # type: ignore[operator]
            list(texts), truncation=True, max_length=self._max_text_tokens
        )["input_ids"]
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            input_ids, mask = self._pad([encoded[i] for i in rows])
            with torch.inference_mode():
                features = features_tensor(
                    self._text_fn(
                        input_ids=input_ids.to(self.placement.device),
                        attention_mask=mask.to(self.placement.device),
                    )
                )
                out[rows] = _to_numpy(l2_normalise(features))
        return out

    def _pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(seq) for seq in sequences)
        ids = torch.full((len(sequences), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids, mask


def _input_side(image_processor: object) -> int:
    """The shortest side the processor resizes to (CLIP: size={"shortest_edge": 224})."""
    for attr in ("size", "crop_size"):
        size = getattr(image_processor, attr, None)
        if size is None:
            continue
        if isinstance(size, int):
            return size
        get = getattr(size, "get", None)
        for key in ("shortest_edge", "height"):
            value = get(key) if get is not None else getattr(size, key, None)
            if isinstance(value, int) and value > 0:
                return value
    return DEFAULT_INPUT_SIDE


def _to_numpy(features: torch.Tensor) -> np.ndarray:
    """The one device-to-host copy of a batch."""
    return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)


def _hub_reachable(timeout: float) -> bool:
    """Whether the model hub answers a TCP connect quickly: offline, from_pretrained
    would otherwise spend about half a minute retrying before it gives up."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_encoder_with_fallback(
    name: str,
    fallback_dir: str | os.PathLike[str],
    *,
    hub_timeout: float = 3.0,
    **load_kwargs: object,
) -> ClipEncoder:
    """The model `name` when it can be loaded (local directory, hub cache, or the hub);
    otherwise the tiny random CLIP in `fallback_dir`, built there if missing.

    The fallback logs a loud WARNING: its embeddings are random projections, so
    search results are meaningless, but everything else works offline.
    """
    error: str
    try:
        if Path(name).is_dir():
            return ClipEncoder.load(name, **load_kwargs)  # type: ignore[arg-type]
        try:
            return ClipEncoder.load(name, local_files_only=True, **load_kwargs)  # type: ignore[arg-type]
        except OSError:
            if not _hub_reachable(hub_timeout):
                raise OSError(f"{name} is not cached and the model hub is unreachable") from None
            return ClipEncoder.load(name, **load_kwargs)  # type: ignore[arg-type]
    except Exception as exc:  # any failure to load means: fall back, loudly
        error = f"{type(exc).__name__}: {exc}"
    from workers.encoding.tiny_clip import build_tiny_clip

    banner = "!" * 78
    log.warning(
        "\n%s\nCLIP model %r could not be loaded (%s).\nFALLING BACK to the tiny RANDOM CLIP "
        "in %s: embeddings carry no meaning and search results will be nonsense.\n%s",
        banner,
        name,
        error.splitlines()[0][:300],
        fallback_dir,
        banner,
    )
    path = Path(fallback_dir)
    if not (path / "config.json").is_file():
        build_tiny_clip(path)
    return ClipEncoder.load(str(path), **load_kwargs)  # type: ignore[arg-type]
