"""Retry decisions and arithmetic: what each failure allows, full-jitter backoff, Retry-After,
the retry budget."""

from __future__ import annotations

import email.utils
import enum
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["RetryPolicy"]

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class CallKind(enum.Enum):
    """What an API call does; decides whether it may be retried after the bytes left."""

    SUBMIT = "submit"
    STATUS = "status"
    RESULT = "result"
    CANCEL = "cancel"
    CATALOG = "catalog"


class Happened(enum.Enum):
    """How one attempt of a call ended, as far as the retry decision needs to know."""

    CONNECT_FAILED = "connect failed"  # DNS, refused, TLS, connect timeout, pool wait
    SEND_FAILED = "failed after sending"  # reset, disconnect, a body cut short
    TIMED_OUT = "timed out after sending"
    ANSWERED = "answered"  # an HTTP status (`status`), 2xx bodies aside
    UNREADABLE = "unreadable answer"  # a 2xx whose body cannot be read
    EMBEDDED_ERROR = "error inside a 2xx"  # `status` is the one its error_code implies


class Decision(enum.Enum):
    """What the transport does with a failed attempt."""

    RETRY = "retry"  # safe: send it again (within the budget, or the rate-limit patience)
    RAISE = "raise"  # final: raise the error as it is
    UNKNOWN_OUTCOME = "unknown outcome"  # a submit RunComfy may have acted on: never resent


#: Answers to a submit that prove no job was created: the server refused the call itself
#: (malformed, unauthenticated, unpaid, forbidden, no such model, wrong method or media type,
#: conflicting, too large, unprocessable, ...). Everything else may follow a job that
#: exists: 408 (a gateway's timeout can come after the origin read the call), every 5xx of
#: any number (501, 507, Cloudflare's 520-530, 599), 1xx, 3xx, gateway-specific 4xx such
#: as nginx's 499 or an ELB's 460, an unreadable 2xx. 429 is a refusal too, retried.
REFUSALS = frozenset(
    {400, 401, 402, 403, 404, 405, 406, 409, 410, 411, 412, 413, 414, 415, 417, 421, 422, 431, 451}
)
RATE_LIMITED = 429
#: Answers to a read (status, result, catalog) or a cancel that are retried: the server
#: could not answer now. 501 (not implemented) and 505 (version not supported) will not
#: change on a retry, so they are final like other errors.
TRANSIENT = frozenset({408, 429}) | (frozenset(range(500, 600)) - {501, 505})


def decide(kind: CallKind, happened: Happened, status: int | None = None) -> Decision:
    """The one table of retry decisions: call kind x how the attempt ended -> decision.

    `status` is the HTTP status answered (for ANSWERED), or the one an error_code inside a
    2xx implies (for EMBEDDED_ERROR: 400005 -> 400, None when it implies none).
    """
    if happened is Happened.CONNECT_FAILED:
        return Decision.RETRY  # not a byte was sent
    answered = happened in (Happened.ANSWERED, Happened.EMBEDDED_ERROR)
    if answered and status == RATE_LIMITED:
        return Decision.RETRY  # an explicit refusal: nothing was done, wait and go again
    if kind is CallKind.SUBMIT:
        if answered and status in REFUSALS:
            return Decision.RAISE
        return Decision.UNKNOWN_OUTCOME
    if not answered:
        return Decision.RETRY  # reads and cancels are safe to repeat
    return Decision.RETRY if status in TRANSIENT else Decision.RAISE


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried. Every duration is in seconds.

    `max_attempts` counts the first try. Backoff is full jitter:
    `uniform(0, min(max_backoff, base_backoff * 2**retry))`. A `Retry-After` answer is honoured
    up to `max_retry_after`. The budget is a client-wide token bucket (AWS-standard style):
    a retry costs `retry_cost` tokens (a timeout `timeout_cost`), a success gives back
    `success_refund`, and with no tokens left failures are raised at once instead of retried,
    so an outage cannot turn into a retry storm.

    A 429 is not a failure of the call: it proves RunComfy did nothing, so it spends neither
    attempts nor budget. The call waits (its `Retry-After`, or with none up to
    `base_backoff`, not growing: the client-wide pace is what slows the client down) and goes
    again while that pace adapts, for up to `rate_limit_patience` seconds from the call's start;
    then RateLimitError is raised. A batch (`client.map`) waits until its own deadline
    instead: an input is never failed for being rate-limited.
    """

    max_attempts: int = 5
    base_backoff: float = 0.5
    max_backoff: float = 20.0
    max_retry_after: float = 120.0
    budget: float = 500.0
    retry_cost: float = 5.0
    timeout_cost: float = 10.0
    success_refund: float = 1.0
    rate_limit_patience: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not self.rate_limit_patience >= 0:  # math.inf: wait out any rate limit
            raise ValueError("rate_limit_patience must be a number of seconds >= 0")
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


def delay_before(
    policy: RetryPolicy, retry_after: float | None, retry: int, rng: random.Random
) -> float:
    """Seconds to wait before retry number `retry`: at least the server's Retry-After when it
    gave one (jittered), else full-jitter backoff."""
    if retry_after is not None:
        return retry_after_delay(policy, retry_after, retry, rng)
    return backoff(policy, retry, rng)


def rate_limited_delay(policy: RetryPolicy, retry_after: float | None, rng: random.Random) -> float:
    """Seconds a call answered 429 waits before it queues for the client-wide pace again: the
    server's Retry-After (jittered), else up to `base_backoff`. Not an exponential backoff:
    the pace spaces every call of the client at the rate the server admits, so a wait that
    doubled with each 429 only left the unlucky calls asleep (up to `max_backoff`) long after
    the server would take them, and the end of a batch waited on them (RunComfy documents
    no Retry-After: 0.65-0.9 N against a server admitting N submits a second)."""
    if retry_after is not None:
        return retry_after_delay(policy, retry_after, 0, rng)
    return rng.uniform(0.0, policy.base_backoff)


def retry_after_delay(
    policy: RetryPolicy, retry_after: float, retry: int, rng: random.Random
) -> float:
    """At least `retry_after` (clamped), plus jitter so many waiters do not wake together:
    a tenth of the wait, and a tenth of `base_backoff`. The server said when; a jitter of a
    whole backoff on top (up to 0.5 s after a Retry-After of 0.2 s) made every rate-limited
    call take three times what it was told, and the client-wide pace spreads the wake-ups."""
    wait = min(max(retry_after, 0.0), policy.max_retry_after)
    spread = 0.1 * (wait + policy.base_backoff)
    return wait + rng.uniform(0.0, min(policy.max_backoff, spread))


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
