"""Remote-control commands of the search workers (Celery broadcasts reach every worker,
where a task on `shard.<n>` reaches one replica of the shard).

`reconcile_digest` asks every replica of every shard for the digest of what it holds
(`workers.index.digest`): a replica that diverged is found even while another replica of
its shard is right. Digests can be millions of rows, so each replica writes its own to a
Redis key as raw bytes and pushes a small JSON answer naming that key onto the request's
answers list, where the caller waits (BLPOP) for the live replicas it expects. Celery's
own broadcast reply is not used: it cannot carry the bytes, and waiting on it costs the
whole timeout whenever a worker that serves no shard stays silent.

Registered when `searchsite.celery` loads (every worker process imports it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from celery.worker.control import control_command

from workers.index.digest import Digest

if TYPE_CHECKING:
    import redis

    from workers.index.replica import ShardReplica

logger = logging.getLogger(__name__)
ANSWER_TTL_S = 600  # what a reconcile that gave up leaves behind lapses after this
_REQUEST = re.compile(r"^[0-9a-f]{8,64}$")


def answers_key(request: str) -> str:
    return f"search:reconcile:{request}:answers"


def digest_key(request: str, shard: int, replica: str) -> str:
    return f"search:reconcile:{request}:{int(shard)}:{replica}"


@dataclass(frozen=True)
class DigestAnswer:
    """One replica's answer: who it is, what it covers, and where its digest lies."""

    shard: int
    replica: str  # its membership name (workers.index.membership)
    host: str
    ready: bool
    reason: str
    position: str  # the log position its rows cover at least
    rows: int
    key: str  # the Redis key holding the digest's raw bytes ("": the replica holds no state)
    seconds: float  # what answering cost the replica

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DigestAnswer:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("an answer is a JSON object")
        return cls(
            shard=int(data["shard"]),
            replica=str(data["replica"]),
            host=str(data["host"]),
            ready=bool(data["ready"]),
            reason=str(data["reason"]),
            position=str(data["position"]),
            rows=int(data["rows"]),
            key=str(data["key"]),
            seconds=float(data["seconds"]),
        )


def answer_digest(
    client: redis.Redis, replica: ShardReplica, *, request: str, ttl_s: int = ANSWER_TTL_S
) -> DigestAnswer:
    """Write the replica's digest and its answer for `request` (a replica still loading
    answers with no digest: it is there, not silent)."""
    started = time.perf_counter()
    shard = replica.shard
    ready, reason, position = replica.ready, replica.reason, replica.last_applied
    digest = Digest.of(*shard.live_rows()) if shard is not None else None
    key = digest_key(request, replica.shard_no, replica.name) if digest is not None else ""
    answer = DigestAnswer(
        shard=replica.shard_no,
        replica=replica.name,
        host=replica.host,
        ready=ready and digest is not None,
        reason=reason,
        position=position if digest is not None else "",
        rows=len(digest) if digest is not None else 0,
        key=key,
        seconds=time.perf_counter() - started,
    )
    pipe = client.pipeline(transaction=False)
    if digest is not None:
        pipe.set(key, digest.to_bytes(), ex=ttl_s)
    pipe.rpush(answers_key(request), answer.to_json())
    pipe.expire(answers_key(request), ttl_s)
    pipe.execute()
    return answer


@control_command(
    args=[("request", str)],
    signature="<request>",
)
def reconcile_digest(
    state: Any, request: str, shards: list[int] | None = None, ttl_s: int = ANSWER_TTL_S
) -> dict[str, object]:
    """Write the digest of every replica this worker runs (of `shards`, default all) to
    Redis under `request`; the caller reads them from the answers list."""
    from workers.serving.bootsteps import running_shards

    if not isinstance(request, str) or not _REQUEST.match(request):
        return {"error": "request must be 8-64 lowercase hex digits"}
    wanted = None if shards is None else {int(s) for s in shards}
    answered: dict[str, int] = {}
    for number, service in sorted(running_shards.items()):
        replica = getattr(service, "replica", None)
        if replica is None or (wanted is not None and number not in wanted):
            continue
        try:
            answer = answer_digest(service.client, replica, request=request, ttl_s=int(ttl_s))
        except Exception:  # one shard's failure must not silence the others: it shows as silent
            logger.exception("shard %d: could not answer reconcile request %s", number, request)
            continue
        answered[str(number)] = answer.rows
    return {"ok": answered}
