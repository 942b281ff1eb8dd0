"""Retry and polling arithmetic: backoff, Retry-After, the budget, poll intervals."""

from __future__ import annotations

import email.utils
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runcomfy_async as rc
from runcomfy_async._retry import (
    RetryBudget,
    backoff,
    parse_retry_after,
    retry_after_delay,
)
from tests.conftest import VirtualTime

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def FakeTime() -> VirtualTime:
    """The shared virtual clock, started away from zero."""
    t = VirtualTime()
    t.now = 100.0
    return t


_durations = st.floats(min_value=0, max_value=1e6, allow_nan=False)


# ------------------------------------------------------------------ backoff


@settings(max_examples=200)
@given(
    base=_durations,
    cap=_durations,
    retry=st.integers(min_value=0, max_value=10_000),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_full_jitter_within_the_cap(
    base: float, cap: float, retry: int, seed: int
) -> None:
    policy = rc.RetryPolicy(base_backoff=base, max_backoff=cap)
    delay = backoff(policy, retry, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(retry, 1000))
    assert math.isfinite(delay)


def test_backoff_grows_then_stops_at_max_backoff() -> None:
    policy = rc.RetryPolicy(base_backoff=0.5, max_backoff=20.0)

    class Top(random.Random):
        def random(self) -> float:
            return 1.0  # the top of the jitter range

    ceilings = [backoff(policy, n, Top()) for n in range(8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert backoff(policy, 10**9, Top()) == 20.0


def test_backoff_is_jittered_not_fixed() -> None:
    policy = rc.RetryPolicy()
    rng = random.Random(1)
    delays = {backoff(policy, 3, rng) for _ in range(20)}
    assert len(delays) > 10


# ------------------------------------------------------------------ Retry-After


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("0.25", 0.25),
        ("-3", 0.0),
        ("-0.5", 0.0),
        ("86400000", 86400000.0),  # huge but finite: the caller clamps it
        ("1e300", 1e300),
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("5 seconds", None),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-inf", None),
        ("Infinity", None),
        ("1e400", None),
        ("Mon, 99 Foo 2025 25:61:61 GMT", None),
    ],
)
def test_parse_retry_after_seconds_and_garbage(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_parse_retry_after_http_date_in_the_future() -> None:
    header = email.utils.format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=NOW) == pytest.approx(30.0)


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    header = email.utils.format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(header, now=NOW) == 0.0


def test_parse_retry_after_http_date_without_zone_is_utc() -> None:
    assert parse_retry_after("Sun, 01 Jun 2025 12:01:00 -0000", now=NOW) == pytest.approx(60.0)


def test_parse_retry_after_http_date_far_future_is_finite() -> None:
    seconds = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=NOW)
    assert seconds is not None
    assert math.isfinite(seconds)
    assert seconds > 1e11


@given(st.text(max_size=40))
def test_parse_retry_after_is_always_finite_non_negative_or_none(header: str) -> None:
    seconds = parse_retry_after(header, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


# Years below 100 are read as 19xx/20xx by RFC 2822's obsolete two-digit rule: not HTTP dates.
@given(st.datetimes(min_value=datetime(1900, 1, 1), timezones=st.just(UTC)))
def test_parse_retry_after_reads_any_http_date(when: datetime) -> None:
    header = email.utils.format_datetime(when.replace(microsecond=0), usegmt=True)
    seconds = parse_retry_after(header, now=NOW)
    assert seconds is not None
    expected = max(0.0, (when.replace(microsecond=0) - NOW).total_seconds())
    assert seconds == pytest.approx(expected)


@settings(max_examples=200)
@given(
    retry_after=st.floats(min_value=-1e6, max_value=1e12, allow_nan=False),
    retry=st.integers(0, 50),
    seed=st.integers(0, 2**32),
)
def test_retry_after_delay_is_at_least_the_clamped_retry_after(
    retry_after: float, retry: int, seed: int
) -> None:
    policy = rc.RetryPolicy()
    delay = retry_after_delay(policy, retry_after, retry, random.Random(seed))
    floor = min(max(retry_after, 0.0), policy.max_retry_after)
    assert floor <= delay <= floor + policy.max_backoff
    assert delay <= policy.max_retry_after + policy.max_backoff


# ------------------------------------------------------------------ the retry budget


def test_budget_spends_and_refuses_when_empty() -> None:
    policy = rc.RetryPolicy(budget=12.0, retry_cost=5.0, timeout_cost=10.0, success_refund=1.0)
    budget = RetryBudget(policy)
    assert budget.tokens == 12.0
    assert budget.try_spend()
    assert budget.tokens == 7.0
    assert not budget.try_spend(timeout=True)  # a timeout costs 10: refused, nothing taken
    assert budget.tokens == 7.0
    assert budget.try_spend()
    assert budget.tokens == 2.0
    assert not budget.try_spend()
    assert budget.tokens == 2.0


def test_budget_refunds_up_to_the_cap() -> None:
    policy = rc.RetryPolicy(budget=10.0, retry_cost=5.0, success_refund=2.0)
    budget = RetryBudget(policy)
    budget.refund()
    assert budget.tokens == 10.0  # never above the full budget
    assert budget.try_spend()
    budget.refund()
    assert budget.tokens == 7.0
    for _ in range(10):
        budget.refund()
    assert budget.tokens == 10.0


def test_an_empty_budget_means_no_retries() -> None:
    budget = RetryBudget(rc.RetryPolicy(budget=0.0))
    assert not budget.try_spend()
    assert not budget.try_spend(timeout=True)
    assert budget.tokens == 0.0


@given(st.lists(st.sampled_from(["retry", "timeout", "ok"]), max_size=200))
def test_budget_stays_between_zero_and_full(events: list[str]) -> None:
    policy = rc.RetryPolicy(budget=50.0)
    budget = RetryBudget(policy)
    for event in events:
        if event == "ok":
            budget.refund()
        else:
            budget.try_spend(timeout=event == "timeout")
        assert 0.0 <= budget.tokens <= policy.budget


# ------------------------------------------------------------------ the 429 gate


# ------------------------------------------------------------------ policy validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"base_backoff": -0.1},
        {"max_backoff": -1.0},
        {"max_retry_after": -1.0},
        {"budget": -1.0},
        {"base_backoff": math.nan},
        {"max_backoff": math.inf},
        {"max_retry_after": math.inf},
        {"budget": math.nan},
    ],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        rc.RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retry_cost": -5.0},
        {"timeout_cost": -1.0},
        {"retry_cost": math.nan},
        {"success_refund": math.nan},
    ],
    ids=["negative-retry-cost", "negative-timeout-cost", "nan-retry-cost", "nan-refund"],
)
def test_retry_policy_rejects_costs_that_disable_the_budget(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        rc.RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_policy_accepts_edges() -> None:
    policy = rc.RetryPolicy(max_attempts=1, base_backoff=0, max_backoff=0, budget=0)
    assert backoff(policy, 5, random.Random(1)) == 0.0


def test_retry_policy_is_frozen() -> None:
    policy = rc.RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_interval": 0},
        {"first_interval": -1},
        {"first_interval": 10, "max_interval": 5},
        {"growth": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.0},
        {"first_interval": math.nan},
        {"growth": math.nan},
        {"jitter": math.nan},
    ],
)
def test_poll_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        rc.PollPolicy(**kwargs)


# ------------------------------------------------------------------ poll intervals


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.value


def test_first_poll_is_soon_then_grows_to_the_cold_cap() -> None:
    policy = rc.PollPolicy(
        first_interval=0.5, growth=1.5, max_interval=10.0, max_dense_interval=5.0, jitter=0.2
    )
    mid = Fixed(0.5)  # no jitter
    intervals = [policy.next_interval(n, None, mid) for n in range(10)]
    assert intervals[0] == pytest.approx(0.5)
    assert intervals[1] == pytest.approx(0.75)
    assert intervals == sorted(intervals)
    assert intervals[-1] == pytest.approx(5.0)  # nothing learnt: no sparser than dense polls
    assert policy.next_interval(10**6, None, mid) == pytest.approx(5.0)


def test_queue_position_holds_polls_back() -> None:
    policy = rc.PollPolicy(
        seconds_per_queue_position=0.5, max_queue_interval=15.0, max_interval=5.0
    )
    mid = Fixed(0.5)
    assert policy.next_interval(0, 20, mid) == pytest.approx(10.0)
    assert policy.next_interval(0, 1000, mid) == pytest.approx(15.0)  # capped
    assert policy.next_interval(50, 1, mid) == pytest.approx(2.0)  # short queue: normal pace
    assert policy.next_interval(0, 0, mid) == pytest.approx(0.5)
    assert policy.next_interval(0, -4, mid) == pytest.approx(0.5)


@settings(max_examples=200)
@given(
    polls=st.integers(0, 10_000),
    queue=st.none() | st.integers(-10, 10**6),
    seed=st.integers(0, 2**32),
    jitter=st.floats(0, 0.99),
)
def test_poll_interval_jitter_bounds(
    polls: int, queue: int | None, seed: int, jitter: float
) -> None:
    policy = rc.PollPolicy(jitter=jitter)
    interval = policy.next_interval(polls, queue, random.Random(seed))
    cold_cap = max(policy.first_interval, policy.max_dense_interval)
    base = min(cold_cap, policy.first_interval * policy.growth ** min(polls, 64))
    if queue:
        base = max(base, min(policy.max_queue_interval, policy.seconds_per_queue_position * queue))
    assert base * (1 - jitter) - 1e-9 <= interval <= base * (1 + jitter) + 1e-9
    assert 0 < interval <= max(policy.max_interval, policy.max_queue_interval) * (1 + jitter)
