"""map() and as_completed() against the simulator: every input once, nothing paid twice."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import FaultRule, ModelProfile, Quirks, Simulator, SimulatorConfig

WAN = models.Wan22TextToImage.model_id
QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)


def sim_config(**kwargs: Any) -> SimulatorConfig:
    kwargs.setdefault("models", {WAN: ModelProfile(run_time=(0.05, 0.2))})
    kwargs.setdefault("queue_delay", 0.0)
    return SimulatorConfig(**kwargs)


def client_for(sim: Simulator, **kwargs: Any) -> rc.Client:
    kwargs.setdefault("poll", QUICK)
    kwargs.setdefault("retry", rc.RetryPolicy(base_backoff=0.01, max_backoff=0.05))
    return rc.Client("test-key", base_url=sim.url, timeout=5.0, **kwargs)


def prompts(n: int, *, invalid: set[int] = frozenset()) -> Iterator[models.Wan22TextToImage]:
    for i in range(n):
        yield models.Wan22TextToImage(prompt=("x" * 801) if i in invalid else f"prompt {i}")


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the client side (the in-process simulator's handler tasks left out)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and not t.get_coro().__qualname__.startswith("RequestHandler")  # type: ignore[union-attr]
    }


async def test_every_input_yields_one_item_and_is_paid_for_once() -> None:
    invalid = set(range(0, 500, 25))  # 20 inputs break the schema
    async with (
        Simulator(sim_config(failure_rate=0.1, seed=3)) as sim,
        client_for(sim) as client,
    ):
        items = [item async for item in client.map(prompts(500, invalid=invalid), max_in_flight=50)]
        jobs = {job.request_id: job for job in sim.ledger.jobs}
        peak = sim.ledger.peak_running
    assert sorted(item.index for item in items) == list(range(500))
    assert {item.index for item in items if isinstance(item.error, rc.InvalidInputError)} == invalid
    assert all(item.request_id is None for item in items if item.index in invalid)
    assert len(jobs) == 480
    assert set(sim.ledger.jobs_per_input().values()) == {1}
    assert peak <= 50
    for item in items:  # what the client reports is what the simulator did
        if item.request_id is None:
            continue
        job = jobs[item.request_id]
        assert job.inputs == {"prompt": f"prompt {item.index}"}
        if job.state.value == "succeeded":
            assert item.ok
            assert item.result is not None
            assert item.result.output is not None
        else:
            assert isinstance(item.error, rc.RequestFailedError)
            assert item.error.error == job.error
    failed = sum(1 for job in jobs.values() if job.state.value == "failed")
    assert 20 <= failed <= 80  # about 10 % of 480


async def test_inputs_are_read_lazily() -> None:
    pulled = 0

    def counting() -> Iterator[tuple[str, dict[str, str]]]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield WAN, {"prompt": f"p{i}"}

    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        async with client.map(counting(), max_in_flight=8) as batch:
            async for _ in batch:
                break
        # 8 outstanding, and taking the first item frees a slot for one more
        assert pulled <= 8 + 2
        assert len(sim.ledger.jobs) <= 9


async def test_async_iterables_keys_progress_and_changes() -> None:
    async def source() -> AsyncIterator[models.Wan22TextToImage]:
        for i in range(12):
            yield models.Wan22TextToImage(prompt=f"p{i}")

    changes: list[rc.Change] = []
    async with Simulator(sim_config(concurrency=3)) as sim, client_for(sim) as client:
        batch = client.map(
            source(), max_in_flight=6, key=lambda i: i.prompt, on_change=changes.append
        )
        items = [item async for item in batch]
    assert sorted(str(item.key) for item in items) == sorted(f"p{i}" for i in range(12))
    assert batch.progress.succeeded == 12
    assert batch.progress.done == batch.progress.read == 12
    seen = collections.defaultdict(list)
    for change in changes:
        seen[change.key].append(change.state)
    for states in seen.values():
        assert states[-1] is rc.State.SUCCEEDED
    # Queued and running are reported as polls see them; once the run times are learnt, a
    # request is first polled when the shortest runs end, so some go straight to completed.
    between = (rc.State.IN_QUEUE, rc.State.IN_PROGRESS)
    assert any(state in between for states in seen.values() for state in states)


async def queued_batch(sim: Simulator, client: rc.Client) -> rc.Batch:
    """A batch with 3 running and 12 queued requests, and one rejected input first."""
    inputs = [("not/valid ", {})] + [(WAN, {"prompt": f"p{i}"}) for i in range(15)]
    batch = client.map(inputs, max_in_flight=16)
    await batch.__anext__()  # the rejected input's item comes at once
    while len(sim.ledger.jobs) < 15:
        await asyncio.sleep(0.01)
    return batch


SLOW = {WAN: ModelProfile(run_time=(30.0, 30.0))}


async def test_leaving_early_cancels_the_queued_requests_and_leaves_no_task() -> None:
    async with Simulator(sim_config(models=SLOW, concurrency=3)) as sim:
        async with client_for(sim) as client:
            batch = await queued_batch(sim, client)
            await batch.aclose()
            states = collections.Counter(job.state.value for job in sim.ledger.jobs)
            assert states == {"cancelled": 12, "in_progress": 3}
            running = {
                job.request_id for job in sim.ledger.jobs if job.state.value == "in_progress"
            }
            assert set(batch.unfinished) == running
            names = [t.get_name() for t in other_tasks()]
            assert any("Scheduler" in name for name in names)  # the check sees the client's tasks
            assert [name for name in names if "_Engine" in name] == []
        assert other_tasks() == set()


async def test_a_plain_break_cancels_the_queued_requests_too() -> None:
    async with Simulator(sim_config(models=SLOW, concurrency=2)) as sim:
        async with client_for(sim) as client:
            inputs = [("bad id", {})] + [(WAN, {"prompt": f"p{i}"}) for i in range(6)]
            async for _ in client.map(inputs, max_in_flight=7):
                break
            for _ in range(200):
                if sim.ledger.calls["cancel"] >= 4:
                    break
                await asyncio.sleep(0.02)
            states = collections.Counter(job.state.value for job in sim.ledger.jobs)
        assert states["in_queue"] == 0
        assert states["cancelled"] == len(sim.ledger.jobs) - 2


async def test_cancelling_the_consuming_task_cancels_queued_requests() -> None:
    async with Simulator(sim_config(models=SLOW, concurrency=3)) as sim:
        async with client_for(sim) as client:
            batch = await queued_batch(sim, client)
            consumer = asyncio.ensure_future(batch.__anext__())
            await asyncio.sleep(0.05)
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
            states = collections.Counter(job.state.value for job in sim.ledger.jobs)
        assert states == {"cancelled": 12, "in_progress": 3}


async def test_the_batch_deadline_reports_every_input_and_cancels_queued_ones() -> None:
    async with (
        Simulator(sim_config(models=SLOW, concurrency=2)) as sim,
        client_for(sim) as client,
    ):
        inputs = [(WAN, {"prompt": f"p{i}"}) for i in range(6)]
        items = [item async for item in client.map(inputs, timeout=0.5)]
        await asyncio.sleep(0.3)  # the background cancels of the queued ones land
        states = {job.request_id: job.state.value for job in sim.ledger.jobs}
    assert len(items) == 6
    assert all(isinstance(item.error, rc.WaitTimeoutError) for item in items)
    assert sorted(states.values()) == ["cancelled"] * 4 + ["in_progress"] * 2
    for item in items:
        assert item.request_id in states
        assert ("goes on" in str(item.error)) == (states[item.request_id] == "in_progress")


async def test_a_rate_limit_slows_the_whole_pool_and_the_limited_poll_waits() -> None:
    config = sim_config(models={WAN: ModelProfile(run_time=(1.0, 1.2))})
    async with Simulator(config) as sim, client_for(sim) as client:
        inputs = [(WAN, {"prompt": f"p{i}"}) for i in range(20)]
        batch = client.map(inputs, max_in_flight=20)
        first = await batch.__anext__()
        assert client._runtime.transport.pace.rate("other") is None  # no 429 yet: not paced
        sim.faults.add(FaultRule(action="status", status_code=429, retry_after=1, times=1))
        while not any(call.status_code == 429 for call in sim.ledger.call_log):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        paced = client._runtime.transport.pace.rate("other")  # every poll of the client slowed
        rest = [item async for item in batch]
        log = [call for call in sim.ledger.call_log if call.endpoint in ("status", "result")]
    assert first.ok
    assert all(item.ok for item in rest)
    assert paced is not None
    limited = next(call for call in log if call.status_code == 429)
    # The others go on at the slower pace, not paused for the whole Retry-After.
    others = [call for call in log if limited.at < call.at < limited.at + 1.0]
    assert others  # not a pause of the whole client


async def test_flapping_polls_never_fail_a_request() -> None:
    faults = [
        FaultRule(action="status", endpoint="status", status_code=503, probability=0.2),
        FaultRule(action="reset_after_read", endpoint="status", probability=0.1),
        FaultRule(action="truncate", endpoint="result", probability=0.2),
    ]
    config = sim_config(faults=faults, quirks=Quirks(fresh_404_seconds=0.1), failure_rate=0.2)
    async with (
        Simulator(config) as sim,
        client_for(sim, retry=rc.RetryPolicy(max_attempts=1)) as client,
    ):
        items = [item async for item in client.map(prompts(60), max_in_flight=30)]
        truth = {job.request_id: job.state.value for job in sim.ledger.jobs}
    assert len(items) == 60
    for item in items:
        assert item.request_id is not None
        assert ("succeeded" if item.ok else "failed") == truth[item.request_id]


async def test_as_completed_yields_results_in_completion_order() -> None:
    catalog = {
        "acme/fast": ModelProfile(run_time=(0.05, 0.05)),
        "acme/slow": ModelProfile(run_time=(0.6, 0.6)),
        "acme/broken": ModelProfile(run_time=(0.3, 0.3), failure_rate=1.0),
    }
    async with Simulator(sim_config(models=catalog)) as sim, client_for(sim) as client:
        slow = await client.submit("acme/slow", {"x": 1})
        broken = await client.submit("acme/broken", {"x": 1})
        fast = await client.submit("acme/fast", {"x": 1})
        results = [r async for r in client.as_completed([slow, broken.request_id, fast])]
        with pytest.raises(rc.NotFoundError):
            async for _ in client.as_completed(["no-such-request"]):
                pass
        late = await client.submit("acme/slow", {"x": 2})
        with pytest.raises(rc.WaitTimeoutError):
            async for _ in client.as_completed([late], timeout=0.1):
                pass
    assert [r.request_id for r in results] == [
        fast.request_id,
        broken.request_id,
        slow.request_id,
    ]
    assert [r.state for r in results] == [rc.State.SUCCEEDED, rc.State.FAILED, rc.State.SUCCEEDED]


async def test_a_batch_reads_its_inputs_without_a_loop_turn_each_and_caps_those_sending() -> None:
    """With polls ready on every turn of the event loop, one input read a turn held 10,000
    submits to about 3 on the wire at a time (their span twice a raw loop's). Inputs are
    now read while slots are free without yielding, and at most max(32, max_connections)
    are between reading and acceptance, the rest waiting unread (not as 10,000 requests
    queued in aiohttp: 175 MiB against 62)."""
    turns = 0

    async def spin() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    read_at: list[int] = []

    def inputs() -> Iterator[models.Wan22TextToImage]:
        for i in range(600):
            read_at.append(turns)
            yield models.Wan22TextToImage(prompt=f"prompt {i}")

    latency = FaultRule(action="latency", endpoint="submit", seconds=0.2)
    config = sim_config(models={WAN: ModelProfile(run_time=(60.0, 60.0))}, faults=[latency])
    async with Simulator(config) as sim, client_for(sim, max_connections=40) as client:
        spinner = asyncio.ensure_future(spin())
        ahead = 0  # inputs read beyond those the simulator has answered
        async with client.map(inputs(), max_in_flight=600) as batch:
            while len(sim.ledger.jobs) < 600:
                ahead = max(ahead, batch.progress.read - len(sim.ledger.jobs))
                await asyncio.sleep(0.01)
            arrivals = sorted(c.at for c in sim.ledger.call_log if c.endpoint == "submit")
        spinner.cancel()
    # The first 40 inputs (those that may be sending) are read within a turn or two.
    assert read_at[39] - read_at[0] <= 2, read_at[:40]
    # No more are read than can be sending (a job is in the ledger before its answer's
    # 0.2 s of latency: 40 sending and up to 40 being answered), not all 600 at once.
    assert 40 <= ahead <= 80, ahead
    # And the pool is kept busy: 600 submits of 0.2 s on 40 connections take about 3 s.
    assert arrivals[-1] - arrivals[0] < 8.0
    assert batch.progress.read == 600


class LoopTurns:
    """Counts the turns of the event loop while in its `with` block."""

    def __init__(self) -> None:
        self.turns = 0

    async def _count(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.turns += 1

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.ensure_future(self._count())
        await asyncio.sleep(0)
        self.turns = 0
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()


async def test_items_already_made_reach_the_consumer_without_a_loop_turn_each() -> None:
    # On a loop busy with polls a turn takes milliseconds: handing out one finished item a
    # turn held results from their consumer for up to 0.6 s (1,000 requests of 1-3 s).
    n = 300
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        batch = client.map(prompts(n), max_in_flight=n)
        async with batch:
            first = await batch.__anext__()
            with anyio.fail_after(20):
                while batch.progress.done < n:  # every item made, waiting to be taken
                    await asyncio.sleep(0.01)
            async with LoopTurns() as loop:
                rest = [item async for item in batch]
    assert first.ok
    assert len(rest) == n - 1
    assert all(item.ok for item in rest)
    assert loop.turns <= 8, f"{loop.turns} loop turns to hand out {n - 1} items already made"


async def test_as_completed_hands_out_results_already_in_without_a_loop_turn_each() -> None:
    n = 300
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        requests = [await client.submit(p) for p in prompts(n)]
        results = client.as_completed(requests)
        first = await anext(results)
        with anyio.fail_after(20):
            while client._runtime.scheduler.tracked:  # every outcome in, waiting to be taken
                await asyncio.sleep(0.01)
        async with LoopTurns() as loop:
            rest = [result async for result in results]
    assert first.succeeded
    assert len(rest) == n - 1
    assert loop.turns <= 8, f"{loop.turns} loop turns to hand out {n - 1} results already in"
