"""Randomly initialised CLIP checkpoints that load offline with `from_pretrained(dir)`.

Model weights cannot be downloaded on this machine, so tests and offline runs use a
tiny CLIP built here, and the benchmark uses the real ViT-B/32 architecture with
random weights (the same compute as the real model). The tokenizer is a byte-level
BPE built in memory, so nothing is fetched from the hub.

    python -m workers.encoding.tiny_clip DIR [--vit-b32] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from itertools import pairwise
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig
from transformers.image_processing_utils import BaseImageProcessor

from workers.encoding.hf_compat import image_processor_class

log = logging.getLogger(__name__)

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END_OF_WORD = "</w>"
MAX_TEXT_TOKENS = 77
MARKER = "tiny_clip.json"  # build parameters, so an existing directory can be reused

# Words the byte-level BPE learns its merges from: enough to make merges real.
_MERGE_CORPUS_TEXT = (
    "a photo of the red blue green black white leather cotton wool shoes boots "
    "sneakers shirt dress jacket coat bag watch lamp chair table sofa phone case "
    "ring necklace women men kids running ankle summer winter product"
)


def byte_alphabet() -> list[str]:
    """One printable character per byte value, as byte-level BPE tokenizers use.

    Printable Latin-1 bytes stand for themselves; the others map to code points
    from 256 upwards, so every byte has a visible, reversible symbol.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    kept = set(printable)
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in kept:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _learn_merges(words: list[str], n_merges: int) -> list[tuple[str, str]]:
    """A few BPE merges learnt greedily from `words` (ties broken by the pair, so deterministic)."""
    alphabet = byte_alphabet()
    seqs = []
    for word in words:
        symbols = [alphabet[b] for b in word.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        seqs.append(symbols)
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for seq in seqs:
            pairs.update(pairwise(seq))
        if not pairs:
            break
        best = max(pairs.items(), key=lambda item: (item[1], item[0]))[0]
        merges.append(best)
        joined = best[0] + best[1]
        for i, seq in enumerate(seqs):
            out: list[str] = []
            j = 0
            while j < len(seq):
                if j + 1 < len(seq) and (seq[j], seq[j + 1]) == best:
                    out.append(joined)
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            seqs[i] = out
    return merges


def build_tokenizer(n_merges: int = 64) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer from an in-memory vocabulary: every byte, every
    byte at a word end, the learnt merges, then the start and end tokens."""
    alphabet = byte_alphabet()
    merges = _learn_merges(_MERGE_CORPUS_TEXT.split(), n_merges)
    tokens = [*alphabet, *(s + END_OF_WORD for s in alphabet)]
    tokens += [a + b for a, b in merges]
    tokens += [BOS, EOS]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(
        vocab=vocab,
        # tokenizers' BPE takes (left, right) pairs; transformers' hint names only strings
        merges=merges,  # type: ignore[arg-type]
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_TEXT_TOKENS,
    )


def _image_processor(image_size: int) -> BaseImageProcessor:
    return image_processor_class()(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )


def _save(
    directory: Path,
    config: CLIPConfig,
    tokenizer: CLIPTokenizer,
    image_size: int,
    seed: int,
    params: dict[str, object],
) -> Path:
    """Initialise with `seed` and save model, tokenizer and processor to `directory`.

    Written to a temporary sibling and renamed, so a reader never sees a half-written
    checkpoint; an existing directory built with the same parameters is reused.
    """
    directory = Path(directory)
    if _existing_matches(directory, params):
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    staging.chmod(0o755)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPModel(config).eval()
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _image_processor(image_size).save_pretrained(staging)
        (staging / MARKER).write_text(json.dumps(params, sort_keys=True))
        if directory.exists():
            shutil.rmtree(directory)
        try:
            os.rename(staging, directory)
        except OSError:
            # Another process finished the same deterministic build first.
            if not _existing_matches(directory, params):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("built %s in %s", params["name"], directory)
    return directory


def _existing_matches(directory: Path, params: dict[str, object]) -> bool:
    try:
        return json.loads((directory / MARKER).read_text()) == params
    except (OSError, ValueError):
        return False


def build_tiny_clip(directory: Path, *, image_size: int = 32, dim: int = 64, seed: int = 0) -> Path:
    """Build a tiny random CLIP (2 layers per tower, `dim` wide) into `directory`.

    Deterministic: the same arguments give the same weights. Its stable model name
    (stored in the config as `encoder_name`) is `tiny-clip-d{dim}-i{image_size}-s{seed}`;
    the config also says `random_weights: true`, which the encoders publish, so the
    site can warn that its results mean nothing.
    """
    if not 32 <= image_size <= 64 or image_size % 8:
        raise ValueError("image_size must be a multiple of 8 between 32 and 64")
    if dim < 8 or dim % 2:
        raise ValueError("dim must be an even number >= 8")
    tokenizer = build_tokenizer()
    name = f"tiny-clip-d{dim}-i{image_size}-s{seed}"
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": dim,
            "intermediate_size": dim * 2,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": MAX_TEXT_TOKENS,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": dim,
            "intermediate_size": dim * 2,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=dim,
    )
    config.encoder_name = name
    config.random_weights = True
    params = {
        "name": name,
        "image_size": image_size,
        "dim": dim,
        "seed": seed,
        "random_weights": True,
    }
    return _save(directory, config, tokenizer, image_size, seed, params)


def build_vit_b32_random(directory: Path, *, seed: int = 0) -> Path:
    """The openai/clip-vit-base-patch32 architecture with random weights (151 M parameters).

    Same compute as the real model, for benchmarks. The token embedding keeps the
    real 49408 rows; only the first ones are reachable from the small tokenizer.
    """
    tokenizer = build_tokenizer()
    name = f"clip-vit-b32-random-s{seed}"
    config = CLIPConfig()  # the defaults are ViT-B/32
    text, vision = config.text_config, config.vision_config
    if not isinstance(text, CLIPTextConfig) or not isinstance(vision, CLIPVisionConfig):
        raise TypeError("CLIPConfig() builds its text and vision configs")
    if not isinstance(vision.image_size, int):
        raise TypeError(f"ViT-B/32's image size is one number, not {vision.image_size!r}")
    text.bos_token_id = tokenizer.bos_token_id
    text.eos_token_id = tokenizer.eos_token_id
    text.pad_token_id = tokenizer.pad_token_id
    config.encoder_name = name
    config.random_weights = True
    params = {"name": name, "seed": seed, "random_weights": True}
    return _save(directory, config, tokenizer, vision.image_size, seed, params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--vit-b32", action="store_true", help="full ViT-B/32 size, random")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.vit_b32:
        path = build_vit_b32_random(args.directory, seed=args.seed)
    else:
        path = build_tiny_clip(
            args.directory, image_size=args.image_size, dim=args.dim, seed=args.seed
        )
    print(path)


if __name__ == "__main__":
    main()
