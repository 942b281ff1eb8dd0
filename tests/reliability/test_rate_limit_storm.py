"""Issue 11, point 7, the slow case: every submit of a batch refused 429 three times, with
Retry-After 0.2 s, against the real simulator (in this process, real sockets), in virtual
time: the client's sleep and clock and the simulator's clock are one virtual clock that
jumps to the next wake-up whenever the event loop has nothing else to do."""

from __future__ import annotations

import asyncio
import random
import selectors
from collections.abc import Coroutine
from typing import Any

import runcomfy_async as rc
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig
from tests.conftest import EventTime

INPUTS = 100
REFUSALS = 3
RETRY_AFTER = 0.2


class VirtualSelector(selectors.DefaultSelector):
    """A selector whose idle waits are virtual: when the loop would block (no callback is
    ready and no socket has anything), the virtual clock jumps to the earliest sleeper and
    wakes it instead. Loopback sockets are ready as soon as the peer wrote, so "nothing
    ready" means every task waits on a virtual sleep or on nothing at all."""

    def __init__(self) -> None:
        super().__init__()
        self.time = EventTime(start=1000.0)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0 or self.time.wake_next():
            return events
        return super().select(timeout)


def run_virtually(selector: VirtualSelector, work: Coroutine[Any, Any, None]) -> None:
    loop = asyncio.SelectorEventLoop(selector)
    try:
        loop.run_until_complete(work)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_a_batch_whose_every_submit_is_refused_three_times_takes_about_what_it_is_told() -> None:
    """Each input gets its own model, so one fault rule per input refuses exactly its first
    three submits. 100 inputs, 32 in flight (the default): the server's own Retry-Afters
    add up to 4 rounds x 3 x 0.2 s = 2.4 s of virtual time. Measured: 4.7 s; with no pace at
    all 4.3 s (polls and jitter); the pace law before the fix 18.2 s."""
    selector = VirtualSelector()
    vt = selector.time
    models = {
        f"acme/storm-{i:03d}/text-to-image": ModelProfile(run_time=(0.0, 0.0))
        for i in range(INPUTS)
    }
    faults = [
        FaultRule(
            action="status",
            endpoint="submit",
            model_id=model_id,
            times=REFUSALS,
            status_code=429,
            retry_after=RETRY_AFTER,
        )
        for model_id in models
    ]
    config = SimulatorConfig(models=models, queue_delay=0.0, faults=faults, clock=vt.clock)
    seen: dict[str, Any] = {}

    async def work() -> None:
        async with Simulator(config) as sim:
            started = vt.now
            client = rc.Client(
                "test-key",
                base_url=sim.url,
                validate=False,
                sleep=vt.sleep,
                clock=vt.clock,
                rng=random.Random(7),
            )
            async with client:
                inputs = [(model_id, {"prompt": "a fox"}) for model_id in models]
                seen["items"] = [item async for item in client.map(inputs)]
            seen["jobs"] = sim.ledger.jobs
            seen["calls"] = [c for c in sim.ledger.call_log if c.endpoint == "submit"]
            seen["seconds"] = max(job.created_at for job in seen["jobs"]) - started

    run_virtually(selector, work())
    items, jobs, calls = seen["items"], seen["jobs"], seen["calls"]
    assert len(items) == INPUTS
    assert [item.error for item in items if not item.ok] == []  # no RateLimitError, nothing
    assert sorted(job.model_id for job in jobs) == sorted(models)  # one job per input
    assert len(calls) == INPUTS * (REFUSALS + 1)  # three refusals each, then paid once
    # The last input was admitted within 2.5 times what the server's Retry-Afters add up
    # to (2.4 s): polls, jitter and the pace's first steps, nothing like a wait per 429.
    print(f"last input admitted after {seen['seconds']:.2f} s of virtual time")
    assert seen["seconds"] <= 2.5 * 4 * REFUSALS * RETRY_AFTER, seen["seconds"]
