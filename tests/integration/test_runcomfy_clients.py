"""The SDK against the simulator's answers as RunComfy's own clients see them (issue 19)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import (
    ALTERNATIVE_STATE_WORDS,
    FaultRule,
    ModelProfile,
    Quirks,
    Simulator,
    SimulatorConfig,
)
from runcomfy_async.simulator._catalog_extra import FLUX_DEV

WAN = models.Wan22TextToImage.model_id
QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.05)


def client_for(sim: Simulator, **kwargs: Any) -> rc.Client:
    kwargs.setdefault("poll", QUICK)
    kwargs.setdefault("retry", rc.RetryPolicy(base_backoff=0.01, max_backoff=0.05))
    return rc.Client("test-key", base_url=sim.url, timeout=5.0, **kwargs)


def journal_states(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT state FROM items ORDER BY idx")]


async def test_the_estimate_equals_the_bill_of_an_image_model_priced_per_output() -> None:
    inputs = [
        {"prompt": "one"},  # the schema's default: one image
        {"prompt": "three", "num_images": 3},
        {"prompt": "four", "num_images": 4},
    ]
    async with (
        Simulator(SimulatorConfig(time_scale=0.001, queue_delay=0.0)) as sim,
        client_for(sim) as client,
    ):
        info = await client.model_info(FLUX_DEV)
        estimate = rc.estimate_cost(info, inputs)
        results = [await client.run(FLUX_DEV, one, timeout=30) for one in inputs]
    assert info.price_unit == "output"
    assert (estimate.unit, estimate.units) == ("output", 8)
    assert estimate.usd == pytest.approx(sim.ledger.total_charged)
    assert estimate.usd == pytest.approx(8 * 0.025)
    assert [len(r.output.urls) for r in results if r.output] == [1, 3, 4]
    assert sum(r.cost or 0.0 for r in results) == pytest.approx(estimate.usd)


async def test_model_info_reads_the_simulators_catalog_entry() -> None:
    async with Simulator(SimulatorConfig()) as sim, client_for(sim) as client:
        wan = await client.model_info(WAN)
        kling = await client.model_info("kling/kling-2-1/master/text-to-video")
    assert (wan.name, wan.categories, wan.category) == (
        "Wan 2.2 Text to Image",
        ("text-to-image",),
        "text-to-image",
    )
    assert (wan.price_unit, wan.pricing_note) == ("output", None)
    assert kling.price_unit == "second"
    assert kling.pricing_note is not None
    assert "per second" in kling.pricing_note


async def test_alternative_state_words_read_as_queued_and_running_everywhere() -> None:
    words = {**ALTERNATIVE_STATE_WORDS, "completed": "succeeded"}
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.3, 0.3))},
        quirks=Quirks(state_words=words),
        concurrency=1,
        queue_delay=0.0,
    )
    seen: list[rc.Change] = []
    async with Simulator(config) as sim, client_for(sim) as client:
        first = await client.submit(WAN, {"prompt": "a"})
        second = await client.submit(WAN, {"prompt": "b"})
        status = await client.status(second)
        states = [state async for state in client.watch(second, timeout=30)]
        result = await first.wait(timeout=30)
        inputs = [models.Wan22TextToImage(prompt=f"p{i}") for i in range(3)]
        async with client.map(inputs, on_change=seen.append, timeout=30) as batch:
            items = [item async for item in batch]
    assert status.state is rc.State.IN_QUEUE
    assert status.state.is_known
    assert states[-1] is rc.State.SUCCEEDED
    assert rc.State.IN_PROGRESS in states
    assert all(state.is_known for state in states)
    assert result.succeeded
    assert all(item.ok for item in items)
    told = {change.state for change in seen}
    assert {rc.State.IN_QUEUE, rc.State.IN_PROGRESS} <= told
    assert all(state is None or state.is_known for state in told)


async def test_status_gives_the_instance_id_of_a_running_request() -> None:
    config = SimulatorConfig(models={WAN: ModelProfile(run_time=(30, 30))}, queue_delay=0.0)
    async with Simulator(config) as sim, client_for(sim) as client:
        request = await client.submit(WAN, {"prompt": "a"})
        status = await client.status(request)
        await client.cancel(request)
    assert status.state is rc.State.IN_PROGRESS
    assert status.instance_id is not None
    assert status.instance_id.startswith("sim-instance-")


async def test_a_batch_result_of_another_model_is_an_error_item_and_journaled_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.01, 0.05))},
        queue_delay=0.0,
        faults=(FaultRule(action="other_model_id", endpoint="result", times=1),),
    )
    journal = tmp_path / "journal.sqlite"
    inputs = [models.Wan22TextToImage(prompt=f"p{i}") for i in range(4)]
    with caplog.at_level(logging.WARNING, "runcomfy_async"):
        async with Simulator(config) as sim, client_for(sim) as client:
            items = [item async for item in client.map(inputs, journal=journal, timeout=30)]
            again = [item async for item in client.map(inputs, journal=journal, timeout=30)]
            jobs = len(sim.ledger.jobs)
    (bad,) = [item for item in items if not item.ok]
    assert isinstance(bad.error, rc.ModelMismatchError)
    assert isinstance(bad.error, rc.RequestFailedError)
    assert bad.error.model_id == "acme/other-model/text-to-image"
    assert bad.error.submitted_model_id == WAN
    assert bad.result is not None
    assert bad.result.model_mismatch
    assert "acme/other-model/text-to-image" in str(bad.error)
    assert sum(item.ok for item in items) == 3
    assert "its result is of acme/other-model/text-to-image" in caplog.text
    assert sorted(journal_states(journal)) == ["failed", "succeeded", "succeeded", "succeeded"]
    # A rerun replays it as failed: never a success, and never paid for again unasked.
    assert jobs == 4
    (replayed,) = [item for item in again if not item.ok]
    assert (replayed.index, replayed.resumed) == (bad.index, True)
    assert "acme/other-model/text-to-image" in str(replayed.error)


async def until_one_queued_and_one_running(batch: rc.Batch) -> None:
    with anyio.fail_after(10):
        while (batch.progress.queued, batch.progress.running) != (1, 1):
            await anyio.sleep(0.01)


def requested_config(cancel_delay: float) -> SimulatorConfig:
    return SimulatorConfig(
        models={WAN: ModelProfile(run_time=(30, 30))},
        quirks=Quirks(cancel_style="requested", cancel_delay=cancel_delay),
        concurrency=1,
        queue_delay=0.0,
    )


async def test_a_requested_cancel_is_followed_until_it_lands_and_the_input_stays_unpaid(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.sqlite"
    inputs = [models.Wan22TextToImage(prompt=f"p{i}") for i in range(2)]
    async with Simulator(requested_config(0.3)) as sim, client_for(sim) as client:
        batch = client.map(inputs, journal=journal)
        async with batch:
            await until_one_queued_and_one_running(batch)
        # leaving the block cancels the queued request: RunComfy only takes the cancel
        queued = next(job for job in sim.ledger.jobs if job.started_at is None)
        cancelled_at = next(c.at for c in sim.ledger.call_log if c.endpoint == "cancel")
        polls_after = [
            c.at
            for c in sim.ledger.call_log
            if c.endpoint == "status" and c.subject == queued.request_id and c.at > cancelled_at
        ]
        cancels = dict(sim.ledger.cancels)
    assert cancels == {"cancellation_requested": 1}
    assert queued.state.value == "cancelled"
    assert polls_after  # tracked after the cancel was only taken, until it read cancelled
    running = next(job for job in sim.ledger.jobs if job.started_at is not None)
    assert batch.unfinished == [running.request_id]  # the cancelled one is not left behind
    # It never ran: the journal lets a rerun send it again; the running one stays tracked.
    assert sorted(journal_states(journal)) == ["rejected", "tracked"]


async def test_a_requested_cancel_that_does_not_land_in_the_grace_is_left_unfinished(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.sqlite"
    inputs = [models.Wan22TextToImage(prompt=f"p{i}") for i in range(2)]
    async with (
        Simulator(requested_config(60)) as sim,
        client_for(sim, cancel_grace=0.3) as client,
    ):
        batch = client.map(inputs, journal=journal)
        async with batch:
            await until_one_queued_and_one_running(batch)
        cancels = dict(sim.ledger.cancels)
    # Not recorded as cancelled (it may still run): a rerun re-attaches instead of resending.
    assert len(batch.unfinished) == 2
    assert journal_states(journal) == ["tracked", "tracked"]
    assert cancels == {"cancellation_requested": 1}


@pytest.mark.parametrize(("style", "status_code"), [("404", 404), ("400001", 400)])
async def test_an_unknown_model_is_refused_either_way_before_any_submit(
    style: str, status_code: int
) -> None:
    config = SimulatorConfig(quirks=Quirks(unknown_model=style))  # type: ignore[arg-type]
    async with Simulator(config) as sim, client_for(sim) as client:
        with pytest.raises(rc.UnknownModelError) as caught:
            await client.submit("wan-ai/wan-2-2/text-to-imag", {"prompt": "a"})
        with pytest.raises(rc.NotFoundError):
            await client.model_info("acme/nothing/text-to-image")
        items = [item async for item in client.map([("acme/nothing/text-to-image", {"p": 1})])]
    assert "did you mean wan-ai/wan-2-2/text-to-image?" in str(caught.value)
    assert caught.value.suggestions[0] == "wan-ai/wan-2-2/text-to-image"
    assert caught.value.status_code == status_code
    assert isinstance(items[0].error, rc.UnknownModelError)
    assert sim.ledger.jobs == []
    assert sim.ledger.calls.get("submit", 0) == 0  # refused before any submit


async def test_a_submit_over_64_mib_never_reaches_the_simulator() -> None:
    big = "data:image/png;base64," + "A" * (64 * 1024 * 1024)
    async with Simulator(SimulatorConfig()) as sim, client_for(sim) as client:
        with pytest.raises(rc.InvalidInputError, match="64 MiB"):
            await client.submit(WAN, {"prompt": "a", "negative_prompt": big})
        items = [
            item
            async for item in client.map(
                [(WAN, {"prompt": "b", "seed": 1}), (WAN, {"prompt": big})]
            )
        ]
    assert sim.ledger.calls["submit"] == 1
    assert sorted(item.ok for item in items) == [False, True]
