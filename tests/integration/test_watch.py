"""Client.watch: the state changes of one request, through the client's poller pool."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig

WAN = models.Wan22TextToImage.model_id
# Queued polls held back 0.01 s a place, not the default 0.5 s: a request one place back
# was next polled after 0.5 s, and a 0.3 s run that began meanwhile could end unseen on a
# busy machine (it read in_queue, then completed: a full-suite run on 2 cores).
QUICK = rc.PollPolicy(
    first_interval=0.02,
    min_interval=0.01,
    max_interval=0.05,
    seconds_per_queue_position=0.01,
    max_queue_interval=0.05,
)


def client_for(sim: Simulator) -> rc.Client:
    return rc.Client("k", base_url=sim.url, poll=QUICK)


async def test_watch_yields_each_change_once_and_ends_with_success() -> None:
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.3, 0.3))}, concurrency=1, queue_delay=0.0
    )
    async with Simulator(config) as sim, client_for(sim) as client:
        first = await client.submit(WAN, {"prompt": "runs first"})
        second = await client.submit(WAN, {"prompt": "waits its turn"})
        states = [state async for state in client.watch(second, timeout=10)]
        result = await client.result(second)
    assert states[0] is rc.State.IN_QUEUE  # the account runs one at a time
    assert rc.State.IN_PROGRESS in states
    assert states[-1] is rc.State.SUCCEEDED
    assert all(a != b for a, b in itertools.pairwise(states))  # changes only
    assert result.succeeded
    assert first.request_id != second.request_id


async def test_watch_ends_with_the_failed_state_and_result_says_why() -> None:
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.05, 0.05), failure_rate=1.0)}, queue_delay=0.0
    )
    async with Simulator(config) as sim, client_for(sim) as client:
        request = await client.submit(WAN, {"prompt": "fails"})
        states = [state async for state in client.watch(request, timeout=10)]
        result = await client.result(request)
    assert states[-1] is rc.State.FAILED
    assert result.state is rc.State.FAILED
    assert result.error is not None


async def test_watching_an_unknown_request_raises_not_found() -> None:
    async with Simulator(SimulatorConfig()) as sim, client_for(sim) as client:
        with pytest.raises(rc.NotFoundError):
            async for _ in client.watch("no-such-request", timeout=5):
                pass


async def test_watch_times_out_and_leaving_early_stops_polling() -> None:
    slow = SimulatorConfig(models={WAN: ModelProfile(run_time=(30.0, 30.0))}, queue_delay=0.0)
    async with Simulator(slow) as sim, client_for(sim) as client:
        request = await client.submit(WAN, {"prompt": "slow"})
        with pytest.raises(rc.WaitTimeoutError) as info:
            async for _ in client.watch(request, timeout=0.3):
                pass
        assert info.value.timeout == 0.3
        async with contextlib.aclosing(client.watch(request)) as states:
            async for state in states:
                assert state is rc.State.IN_PROGRESS
                break  # leave early: the pool stops polling it
        assert client._runtime._scheduler.tracked == 0
        calls = len(sim.ledger.call_log)
        await asyncio.sleep(0.3)
        assert len(sim.ledger.call_log) == calls  # no more polls for it
        assert sim.ledger.job(request.request_id).state.value == "in_progress"


async def test_cancel_many_reports_each_outcome_in_order_and_never_raises() -> None:
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(30.0, 30.0))}, concurrency=1, queue_delay=0.0
    )
    async with Simulator(config) as sim, client_for(sim) as client:
        running = await client.submit(WAN, {"prompt": "runs"})
        queued = [await client.submit(WAN, {"prompt": f"waits {n}"}) for n in range(3)]
        await asyncio.sleep(0.1)
        outcomes = await client.cancel_many([running, *queued, "no-such-request"], timeout=5)
    assert [o.request_id for o in outcomes] == [
        running.request_id,
        *(q.request_id for q in queued),
        "no-such-request",
    ]
    assert [o.cancelled for o in outcomes] == [False, True, True, True, False]
    assert outcomes[-1].outcome == "unknown"  # a cancel that failed is reported, not raised
    assert [sim.ledger.job(q.request_id).state.value for q in queued] == ["cancelled"] * 3
