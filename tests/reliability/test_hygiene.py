"""Resource hygiene: however a batch ends, nothing is left open, running or half-written.

Each test runs with asyncio debug mode on, records every warning and unraisable exception
(ResourceWarning included: pyproject makes them errors, here they are collected and shown),
and checks after the client closed that its connector holds no connection and that no task
is left but the in-process simulator's own handlers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

import runcomfy_async as rc
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig
from tests.reliability._support import WAN

QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
SLOW = {WAN: ModelProfile(run_time=(20.0, 20.0))}
FAST = {WAN: ModelProfile(run_time=(0.05, 0.15))}


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the client side (the in-process simulator's handler tasks left out)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and not t.get_coro().__qualname__.startswith("RequestHandler")  # type: ignore[union-attr]
    }


class Watch:
    """What a test leaves behind: warnings, unraisable exceptions, asyncio's complaints."""

    def __init__(self) -> None:
        self.warnings: list[warnings.WarningMessage] = []
        self.unraisable: list[Any] = []
        self.complaints: list[str] = []


@contextlib.asynccontextmanager
async def watched(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Watch]:
    watch = Watch()
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 60.0  # a slow 2-core runner is not what is tested here
    caplog.set_level(logging.WARNING, logger="asyncio")
    hook, sys.unraisablehook = sys.unraisablehook, watch.unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield watch
            await asyncio.sleep(0.05)
            gc.collect()
        watch.warnings = list(caught)
    finally:
        sys.unraisablehook = hook
        loop.set_debug(False)
    watch.complaints = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    resource = [w for w in watch.warnings if issubclass(w.category, ResourceWarning)]
    never_awaited = [w for w in watch.warnings if "never awaited" in str(w.message)]
    assert [(str(w.message), w.filename, w.lineno) for w in resource] == []
    assert never_awaited == []
    assert watch.unraisable == []
    assert watch.complaints == []


class Opened:
    """The client's sessions, kept to be checked after the client let go of them."""

    def __init__(self, client: rc.Client) -> None:
        self.client = client
        self.sessions: list[aiohttp.ClientSession] = []

    def note(self) -> None:
        for session in (
            self.client._runtime.transport._session,
            self.client._runtime._downloader._session if self.client._runtime._downloader else None,
        ):
            if session is not None and session not in self.sessions:
                self.sessions.append(session)

    def assert_all_closed(self) -> None:
        assert self.sessions
        for session in self.sessions:
            assert session.closed
            connector = session.connector
            assert connector is None or connector.closed
            if connector is not None:
                assert not connector._acquired  # no connection checked out
                assert not connector._conns  # none kept alive either


async def settle(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


def batch_tasks() -> list[asyncio.Task[Any]]:
    # anyio names a task after its function; its coroutine is anyio's own wrapper.
    return [t for t in other_tasks() if "_Engine" in t.get_name()]


async def reap() -> list[str]:
    """End and collect whatever a (buggy) client left running, so that the next test does
    not inherit it; the names of the tasks that were left."""
    left = other_tasks()
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        gc.collect()
    return sorted({task.get_name() for task in left})


async def run_and_close(
    config: SimulatorConfig, body: Callable[[Simulator, rc.Client], Any], **client: Any
) -> Simulator:
    """Run `body` with a client on a simulator, then check the client left nothing."""
    async with Simulator(config) as sim:
        async with rc.Client("k", base_url=sim.url, poll=QUICK, **client) as c:
            opened = Opened(c)
            opened.note()
            await body(sim, c)
            opened.note()
            await settle(lambda: not batch_tasks())
            assert batch_tasks() == []  # the batch's own work ended with it
        opened.assert_all_closed()
        assert other_tasks() == set()
    return sim


def inputs(n: int) -> list[tuple[str, dict[str, str]]]:
    return [(WAN, {"prompt": f"p{i}"}) for i in range(n)]


async def test_a_plain_break_leaves_nothing_open(caplog: pytest.LogCaptureFixture) -> None:
    async def body(sim: Simulator, client: rc.Client) -> None:
        rejected_first = [("not a model id", {}), *inputs(30)]  # its item comes at once
        async for _ in client.map(rejected_first, max_in_flight=10):
            break
        await settle(lambda: sim.ledger.calls["cancel"] >= 1)

    async with watched(caplog):
        sim = await run_and_close(SimulatorConfig(models=SLOW, queue_delay=0, concurrency=2), body)
    assert collections.Counter(j.state.value for j in sim.ledger.jobs)["in_queue"] == 0


async def test_a_break_then_closing_the_client_at_once_leaves_nothing_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No wait between the two: the batch's end (spawned when it is let go of) and the
    # cancels of submits landing after it must finish before the client is closed.
    async def body(sim: Simulator, client: rc.Client) -> None:
        async for _ in client.map([("not a model id", {}), *inputs(40)], max_in_flight=20):
            break

    async with watched(caplog):
        sim = await run_and_close(SimulatorConfig(models=SLOW, queue_delay=0, concurrency=2), body)
    states = collections.Counter(j.state.value for j in sim.ledger.jobs)
    assert states["in_queue"] == 0
    assert sim.ledger.calls["cancel"] >= 1


async def test_a_cancelled_consumer_leaves_nothing_open(caplog: pytest.LogCaptureFixture) -> None:
    async def body(sim: Simulator, client: rc.Client) -> None:
        async def consume() -> None:
            async with client.map(inputs(12), max_in_flight=12) as batch:
                async for _ in batch:
                    pass

        task = asyncio.ensure_future(consume())
        await settle(lambda: len(sim.ledger.jobs) == 12)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async with watched(caplog):
        sim = await run_and_close(SimulatorConfig(models=SLOW, queue_delay=0, concurrency=3), body)
    states = collections.Counter(job.state.value for job in sim.ledger.jobs)
    assert states == {"cancelled": 9, "in_progress": 3}


async def test_a_batch_timeout_leaves_nothing_open(caplog: pytest.LogCaptureFixture) -> None:
    async def body(sim: Simulator, client: rc.Client) -> None:
        items = [item async for item in client.map(inputs(6), timeout=0.4)]
        assert len(items) == 6
        assert all(isinstance(item.error, rc.WaitTimeoutError) for item in items)
        await settle(lambda: sim.ledger.calls["cancel"] >= 4)

    async with watched(caplog):
        await run_and_close(SimulatorConfig(models=SLOW, queue_delay=0, concurrency=2), body)


async def test_an_error_in_the_consumer_leaves_nothing_open_or_half_written(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    async def consume(client: rc.Client) -> None:
        journal = tmp_path / "j.sqlite"
        async with client.map(inputs(20), max_in_flight=10, download_to=out, journal=journal) as b:
            async for _ in b:
                raise ZeroDivisionError  # the consumer's own bug, on the first item

    async def body(sim: Simulator, client: rc.Client) -> None:
        with pytest.raises(ZeroDivisionError):
            await consume(client)

    faults = [FaultRule(action="latency", endpoint="files", seconds=0.05)]
    config = SimulatorConfig(models=FAST, queue_delay=0, faults=faults)
    async with watched(caplog):
        await run_and_close(config, body)
    names = [p.name for p in out.iterdir()]
    assert names
    assert [n for n in names if n.endswith(".part") or n.startswith(".")] == []  # no partials


async def test_a_cancelled_wait_and_a_flaky_run_leave_nothing_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(sim: Simulator, client: rc.Client) -> None:
        request = await client.submit(WAN, {"prompt": "waited on"})
        task = asyncio.ensure_future(request.wait())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sim.faults.add(FaultRule(action="reset_after_read", endpoint="status", probability=0.5))
        sim.faults.add(FaultRule(action="truncate", endpoint="result", probability=0.5))
        with pytest.raises(rc.WaitTimeoutError):
            await client.run(WAN, {"prompt": "never done"}, timeout=0.3)

    async with watched(caplog):
        await run_and_close(SimulatorConfig(models=SLOW, queue_delay=0), body)


# ------------------------------------------------------------------ closing the client mid-batch


@pytest.mark.parametrize("moment", ["submits-in-flight", "tracking"])
async def test_closing_the_client_mid_batch_ends_the_consumer_with_every_input_accounted(
    moment: str,
) -> None:
    faults = [FaultRule(action="latency", endpoint="submit", seconds=0.3)]
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.5, 0.5))},
        queue_delay=0,
        faults=faults if moment == "submits-in-flight" else [],
    )
    got: list[rc.Item] = []
    async with Simulator(config) as sim:
        client = rc.Client("k", base_url=sim.url, poll=QUICK)
        await client.__aenter__()
        batch = client.map(inputs(40), max_in_flight=20)

        async def consume() -> None:
            async for item in batch:
                got.append(item)

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0.15)
        await client.aclose()
        done, _ = await asyncio.wait({consumer}, timeout=1.5)
        await asyncio.sleep(0.4)
        jobs = {job.request_id: job for job in sim.ledger.jobs}
        await reap()  # the consumer too, if it still waits
    assert done, f"the consumer still waits after the client closed ({len(got)} items)"
    raised = consumer.exception()
    reported = {item.request_id for item in got} | {
        item.input[1]["prompt"] for item in got if isinstance(item.error, rc.SubmissionUnknownError)
    }
    unreported = [
        rid for rid, job in jobs.items() if {rid, job.inputs["prompt"]}.isdisjoint(reported)
    ]
    assert unreported == [], "jobs RunComfy created that no item reports"
    assert isinstance(raised, rc.RunComfyError) or len(got) == 40


async def test_a_submit_answered_while_the_client_closes_starts_nothing_that_outlives_it() -> None:
    async with Simulator(SimulatorConfig(models=SLOW, queue_delay=0)) as sim:
        client = rc.Client("k", base_url=sim.url, poll=QUICK)
        await client.__aenter__()
        closing = asyncio.Event()
        post, close = client._runtime.post, client._runtime._service.close

        async def answered_as_the_client_closes(*args: Any, **kwargs: Any) -> Any:
            request = await post(*args, **kwargs)
            # The answer is in hand when close() begins. anyio does not cancel a task whose
            # awaited future is already done, so this moment happens unpatched (in about one
            # plain `break` out of a batch in two, under pytest); the shield only pins it.
            with anyio.CancelScope(shield=True):
                await closing.wait()
            return request

        async def closing_now(**linger: float) -> None:
            closing.set()
            await close(**linger)

        client._runtime.post = answered_as_the_client_closes  # type: ignore[method-assign]
        client._runtime._service.close = closing_now  # type: ignore[method-assign]
        consumer = asyncio.ensure_future(drain(client.map(inputs(3))))
        await settle(lambda: len(sim.ledger.jobs) == 3)
        await client.aclose()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        left = await reap()
    assert left == [], "tasks still running after the client closed"


async def drain(batch: rc.Batch) -> None:
    async for _ in batch:
        pass


# ------------------------------------------------------------------ a failing callback


async def test_a_failing_on_change_callback_neither_hangs_the_batch_nor_leaks_the_session() -> None:
    told: collections.Counter[int] = collections.Counter()

    def on_change(change: rc.Change) -> None:
        if change.state is rc.State.SUCCEEDED:
            told[change.index] += 1
            if change.index == 0 and told[0] == 2:  # its second word of the same success
                raise ValueError("a bug in the caller's callback")

    async with Simulator(SimulatorConfig(models=FAST, queue_delay=0)) as sim:
        client = rc.Client("k", base_url=sim.url, poll=QUICK)
        await client.__aenter__()
        session = client._runtime.transport._session
        assert session is not None
        consumer = asyncio.ensure_future(drain(client.map(inputs(5), on_change=on_change)))
        done, _ = await asyncio.wait({consumer}, timeout=1.5)
        try:
            await client.aclose()
            closed_cleanly = True
        except BaseException:
            closed_cleanly = False
        session_closed = session.closed
        if not session_closed:
            await session.close()
        await reap()
    assert done, "the batch never ended"
    assert closed_cleanly, "aclose() raised the callback's error"
    assert session_closed
