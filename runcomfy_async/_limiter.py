"""A client-wide pace: at most `rate` API calls per second, in bursts of up to `burst`."""

from __future__ import annotations

import math

import anyio

from ._retry import Clock, Sleep


class RateLimiter:
    """Token bucket shared by every call of a client (submits, polls, results, cancels).

    Callers are served in arrival order: a lock makes each wait its turn, so one slow
    caller cannot be overtaken indefinitely.
    """

    def __init__(self, rate: float, *, burst: float | None = None, clock: Clock, sleep: Sleep):
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("max_calls_per_second must be a positive number")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        """Wait until one call may be sent, and take its token."""
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate)
                self._refill()
                # We held the lock, so the token is ours; a loop until the float reached
                # 1.0 exactly could spin on waits too small to move the clock.
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1.0
