"""The encode task's retry policy: backoff from settings, enough retries to outlast the window."""

from __future__ import annotations

import random

from workers.tasks.encoding import ENCODE_MAX_RETRIES, encode_products, retry_countdown


def test_countdown_doubles_up_to_the_cap_with_jitter():
    rng = random.Random(7)
    for retries, full in [(0, 2), (1, 4), (2, 8), (4, 32), (5, 60), (9, 60), (400, 60)]:
        for _ in range(50):
            delay = retry_countdown(retries, base_s=2, max_s=60, rng=rng)
            assert full / 2 <= delay <= full, (retries, delay)


def test_jitter_spreads_tasks_that_failed_together():
    rng = random.Random(1)
    delays = {round(retry_countdown(3, base_s=2, max_s=60, rng=rng), 3) for _ in range(20)}
    assert len(delays) > 10


def test_retries_outlast_the_missing_file_window_with_the_defaults():
    # On average; past the last retry the stale sweep sends pending products again.
    expected_total = sum(min(60.0, 2.0 * 2**n) * 0.75 for n in range(ENCODE_MAX_RETRIES))
    assert expected_total > 600  # MEDIA_MISSING_AFTER_S's default
    assert encode_products.max_retries == ENCODE_MAX_RETRIES
