"""Client-side rate limit for the execution API, shared by every process of the desk.

The broker allows 200 requests a minute per API key and answers 429 past that (docs/operations.md,
"The broker adapter"). Every worker, settler and loop of every machine sends with the same key, so
the budget is counted where they all see it: the Django cache (the database cache by default,
Redis when ``REDIS_URL`` is set; project/settings.py). The adapter asks the limiter before each
request (``execution.adapters.base.RequestLimiter``) and sends nothing when the budget is spent.

The count is a sliding window kept as numbered tickets. The n-th request of a key takes ticket
n (a cache key that lives a little longer than the window), and may do so only when ticket
n − limit was taken at least ``window`` + ``margin`` seconds ago or has expired: then no span of
``window`` seconds ever holds more than ``limit`` requests, whatever the broker's own window
looks like. Taking a ticket is ``cache.add``, the one operation both caches make atomic for a
key that does not exist (an INSERT on the database cache's primary key, SET NX on Redis); ticket
numbers only grow, so a ticket key is never taken twice. A ``head`` key remembers roughly where
the next free ticket is, so one acquire costs a few cache round trips: one read of the hold and
the head, one read of the probed tickets, one add, one write of the head.

``margin`` absorbs the clocks of the desk's machines and the time a request takes to reach the
broker. A broker 429 sets a hold (``hold_until``) that stops every process until the broker's
reset. Cache keys carry a hash of the API key id, never the key itself:
``app:execution:ratelimit:<sha256(key id)[:16]>:…``.

With the database cache, its ``MAX_ENTRIES`` (300 by default) must stay above ``limit`` plus the
other keys, or the cache's culling may drop live tickets (the limiter then lets a few requests
too many through and the broker's 429, which is safe, says the rest).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

DEFAULT_LIMIT = 200
DEFAULT_WINDOW = 60.0
DEFAULT_MARGIN = 0.5
KEY_PREFIX = "app:execution:ratelimit:"
#: Tickets read per probe, and probes per acquire before giving up for a moment.
PROBE = 8
MAX_PROBES = 16
#: The wait reported when every probe lost its race (the cache is very busy).
CONTENDED_WAIT = 0.05
HEAD_TTL = 86_400


def key_hash(key_id: str) -> str:
    """The first 16 hex characters of sha256(``key_id``): names a key's counters."""
    return hashlib.sha256(key_id.encode("utf-8")).hexdigest()[:16]


class CacheRateLimiter:
    """At most ``limit`` requests in any ``window`` seconds for the API key ``key_id``, across
    every process sharing ``cache`` (default: Django's default cache).

    ``clock()`` returns unix seconds (default ``time.time``); ``margin`` seconds are added to
    the window (see the module docstring). ``acquire()`` returns 0 after taking a request from
    the budget, else the seconds to wait (taking nothing). Cache errors propagate: the adapter
    then sends nothing (fail-closed).
    """

    def __init__(
        self,
        key_id: str,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        *,
        margin: float = DEFAULT_MARGIN,
        cache: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not key_id:
            raise ValueError("key_id is required")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit must be a whole number >= 1")
        if window <= 0 or margin < 0:
            raise ValueError("window must be positive and margin not negative")
        if cache is None:
            from django.core.cache import cache as default_cache

            cache = default_cache
        self.limit = limit
        self.window = float(window)
        self.margin = float(margin)
        self._cache = cache
        self._clock = clock
        self._prefix = f"{KEY_PREFIX}{key_hash(key_id)}:"
        # A ticket outlives the window (and the cache's rounding of expiry times to seconds).
        self._ticket_ttl = math.ceil(self.window + self.margin) + 2

    def __repr__(self) -> str:
        return f"CacheRateLimiter({self._prefix!r}, limit={self.limit}, window={self.window})"

    @property
    def span(self) -> float:
        """Seconds a request counts against the budget: the window plus the margin."""
        return self.window + self.margin

    def acquire(self) -> float:
        """Take one request from the budget and return 0, or return the seconds to wait."""
        now = self._clock()
        state = self._cache.get_many([self._hold_key, self._head_key])
        hold = state.get(self._hold_key)
        if hold is not None and hold > now:
            return float(hold - now)
        head = max(0, int(state.get(self._head_key) or 0))
        for _ in range(MAX_PROBES):
            numbers = range(head, head + PROBE)
            keys = [self._ticket(n) for n in numbers]
            keys += [self._ticket(n - self.limit) for n in numbers if n >= self.limit]
            seen = self._cache.get_many(keys)
            for n in numbers:
                if self._ticket(n) in seen:
                    continue
                if n >= self.limit:
                    taken_at = seen.get(self._ticket(n - self.limit))
                    if taken_at is not None and now - taken_at < self.span:
                        return float(taken_at + self.span - now)
                if self._cache.add(self._ticket(n), now, timeout=self._ticket_ttl):
                    self._cache.set(self._head_key, n + 1, timeout=HEAD_TTL)
                    return 0.0
                # Another process took ticket n first: try the next one.
            head += PROBE
        return CONTENDED_WAIT

    def hold_until(self, moment: datetime) -> None:
        """No request before ``moment`` (aware), for every process: the broker said 429."""
        if moment.utcoffset() is None:
            raise ValueError("moment must be timezone-aware")
        until = moment.timestamp()
        now = self._clock()
        if until <= now:
            return
        current = self._cache.get(self._hold_key)
        if current is not None and current >= until:
            return
        self._cache.set(self._hold_key, until, timeout=math.ceil(until - now) + 1)

    def in_window(self) -> int:
        """How many requests of the last ``span`` seconds the cache holds (for operators and
        tests; reads up to ``limit`` + a probe of tickets)."""
        now = self._clock()
        head = max(0, int(self._cache.get(self._head_key) or 0))
        first = max(0, head - self.limit - PROBE)
        seen = self._cache.get_many([self._ticket(n) for n in range(first, head + PROBE)])
        return sum(1 for taken_at in seen.values() if now - taken_at < self.span)

    @property
    def _hold_key(self) -> str:
        return self._prefix + "hold"

    @property
    def _head_key(self) -> str:
        return self._prefix + "head"

    def _ticket(self, number: int) -> str:
        return f"{self._prefix}t:{number}"


def execution_api_limiter(key_id: str | None = None) -> CacheRateLimiter:
    """The limiter of the execution API key in the settings (``EXECUTION_API_KEY_ID``, or
    ``key_id``), at ``EXECUTION_API_RATE_LIMIT`` requests a minute (200 when unset)."""
    from django.conf import settings

    limit = int(getattr(settings, "EXECUTION_API_RATE_LIMIT", DEFAULT_LIMIT))
    return CacheRateLimiter(key_id or settings.EXECUTION_API_KEY_ID, limit=limit)
