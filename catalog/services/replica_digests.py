"""Ask every live replica of every shard for the digest of what it holds.

One Celery broadcast (`reconcile_digest`, workers/serving/control.py) reaches every
worker; each replica writes its digest to Redis and pushes its answer onto the
request's list, which is read here with BLPOP until every replica the heartbeats list
as live (workers.index.membership) has answered or the timeout has passed. A live
replica that stays silent is named, with what its heartbeat says of it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from catalog.redis_clients import redis_client
from workers.index.digest import Digest
from workers.index.membership import MemberState, live_members
from workers.serving.control import DigestAnswer, answers_key

logger = logging.getLogger(__name__)


@dataclass
class ReplicaDigest:
    answer: DigestAnswer
    digest: Digest | None  # None: the replica holds no state yet


@dataclass
class ShardAnswers:
    shard: int
    live: list[MemberState]  # replicas whose heartbeat was live when asked
    answered: list[ReplicaDigest] = field(default_factory=list)
    silent: list[MemberState] = field(default_factory=list)  # live, no answer in time


@dataclass
class Asked:
    shards: dict[int, ShardAnswers]
    redis_bytes: int  # digest bytes read back
    seconds: float


def ask_replicas(shards: Iterable[int], timeout: float) -> Asked:
    """Every live replica's digest of the given shards, and who did not answer in time."""
    from searchsite.celery import app

    started = time.monotonic()
    client = redis_client()
    found = {
        shard: ShardAnswers(shard, [m for m in live_members(client, shard) if m.role == "replica"])
        for shard in shards
    }
    waiting = {(shard, m.name) for shard, part in found.items() for m in part.live}
    request = uuid.uuid4().hex
    key = answers_key(request)
    answers: dict[tuple[int, str], DigestAnswer] = {}
    if waiting:
        app.control.broadcast(
            "reconcile_digest", arguments={"request": request, "shards": sorted(found)}, reply=False
        )
    deadline = started + timeout
    while waiting - answers.keys() and (left := deadline - time.monotonic()) > 0:
        popped = client.blpop([key], timeout=min(left, 1.0))
        if popped is not None:
            _take(popped[1], found, answers)
    for raw in client.lrange(key, 0, -1):  # replicas that joined since the heartbeats were read
        _take(raw, found, answers)
    client.delete(key)

    read = 0
    for (shard, _name), answer in sorted(answers.items()):
        digest = None
        if answer.key:
            raw = client.get(answer.key)
            client.delete(answer.key)
            if raw is None:
                logger.warning(
                    "reconcile: the digest of %s lapsed before it was read", answer.replica
                )
                continue
            read += len(raw)
            digest = Digest.from_bytes(raw)
        found[shard].answered.append(ReplicaDigest(answer, digest))
    for part in found.values():
        heard = {r.answer.replica for r in part.answered}
        part.silent = [m for m in part.live if m.name not in heard]
    return Asked(found, read, time.monotonic() - started)


def _take(
    raw: bytes, found: dict[int, ShardAnswers], answers: dict[tuple[int, str], DigestAnswer]
) -> None:
    try:
        answer = DigestAnswer.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("reconcile: ignoring a malformed answer: %s", exc)
        return
    if answer.shard in found:
        answers[(answer.shard, answer.replica)] = answer
