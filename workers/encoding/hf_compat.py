"""What differs between transformers 4 and 5 for CLIP, in one place."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers.image_processing_utils import BaseImageProcessor


def image_processor_class() -> type[BaseImageProcessor]:
    """The CLIP image processor class to instantiate.

    transformers 5 made `CLIPImageProcessor` depend on torchvision and, without it,
    falls back to the PIL backend with a warning on every load. Asking for the PIL
    backend directly gives the same processing without the warning; transformers 4
    has only the one (numpy/PIL) class.
    """
    if importlib.util.find_spec("torchvision") is None:
        try:
            from transformers import CLIPImageProcessorPil
        except ImportError:  # transformers 4
            pass
        else:
            return CLIPImageProcessorPil
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor


def features_tensor(output: object) -> torch.Tensor:
    """The projected embedding from `get_image_features` / `get_text_features`.

    transformers 4 returns the tensor itself; transformers 5 returns an output
    object whose `pooler_output` holds it (or a tuple when return_dict is off).
    """
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], torch.Tensor):
        return output[1]
    raise TypeError(f"cannot find the embedding in a {type(output).__name__}")
