"""Rate limits: the search one, and the API-wide ones, none of which counts OPTIONS.

The search limit is a fixed-window counter in Redis, one round trip per request.

DRF's ``SimpleRateThrottle`` keeps a pickled list of timestamps per client in the cache
(a GET and a SET per request, the list re-pickled each time); on the search path that
was about 0.5 ms of a ~5 ms request. Here each client has one counter per window: one
INCR, and an EXPIRE only when the INCR created it. A client may burst up to twice the
rate across a window boundary, the usual price of fixed windows.

OPTIONS requests are never counted nor refused (429) by any limit: a CORS preflight
(corsheaders answers those under /api/ before any view) or a client asking for a view's
metadata searches and writes nothing, and must not spend the budget of the calls it
precedes. DRF's anonymous and per-user throttles count every method: `AnonThrottle` and
`UserThrottle` are those, minus OPTIONS.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle

from catalog.search import rpc_redis
from workers.rpc.connection import ThreadConnections

if TYPE_CHECKING:  # DRF's views import this module (DEFAULT_THROTTLE_CLASSES): no cycle
    from rest_framework.request import Request
    from rest_framework.views import APIView


class RedisWindowThrottle(ScopedRateThrottle):
    """Per-client (user, else IP) and per-scope limit from DEFAULT_THROTTLE_RATES.

    The IP is DRF's `get_ident`, as for the other throttles: the socket address, or
    with TRUSTED_PROXIES (NUM_PROXIES) set, the address that many X-Forwarded-For hops
    from the end; a client's own X-Forwarded-For never picks its counter.

    A view may name Redis reads it makes on every request (`throttle_reads(request)`, a
    list of commands): they go in the counter's round trip instead of one of their own,
    and their raw replies, by command, are left in `request.read_with_throttle`.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method == "OPTIONS":
            return True
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if self.num_requests is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        now = time.time()
        window = int(now // self.duration)
        self.window_end = (window + 1) * self.duration
        self.now = now
        key = f"{ident}:{window}"
        send = ThreadConnections.of(rpc_redis()).send  # no pool checkout, no reply parsing
        reads = tuple(view.throttle_reads(request)) if hasattr(view, "throttle_reads") else ()
        (count, *replies) = send(("INCR", key), *reads)
        request.read_with_throttle = dict(zip(reads, replies, strict=True))
        if count == 1:  # the window's first request made the key
            send(("EXPIRE", key, int(self.duration) + 1))
        return int(count) <= self.num_requests

    def wait(self) -> float | None:
        return max(0.0, self.window_end - self.now)


class AnonThrottle(AnonRateThrottle):
    """DRF's per-address limit for anonymous clients (THROTTLE_ANON), OPTIONS excepted."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        return request.method == "OPTIONS" or super().allow_request(request, view)


class UserThrottle(UserRateThrottle):
    """DRF's per-user limit (THROTTLE_USER), OPTIONS excepted."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        return request.method == "OPTIONS" or super().allow_request(request, view)
