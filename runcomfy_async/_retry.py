"""Retry arithmetic: full-jitter backoff, Retry-After parsing, the retry budget, the 429 gate."""

from __future__ import annotations

import email.utils
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["RetryPolicy"]

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried. Every duration is in seconds.

    `max_attempts` counts the first try. Backoff is full jitter:
    `uniform(0, min(max_backoff, base_backoff * 2**retry))`. A `Retry-After` answer is honoured
    up to `max_retry_after`. The budget is a client-wide token bucket (AWS-standard style):
    a retry costs `retry_cost` tokens (a timeout `timeout_cost`), a success gives back
    `success_refund`, and with no tokens left failures are raised at once instead of retried,
    so an outage cannot turn into a retry storm.
    """

    max_attempts: int = 5
    base_backoff: float = 0.5
    max_backoff: float = 20.0
    max_retry_after: float = 120.0
    budget: float = 500.0
    retry_cost: float = 5.0
    timeout_cost: float = 10.0
    success_refund: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in (
            "base_backoff",
            "max_backoff",
            "max_retry_after",
            "budget",
            "retry_cost",
            "timeout_cost",
            "success_refund",
        ):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number >= 0")


def backoff(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """Full-jitter delay in seconds before retry number `retry` (0 for the first retry)."""
    ceiling = min(policy.max_backoff, policy.base_backoff * 2.0 ** min(retry, 62))
    return rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), else None.

    Negative or past values give 0; garbage gives None (the caller falls back to backoff).
    The result is always finite; the caller clamps it to its maximum.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta) if math.isfinite(delta) else None


def retry_after_delay(
    policy: RetryPolicy, retry_after: float, retry: int, rng: random.Random
) -> float:
    """At least `retry_after` (clamped), plus jitter so many waiters do not wake together."""
    wait = min(max(retry_after, 0.0), policy.max_retry_after)
    return wait + rng.uniform(0.0, min(policy.max_backoff, 0.1 * wait + policy.base_backoff))


class RetryBudget:
    """Client-wide token bucket that bounds retries under sustained failure."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._tokens = policy.budget

    @property
    def tokens(self) -> float:
        return self._tokens

    def try_spend(self, *, timeout: bool = False) -> bool:
        """Take the cost of one retry; False (and nothing taken) when the budget is spent."""
        cost = self._policy.timeout_cost if timeout else self._policy.retry_cost
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True

    def refund(self) -> None:
        """A call succeeded: give a little back, up to the full budget."""
        self._tokens = min(self._policy.budget, self._tokens + self._policy.success_refund)


class Backpressure:
    """A client-wide gate: after a 429, no call of this client is sent before the pause ends.

    Then the calls held meanwhile go out in a slow start, not all at once: one by one at
    the rate this client sent calls before the 429 (at least `min_rate` per second), the
    rate doubling every `doubling` seconds for `ramp` seconds. Every call passes the gate.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        min_rate: float = 20.0,
        doubling: float = 1.0,
        ramp: float = 4.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._min_rate = min_rate
        self._doubling = doubling
        self._ramp = ramp
        self._not_before = -math.inf
        self._sent: deque[float] = deque()  # this client's send times in the last second
        self._rate = min_rate  # calls per second to restart at
        self._next_slot = -math.inf
        self._releasing = False

    def pause(self, seconds: float) -> None:
        """Hold every call for `seconds` from now (never shortens a pause already set)."""
        now = self._clock()
        if not self._releasing:  # a new episode: restart at the pace calls went before it
            self._forget_before(now - 1.0)
            self._rate = max(self._min_rate, float(len(self._sent)))
            self._releasing = True
        if now + seconds > self._not_before:
            self._not_before = self._next_slot = now + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self._not_before - self._clock())

    async def wait(self) -> None:
        """Return when this call may be sent: at once, unless a pause holds or is releasing."""
        while self._releasing:
            now = self._clock()
            if self._not_before > now:  # paused: sleep to its end, then take a slot
                await self._sleep(self._not_before - now + self._rng.uniform(0, 1 / self._rate))
                continue
            since = now - self._not_before
            if since >= self._ramp:  # the slow start is over
                self._releasing = False
                break
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / (self._rate * 2.0 ** (since / self._doubling))
            if slot > now:
                await self._sleep(slot - now)
            if self._not_before <= self._clock():
                break  # no new pause came while waiting: the slot is this call's
        now = self._clock()
        self._sent.append(now)
        self._forget_before(now - 1.0)

    def _forget_before(self, moment: float) -> None:
        while self._sent and self._sent[0] < moment:
            self._sent.popleft()
