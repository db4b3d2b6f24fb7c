"""What a search reads per product, cached in Redis: its card and its stored query vector.

A card is the product as the products API shows it (`product_representation`, media URLs
left relative). Building 20 cards from the database cost ~2.6 ms of CPU per search answer
(ORM query compilation, model instances, the representation), and reading the stored
embedding for "more like this" ~1 ms: together more than half of a search request's CPU,
and two database queries per search, which the reference load (10k+ QPS) should not send
to the database. Here both are read with one Redis round trip and built from the database
only on a miss, then kept for SEARCH_CARD_TTL_S.

Every write that changes what a card or vector shows forgets it
(`catalog.card_invalidation.forget`): the signal receivers in `catalog.signals` cover saves
and deletes, and the querysets of Product and ProductImage cover bulk `update()`s. They
forget right away and again once the transaction commits. A search that read the database
before a commit and stores its card after the second forget keeps the old card until its
TTL runs out: the TTL bounds that race. Writes that bypass the ORM (raw SQL, a restored
backup) are not seen either: delete the `catalog:*` keys after them (README).
Entries read back are checked like any message from Redis; a bad one is rebuilt. Reads
and writes go on the thread's own connection (`ThreadConnections`): no pool checkout and
no reply parsing a call.

A view that reads the cards' epoch token in a round trip it makes anyway (`epoch_read`,
in the rate limit's) lets `cards` answer from this process's own copies, read under that
token, without reading Redis again or decoding the cards: every forget replaces the token
(catalog/card_invalidation.py), so a copy is never older than the Redis entry it was read
from, and lives at most `LOCAL_LIFE_S`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

import msgpack
import numpy as np
import redis
from django.conf import settings

from catalog.api.representation import product_representation
from catalog.card_invalidation import CARD_PREFIX, CARDS_EPOCH_KEY, VECTOR_PREFIX
from catalog.models import Embedding, Product, ProductImage
from workers.rpc.cache import vector_from_bytes
from workers.rpc.connection import ThreadConnections

log = logging.getLogger(__name__)

_MAX_CARD_BYTES = 1 << 20
_MAX_DIM = 4096


LOCAL_LIFE_S = 30.0
LOCAL_MAX_CARDS = 10_000


class _LocalCards:
    """This process's copies of cards, each with the epoch token it was read under and
    when it expires; shared by the web's threads (single dict operations only)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[object, float, dict]] = {}

    def get(self, product_id: int, token: object, now: float) -> dict | None:
        entry = self._entries.get(product_id)
        if entry is None or entry[0] != token or entry[1] <= now:
            return None
        return entry[2]

    def put(self, found: dict[int, dict], token: object, now: float) -> None:
        expires = now + min(LOCAL_LIFE_S, settings.SEARCH_CARD_TTL_S)
        for pid, card in found.items():
            self._entries[pid] = (token, expires, card)
        while len(self._entries) > LOCAL_MAX_CARDS:
            try:
                del self._entries[next(iter(self._entries))]  # the oldest
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break


_local = _LocalCards()
_NO_TOKEN = object()  # no epoch token read: no local copies used or kept


def epoch_read() -> tuple[str, str]:
    """The command that reads the cards' epoch token, for a round trip a view makes anyway;
    give its reply to `cards`."""
    return ("GET", CARDS_EPOCH_KEY)


def cards(
    client: redis.Redis, product_ids: list[int], replies: Mapping[tuple, object] | None = None
) -> dict[int, dict]:
    """The cards of the active products among `product_ids` that have an image. The
    caller must not change them (they may be this process's shared copies).

    `replies`: raw replies already read, by command; with `epoch_read`'s among them, copies
    read under that token come from this process and only the others from Redis. Misses
    (and unreadable entries) are built from the database and stored; when Redis fails the
    cards come from the database alone.
    """
    if not product_ids:
        return {}
    found: dict[int, dict] = {}
    token = replies.get(epoch_read(), _NO_TOKEN) if replies is not None else _NO_TOKEN
    if token is None:  # none yet (a new or restarted Redis): make one for the next searches
        _new_epoch(client)
        token = _NO_TOKEN
    now = time.monotonic()
    if token is not _NO_TOKEN:
        for pid in product_ids:
            card = _local.get(pid, token, now)
            if card is not None:
                found[pid] = card
        if len(found) == len(product_ids):
            return found
    wanted = [pid for pid in product_ids if pid not in found]
    read = _read_cards(client, wanted)
    if token is not _NO_TOKEN:
        _local.put(read, token, now)
    found.update(read)
    return found


def _new_epoch(client: redis.Redis) -> None:
    try:
        ThreadConnections.of(client).send(("SET", CARDS_EPOCH_KEY, os.urandom(8).hex(), "NX"))
    except redis.RedisError as exc:
        log.warning("product cache: could not set the cards' epoch token: %s", exc)


def _read_cards(client: redis.Redis, product_ids: list[int]) -> dict[int, dict]:
    keys = [CARD_PREFIX + str(pid) for pid in product_ids]
    try:
        (stored,) = ThreadConnections.of(client).send(("MGET", *keys))
    except redis.RedisError as exc:
        log.warning("product cache: reading cards failed, using the database: %s", exc)
        return _build_cards(product_ids)
    found: dict[int, dict] = {}
    missing: list[int] = []
    for pid, raw in zip(product_ids, stored, strict=True):
        card = _decode_card(pid, raw) if raw is not None else None
        if card is None:
            missing.append(pid)
        else:
            found[pid] = card
    if missing:
        built = _build_cards(missing)
        _store(client, {CARD_PREFIX + str(pid): _pack(card) for pid, card in built.items()})
        found.update(built)
    return found


def vector_read(product_id: int) -> tuple[str, str]:
    """The command that reads a product's cached vector: a caller may send it in a round
    trip it makes anyway and give its reply to `stored_vector`."""
    return ("GET", VECTOR_PREFIX + str(product_id))


def stored_vector(
    client: redis.Redis, product_id: int, replies: Mapping[tuple, object] | None = None
) -> np.ndarray | None:
    """The active product's first stored image embedding, or None if it has none.

    `replies`: raw replies already read, by command; with `vector_read`'s among them the
    cache is not asked again."""
    read = vector_read(product_id)
    key = read[1]
    if replies is not None and read in replies:
        raw = replies[read]
    else:
        try:
            (raw,) = ThreadConnections.of(client).send(read)
        except redis.RedisError as exc:
            log.warning("product cache: reading a vector failed, using the database: %s", exc)
            raw = None
    vector = vector_from_bytes(raw, _MAX_DIM)
    if vector is not None:
        return vector
    stored = (
        Embedding.objects.filter(image__product_id=product_id, image__product__is_active=True)
        .order_by("image__position", "image_id")
        .values_list("vector", flat=True)
        .first()
    )
    if stored is None:
        return None
    data = bytes(stored)
    _store(client, {key: data})
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _store(client: redis.Redis, entries: dict[str, bytes | None]) -> None:
    entries = {key: value for key, value in entries.items() if value is not None}
    if not entries:
        return
    ttl = settings.SEARCH_CARD_TTL_S
    try:
        ThreadConnections.of(client).send(
            *[("SET", key, value, "EX", ttl) for key, value in entries.items()]
        )
    except redis.RedisError as exc:
        log.warning("product cache: could not store %d entries: %s", len(entries), exc)


def _build_cards(product_ids: list[int]) -> dict[int, dict]:
    """Cards from the database in one query over the images (a product reaches the index
    only through an image; one that has none left is not shown)."""
    products: dict[int, Product] = {}
    images: dict[int, list[ProductImage]] = {}
    rows = ProductImage.objects.filter(
        product_id__in=product_ids, product__is_active=True
    ).select_related("product__category")
    for image in rows:
        products.setdefault(image.product_id, image.product)
        images.setdefault(image.product_id, []).append(image)
    return {
        pid: product_representation(product, None, images[pid]) for pid, product in products.items()
    }


def _pack(card: dict) -> bytes | None:
    """msgpack of the card; None for one msgpack cannot hold (an attribute int past 64 bits)."""
    try:
        return msgpack.packb(card, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return None


def _decode_card(product_id: int, raw: object) -> dict | None:
    """The card if `raw` is a well-formed card of this product, else None (rebuilt)."""
    if not isinstance(raw, bytes) or len(raw) > _MAX_CARD_BYTES:
        return None
    try:
        card = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not isinstance(card, dict) or card.get("id") != product_id:
        return None
    images = card.get("images")
    if not isinstance(images, list) or not images:
        return None
    for image in images:
        if not isinstance(image, dict) or not isinstance(image.get("id"), int):
            return None
        if "url" not in image or not isinstance(image["url"], str | None):
            return None
    return card
