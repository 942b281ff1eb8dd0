"""The calls tracking makes, as the simulator saw them: one call a poll, /result once a
request is seen running, /status while it waits, and the outcome fetched once."""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import Call, ModelProfile, Quirks, Simulator, SimulatorConfig

WAN = models.Wan22TextToImage.model_id
QUICK = rc.PollPolicy(
    first_interval=0.02,
    min_interval=0.01,
    max_interval=0.1,
    seconds_per_queue_position=0.005,
    max_queue_interval=0.1,
)


async def run_batch(
    not_ready: Literal["status", "400005"], n: int = 60, max_in_flight: int = 60
) -> tuple[Simulator, dict[str, list[Call]]]:
    """n requests, 8 run at once (the rest queue); each request's calls, in arrival order."""
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.05, 0.25))},
        queue_delay=0.0,
        concurrency=8,
        seed=5,
        quirks=Quirks(not_ready=not_ready),
    )
    async with (
        Simulator(config) as sim,
        rc.Client("test-key", base_url=sim.url, poll=QUICK, timeout=10.0) as client,
    ):
        inputs = (models.Wan22TextToImage(prompt=f"prompt {i}") for i in range(n))
        items = [item async for item in client.map(inputs, max_in_flight=max_in_flight)]
    assert len(items) == n
    assert all(item.ok for item in items), [item.error for item in items if not item.ok]
    calls: dict[str, list[Call]] = defaultdict(list)
    for call in sim.ledger.call_log:
        if call.endpoint in ("status", "result") and call.subject is not None:
            calls[call.subject].append(call)
    assert set(calls) == {job.request_id for job in sim.ledger.jobs}
    return sim, calls


@pytest.mark.parametrize("not_ready", ["status", "400005"])
async def test_the_outcome_is_fetched_once_and_nothing_is_polled_after_it(
    not_ready: Literal["status", "400005"],
) -> None:
    sim, calls = await run_batch(not_ready)
    for job in sim.ledger.jobs:
        assert job.finished_at is not None
        after = [c.endpoint for c in calls[job.request_id] if c.at >= job.finished_at]
        # the poll that finds it over reads /result (or /status, then /result): then stop
        assert after in (["result"], ["status", "result"]), after
        assert calls[job.request_id][-1].endpoint == "result"


@pytest.mark.parametrize("not_ready", ["status", "400005"])
async def test_a_request_seen_running_is_polled_on_result_not_status(
    not_ready: Literal["status", "400005"],
) -> None:
    sim, calls = await run_batch(not_ready)
    queued = 0
    for job in sim.ledger.jobs:
        assert job.started_at is not None
        mine = calls[job.request_id]
        since_start = [c.endpoint for c in mine if c.at >= job.started_at]
        # at most the first look after its start is a /status call (nothing known yet)
        assert since_start.count("status") <= 1, since_start
        assert "status" not in since_start[1:], since_start
        queued += any(c.at < job.started_at for c in mine)
    assert queued >= 20  # 60 requests, 8 at a time: most were polled while they waited


async def test_with_400005_a_waiting_request_is_polled_on_status_alone() -> None:
    sim, calls = await run_batch("400005")
    for job in sim.ledger.jobs:
        assert job.started_at is not None
        waiting = [c for c in calls[job.request_id] if c.at < job.started_at]
        # /result would only say "not ready": the queue position is on /status
        assert all(c.endpoint == "status" for c in waiting), waiting
        not_ready = [c for c in calls[job.request_id] if c.status_code == 400]
        assert all(c.at >= job.started_at for c in not_ready)


async def test_where_result_tells_the_state_most_first_polls_read_result() -> None:
    sim, calls = await run_batch("status", max_in_flight=8)  # submitted as slots free
    told = [
        c.at
        for job in sim.ledger.jobs
        for c in calls[job.request_id]
        if c.endpoint == "result" and job.finished_at is not None and c.at < job.finished_at
    ]
    assert told, "no unfinished request was read on /result"
    # From the first unfinished answer on /result on, and the client having read it (a
    # first poll already on its way then was sent before it knew)
    learnt = min(told) + 0.25
    later = [mine[0] for mine in calls.values() if mine[0].at > learnt]
    assert len(later) >= 20
    assert all(first.endpoint == "result" for first in later)
