"""The interval policy, learnt run times and the rate limiter, in virtual time."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

import runcomfy_async as rc
from runcomfy_async._limiter import RateLimiter
from runcomfy_async._policy import RunTimes, RunWindow
from tests.conftest import VirtualTime


def learnt(low: float, high: float, n: int = 200, seed: int = 0) -> RunWindow:
    rng = random.Random(seed)
    times = RunTimes()
    for _ in range(n):
        times.add(rng.uniform(low, high))
    window = times.window(5)
    assert window is not None
    return window


def test_run_times_need_enough_samples_and_ignore_nonsense() -> None:
    times = RunTimes()
    for value in (1.0, -1.0, math.nan, math.inf, 2.0):
        times.add(value)
    assert times.count == 2
    assert times.window(5) is None
    for value in (3.0, 4.0, 5.0):
        times.add(value)
    window = times.window(5)
    assert window is not None
    assert window.early <= 1.0 <= window.typical <= 5.0 <= window.late


def test_run_times_forget_old_samples() -> None:
    times = RunTimes(size=10)
    for _ in range(10):
        times.add(100.0)
    for _ in range(10):
        times.add(1.0)
    window = times.window(5)
    assert window is not None
    assert window.late < 2.0  # the model got faster: the window followed


def test_window_brackets_the_learnt_distribution() -> None:
    window = learnt(10.0, 30.0)
    assert 8.0 <= window.early <= 10.5
    assert 18.0 <= window.typical <= 22.0
    assert 29.5 <= window.late <= 33.0


def test_a_running_request_is_not_polled_before_short_runs_end() -> None:
    policy = rc.PollPolicy(jitter=0.0)
    window = learnt(10.0, 30.0)
    delay = policy.running_delay(1.0, 1, window, random.Random(0))
    assert delay == pytest.approx(window.early - 1.0)
    slow = learnt(45.0, 135.0)  # skips are capped: an early failure is not missed for long
    assert policy.running_delay(1.0, 1, slow, random.Random(0)) == policy.max_interval


def test_polls_are_dense_inside_the_window_and_back_off_after() -> None:
    policy = rc.PollPolicy(jitter=0.0, latency_fraction=0.1, max_dense_interval=2.0)
    window = learnt(1.0, 3.0)
    rng = random.Random(0)
    inside = policy.running_delay(2.0, 3, window, rng)
    middle = (window.early + window.late) / 2
    assert inside == pytest.approx(max(policy.min_interval, 0.1 * middle))
    beyond = [policy.running_delay(window.late + t, 3, window, rng) for t in (1, 10, 100, 1e4)]
    assert beyond == sorted(beyond)
    assert beyond[0] > inside
    assert beyond[-1] == pytest.approx(policy.max_interval)
    slow = learnt(45.0, 135.0)
    assert policy.running_delay(90.0, 3, slow, rng) == pytest.approx(2.0)  # capped dense pace


def poll_times(policy: rc.PollPolicy, window: RunWindow, until: float, seed: int) -> list[float]:
    """When a request running from 0 s is polled, up to `until` s."""
    rng = random.Random(seed)
    times = [policy.first_delay(window, rng)]
    while times[-1] < until:
        times.append(times[-1] + policy.running_delay(times[-1], len(times), window, rng))
    return times


def test_a_long_model_is_looked_in_on_once_before_its_runs_end_and_failures_still_show() -> None:
    policy = rc.PollPolicy()
    window = learnt(45.0, 135.0)
    for seed in range(20):
        times = poll_times(policy, window, 140.0, seed)
        before = [t for t in times if t < window.early - policy.max_dense_interval]
        assert len(before) == 1  # not one every max_interval: each costs a call per request
        for failed_at in (0.5, 3.0, 12.0, 30.0):  # soon, and by the window
            seen = min(t for t in times if t >= failed_at)
            assert seen <= max(policy.max_interval * (1 + policy.jitter), 5 * failed_at)
            assert seen <= window.early + policy.max_dense_interval
    very_long = learnt(600.0, 1200.0)  # the gaps grow with the time run, up to a cap
    times = poll_times(policy, very_long, very_long.early, 0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(policy.max_skip_interval)
    for failed_at in (1.0, 20.0, 100.0):
        assert min(t for t in times if t >= failed_at) <= max(11.0, 5 * failed_at)


def test_first_poll_waits_for_the_shortest_runs_once_learnt() -> None:
    policy = rc.PollPolicy(jitter=0.0)
    rng = random.Random(0)
    assert policy.first_delay(None, rng) == pytest.approx(policy.first_interval)
    assert policy.first_delay(learnt(10.0, 30.0), rng) > 8.0
    assert policy.first_delay(learnt(45.0, 135.0), rng) == policy.max_interval
    assert policy.first_delay(learnt(0.01, 0.02), rng) == pytest.approx(policy.first_interval)


@given(
    st.floats(0, 1e6),
    st.integers(0, 10_000),
    st.floats(0.01, 1000),
    st.floats(0.01, 1000),
    st.integers(0, 2**32),
)
def test_every_delay_is_finite_and_non_negative(
    running: float, polls: int, low: float, spread: float, seed: int
) -> None:
    policy = rc.PollPolicy()
    rng = random.Random(seed)
    window = RunWindow(early=low, typical=low + spread / 2, late=low + spread)
    for delay in (
        policy.running_delay(running, polls, window, rng),
        policy.running_delay(running, polls, None, rng),
        policy.first_delay(window, rng),
        policy.next_interval(polls, polls, rng),
    ):
        longest = max(policy.max_interval, policy.max_queue_interval, policy.max_skip_interval)
        assert 0 <= delay <= longest * (1 + policy.jitter)
        assert math.isfinite(delay)


def simulate(policy: rc.PollPolicy, window: RunWindow, runs: list[float]) -> tuple[float, float]:
    """(status polls per request, p95 detection latency) of polling each run with the policy."""
    rng = random.Random(1)
    polls, latencies = [], []
    for run in runs:
        t, n = policy.first_delay(window, rng), 1
        while t < run:
            t += policy.running_delay(t, n, window, rng)
            n += 1
        polls.append(n)
        latencies.append(t - run)
    return statistics.fmean(polls), statistics.quantiles(latencies, n=20)[-1]


def test_learnt_polling_meets_the_one_to_three_second_targets() -> None:
    rng = random.Random(5)
    runs = [rng.uniform(1.0, 3.0) for _ in range(2000)]
    polls, p95 = simulate(rc.PollPolicy(), learnt(1.0, 3.0), runs)
    assert polls <= 8.0
    assert p95 <= 0.25


def test_learnt_polling_beats_a_fixed_two_second_poll_on_real_world_shapes() -> None:
    rng = random.Random(6)
    for low, high in ((10.0, 30.0), (45.0, 135.0)):
        runs = [rng.uniform(low, high) for _ in range(2000)]
        polls, p95 = simulate(rc.PollPolicy(), learnt(low, high), runs)
        fixed_polls = statistics.fmean(math.ceil(run / 2.0) for run in runs)
        fixed_p95 = statistics.quantiles([math.ceil(r / 2) * 2 - r for r in runs], n=20)[-1]
        # Same p95 latency with about 0.7x the calls. Half is out of reach at p95 parity:
        # the gaps inside the run-time spread must stay near 2 s, so only the polls before
        # the shortest runs can be saved (benchmarks/README.md has the bound).
        assert p95 <= fixed_p95 * 1.05
        assert polls <= fixed_polls * 0.75


# ------------------------------------------------------------------ rate limiter


async def test_the_limiter_paces_calls_in_virtual_time(vt: VirtualTime) -> None:
    limiter = RateLimiter(5.0, burst=1, clock=vt.clock, sleep=vt.sleep)
    stamps = []
    for _ in range(11):
        await limiter.acquire()
        stamps.append(vt.now)
    assert stamps[0] == 0.0
    assert stamps[-1] == pytest.approx(2.0)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap == pytest.approx(0.2) for gap in gaps)


async def test_the_limiter_allows_a_burst_then_the_rate(vt: VirtualTime) -> None:
    limiter = RateLimiter(10.0, burst=5, clock=vt.clock, sleep=vt.sleep)
    for _ in range(5):
        await limiter.acquire()
    assert vt.now == 0.0
    for _ in range(10):
        await limiter.acquire()
    assert vt.now == pytest.approx(1.0)


async def test_the_limiter_serves_concurrent_callers_in_order(vt: VirtualTime) -> None:
    limiter = RateLimiter(1.0, burst=1, clock=vt.clock, sleep=vt.sleep)
    order: list[int] = []

    async def call(n: int) -> None:
        await limiter.acquire()
        order.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(call, n)
            await anyio.lowlevel.checkpoint()
    assert order == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("rate", [0, -1, math.inf, math.nan])
def test_the_limiter_refuses_a_rate_that_is_no_pace(rate: float, vt: VirtualTime) -> None:
    with pytest.raises(ValueError, match="max_calls_per_second"):
        RateLimiter(rate, clock=vt.clock, sleep=vt.sleep)


async def test_the_client_limits_every_call(vt: VirtualTime) -> None:
    from aioresponses import aioresponses

    api = "https://model-api.runcomfy.net"
    with aioresponses() as m:
        m.get(f"{api}/v1/requests/r1/status", payload={"status": "in_queue"}, repeat=True)
        async with rc.Client(
            "k", max_calls_per_second=2, sleep=vt.sleep, clock=vt.clock, base_url=api
        ) as client:
            for _ in range(7):
                await client.status("r1")
    assert vt.now == pytest.approx(2.5)  # a burst of 2, then 5 more at 2 per second


def test_a_huge_growth_reaches_the_ceiling_instead_of_overflowing() -> None:
    policy = rc.PollPolicy(growth=1e300, jitter=0.0)
    assert policy.next_interval(60, None, random.Random(0)) == policy.max_dense_interval
