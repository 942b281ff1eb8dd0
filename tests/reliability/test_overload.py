"""Overload: a total outage with 500 requests in flight, and 429 pauses, seen from the server.

Every count and timestamp is the simulator's own call log (a process of its own, on the
same monotonic clock as this one), so the client cannot flatter itself.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig
from tests.reliability._support import WAN, SimProcess, peak_in_window

N = 500
OUTAGE = 2.0  # seconds of 100 % failure
INTERVAL = 1.0  # seconds between polls of one request (jittered ±10 %)
POLL = rc.PollPolicy(
    first_interval=INTERVAL, max_dense_interval=INTERVAL, growth=1.0, min_samples=10**9
)
# Quick retries: without the budget, every failed poll would be 5 calls within ~0.3 s.
RETRY = rc.RetryPolicy(max_attempts=5, base_backoff=0.05, max_backoff=0.2)


@pytest.fixture
def sim() -> Iterator[SimProcess]:
    process = SimProcess("--time-scale", "0.8", "--queue-delay", "0", "--seed", "5")
    try:
        yield process
    finally:
        process.stop()


async def spread_inputs() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """N inputs fed over about a second, so polls are spread as in a real, steady batch."""
    for i in range(N):
        yield WAN, {"prompt": f"overload {i}"}
        await asyncio.sleep(0.002)


class Polls:
    """Counts the polls the client starts (its runtime's status(), result() and
    try_result()), with times, and the polls its poller pool schedules: (when, when due),
    on the client's clock."""

    def __init__(self, client: rc.Client) -> None:
        self.started: list[float] = []
        self.scheduled: list[tuple[float, float]] = []
        for name in ("status", "result", "try_result"):
            real = getattr(client._runtime, name)

            async def counted(request_id: str, _real: Any = real) -> Any:
                self.started.append(time.monotonic())
                return await _real(request_id)

            setattr(client._runtime, name, counted)  # the poller pool calls the runtime's
        # A poll is scheduled from the pool's last reading of its clock (no await between):
        # that reading, not a second one here, which a busy machine can delay.
        scheduler = client._runtime.scheduler
        clock, push, read = scheduler._clock, scheduler._push, [math.nan]

        def reading() -> float:
            read[0] = clock()
            return read[0]

        def scheduling(tracker: Any, due: float) -> None:
            self.scheduled.append((read[0], due))
            push(tracker, due)

        scheduler._clock = reading
        scheduler._push = scheduling  # type: ignore[method-assign]


async def outage(
    sim: SimProcess, rule: dict[str, Any], *, connections: int = 100
) -> tuple[list[rc.Item], list[dict[str, Any]], Polls]:
    """Run N inputs; once all are submitted and polled for a second, apply `rule` to every
    call for OUTAGE seconds. The items, the simulator's call log, and the polls started."""
    async with rc.Client(
        "overload-key",
        base_url=sim.url,
        timeout=5.0,
        poll=POLL,
        retry=RETRY,
        max_connections=connections,
    ) as client:
        polls = Polls(client)
        batch = client.map(spread_inputs(), max_in_flight=N)
        consumer = asyncio.ensure_future(_collect(batch))
        while batch.progress.read < N or batch.progress.pending:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # steady polling first: the baseline
        await asyncio.to_thread(sim.add_faults, rule)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(sim.clear_faults)
        items = await asyncio.wait_for(consumer, 60)
    return items, sim.ledger()["call_log"], polls


async def _collect(batch: rc.Batch) -> list[rc.Item]:
    return [item async for item in batch]


def polls_by_request(log: list[dict[str, Any]]) -> dict[str, list[float]]:
    """When each request's polls reached the simulator (request id -> times, in order).
    Every status and result call is a poll, but for the result read right after a status
    call that said the request was over: the same poll going on. That is its request's
    last call, so it is told by the order of the calls, not their spacing, which a busy
    client stretches past any gap one could pick. (A status call that says the request
    runs is followed by polls of /result, each a poll of its own.)"""
    calls: dict[str, list[tuple[float, str]]] = {}
    for call in sorted(log, key=lambda c: c["at"]):
        if call["endpoint"] in ("status", "result"):
            calls.setdefault(call["subject"], []).append((call["at"], call["endpoint"]))
    polls: dict[str, list[float]] = {}
    for subject, mine in calls.items():
        last = len(mine) - 1
        if last > 0 and mine[last][1] == "result" and mine[last - 1][1] == "status":
            mine = mine[:last]  # the outcome read right behind the poll that found it over
        polls[subject] = [at for at, _ in mine]
    return polls


def poll_times(log: list[dict[str, Any]], start: float, end: float) -> list[float]:
    """When polls reached the simulator in [start, end), of every request."""
    return sorted(t for times in polls_by_request(log).values() for t in times if start <= t < end)


async def test_an_outage_of_503s_stays_within_the_retry_budget_and_every_request_finishes(
    sim: SimProcess,
) -> None:
    items, log, polls = await outage(sim, {"action": "status", "status_code": 503})
    failed = [c["at"] for c in log if c["fault"] == "status"]
    assert failed
    began, ended = min(failed), max(failed)

    # The bound, from the policies: during the outage each request starts at most one poll
    # per interval (less its jitter), and retries come only out of the budget.
    retries = RETRY.budget / RETRY.retry_cost
    per_request = math.floor((ended - began) / (INTERVAL * (1 - POLL.jitter))) + 1
    assert len(failed) <= N * per_request + retries
    # Tighter, with the polls this client really started: everything beyond them is a
    # retry, and retries stayed within the budget (a call already on the wire when the
    # outage began is given 0.25 s of slack).
    started = sum(1 for t in polls.started if began - 0.25 <= t <= ended)
    assert len(failed) <= started + retries
    assert len(failed) < 2 * started  # no storm: not even twice the calls the work needed

    # After recovery every request finishes, as the simulator says it did.
    assert len(items) == N
    assert all(item.ok for item in items), [item.error for item in items if not item.ok][:3]
    assert sum(1 for c in log if c["endpoint"] == "submit") == N

    # No stampede: the outage did not make the client poll any request sooner than its
    # interval. Its first poll after the outage, and every one after that, comes at least
    # an interval (less its jitter, and the 20 ms early the poller may hand a poll out)
    # after the one before, as in steady polling; the retries were spent in the outage's
    # first moments, and nothing answered since to refund them. Measured per request, as
    # a busy machine cannot shorten a request's gaps: its next poll is timed from the
    # answer to the last, so a stall only delays it (a peak of all polls in 50 ms, the
    # earlier check, counted the polls a stall had released together: 128 vs 118 once).
    soonest = INTERVAL * (1 - POLL.jitter) - 0.05
    hurried = [
        (round(at - ended, 3), round(at - last, 3))  # (after the outage, since its last poll)
        for times in polls_by_request(log).values()
        for last, at in itertools.pairwise(times)
        if at >= ended and at - last < soonest
    ]
    assert not hurried, hurried[:5]
    # Nor held its polls for a moment they then share (the way held polls wake together):
    # every poll it scheduled from the outage on is due one jittered interval from when it
    # was scheduled, after a failed poll as after any other. On the client's own clock, so
    # a slow machine moves when that is, never the interval.
    intervals = [due - at for at, due in polls.scheduled if at >= began]
    assert intervals
    low, high = INTERVAL * (1 - POLL.jitter), INTERVAL * (1 + POLL.jitter)
    assert all(low - 1e-9 <= s <= high + 1e-9 for s in intervals), (min(intervals), max(intervals))


async def test_after_a_429_pause_the_held_polls_do_not_wake_together(sim: SimProcess) -> None:
    rule = {"action": "status", "status_code": 429, "retry_after": 1}
    items, log, _ = await outage(sim, rule)
    limited = [c["at"] for c in log if c["fault"] == "status"]
    assert all(item.ok for item in items)
    began, ended = min(limited), max(limited)
    before = peak_in_window(poll_times(log, began - 1.0, began), 0.05)
    after = peak_in_window(poll_times(log, ended, ended + 1.5), 0.05)
    assert after <= max(2 * before, N // 5), (before, after)


# ------------------------------------------------------------------ Retry-After, both forms


@pytest.fixture
async def busy_sim() -> AsyncIterator[Simulator]:
    config = SimulatorConfig(models={WAN: ModelProfile(run_time=(2.5, 2.5))}, queue_delay=0.0)
    async with Simulator(config) as simulator:
        yield simulator


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_a_429_is_waited_out_by_its_call_while_the_whole_client_slows(
    busy_sim: Simulator, form: str
) -> None:
    quick = rc.PollPolicy(first_interval=0.05, min_interval=0.02, max_dense_interval=0.1)
    async with rc.Client("k", base_url=busy_sim.url, poll=quick, retry=RETRY) as client:
        requests = [await client.submit(WAN, {"prompt": f"p{i}"}) for i in range(40)]
        waits = [asyncio.ensure_future(r.wait(timeout=20)) for r in requests]
        await asyncio.sleep(0.6)  # every request is being polled, for the whole "before"
        date_until = None
        if form == "seconds":
            value: str | int = 1
        else:  # HTTP dates have whole seconds: the second boundary after next
            wall = time.time()
            date = math.floor(wall) + 2
            value = email.utils.formatdate(date, usegmt=True)
            date_until = busy_sim.now() + (date - wall)
        busy_sim.faults.add(FaultRule(action="status", status_code=429, retry_after=value, times=1))
        await asyncio.gather(*waits)
    log = busy_sim.ledger.call_log
    limited = next(c for c in log if c.status_code == 429)
    until = limited.at + 1.0 if date_until is None else date_until
    # The call that got the 429 is not sent again before Retry-After has passed.
    again = [c.at for c in log if c.subject == limited.subject and c.at > limited.at]
    assert min(again) >= until - 0.05, min(again) - until
    # The others are not paused (a pause per 429 is what made rate-limited batches crawl),
    # but the client's pace slowed: fewer calls in the tenth of a second after than in an
    # average tenth before. (Only then: with no second 429 the pace climbs back within a
    # few dwells of 0.2 s, and delayed polls catch up, so a longer window measures that.)
    before = sum(1 for c in log if limited.at - 0.5 <= c.at < limited.at) / 5
    after = sum(1 for c in log if limited.at + 0.05 <= c.at < limited.at + 0.15)
    assert 0 < after < before, (before, after)
