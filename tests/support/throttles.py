"""A DRF throttle rate changed for one test: DRF reads the settings dict at each request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throttle_rate(scope: str, rate: str) -> Iterator[None]:
    """`scope`'s rate set to `rate`, with the throttle counters (in the cache) cleared
    before and after."""
    from django.conf import settings
    from django.core.cache import cache

    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    saved = rates[scope]
    rates[scope] = rate
    cache.clear()
    try:
        yield
    finally:
        rates[scope] = saved
        cache.clear()
