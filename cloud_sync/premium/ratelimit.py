"""Rate limits per partner key: a token bucket of one minute's allowance, and how long until the next request may pass."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``rate_per_min`` requests per minute per key, bursts up to that many.

    ``take`` answers ``(True, 0)`` or ``(False, retry_after_s)``: whole seconds until
    one request's worth has refilled (what ``Retry-After`` says).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate_per_min: int) -> tuple[bool, int]:
        now = self._clock()
        per_s = rate_per_min / 60.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(rate_per_min), now)
            bucket.tokens = min(
                float(rate_per_min), bucket.tokens + (now - bucket.at) * per_s
            )
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True, 0
            return False, max(1, math.ceil((1.0 - bucket.tokens) / per_s))
