"""Journaled batches: a rerun finishes the work without paying twice or losing a request."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig
from tests.conftest import JournalBackend

WAN = models.Wan22TextToImage.model_id
QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)


def sim_config(**kwargs: Any) -> SimulatorConfig:
    kwargs.setdefault("models", {WAN: ModelProfile(run_time=(0.05, 0.15))})
    kwargs.setdefault("queue_delay", 0.0)
    return SimulatorConfig(**kwargs)


def client_for(sim: Simulator) -> rc.Client:
    retry = rc.RetryPolicy(base_backoff=0.01, max_backoff=0.05)
    return rc.Client("test-key", base_url=sim.url, poll=QUICK, retry=retry, timeout=5.0)


def inputs(n: int) -> list[models.Wan22TextToImage]:
    return [models.Wan22TextToImage(prompt=f"prompt {i}") for i in range(n)]


async def run(
    client: rc.Client, values: list[Any], journal: JournalBackend, **kwargs: Any
) -> list[rc.Item]:
    return [item async for item in client.map(values, **journal.options, **kwargs)]


async def test_a_rerun_replays_finished_inputs_without_submitting(
    journal: JournalBackend,
) -> None:
    async with Simulator(sim_config(failure_rate=0.2, seed=4)) as sim, client_for(sim) as client:
        first = await run(client, inputs(30), journal)
        submits = sim.ledger.calls["submit"]
        again = await run(client, list(reversed(inputs(30))), journal)  # reordered: same keys
        assert sim.ledger.calls["submit"] == submits == 30
    assert all(item.resumed for item in again)
    assert {i.key: i.ok for i in first} == {i.key: i.ok for i in again}
    urls = {i.key: i.result.output.urls for i in first if i.ok and i.result and i.result.output}
    assert urls == {
        i.key: i.result.output.urls for i in again if i.ok and i.result and i.result.output
    }
    assert sum((await journal.states()).values()) == 30


async def test_a_rerun_reattaches_to_requests_left_running(journal: JournalBackend) -> None:
    slow = {WAN: ModelProfile(run_time=(0.8, 0.8))}
    async with Simulator(sim_config(models=slow, concurrency=4)) as sim:
        async with client_for(sim) as client:
            batch = client.map(inputs(8), **journal.options, max_in_flight=8)
            async with batch:
                while len(sim.ledger.jobs) < 8:
                    await asyncio.sleep(0.01)
            # 4 were running (left to finish, tracked) and 4 queued (cancelled: sent again)
            assert len(batch.unfinished) == 4
        async with client_for(sim) as client:
            items = await run(client, inputs(8), journal)
        per_input = sim.ledger.jobs_per_input()
        cancelled = [job for job in sim.ledger.jobs if job.state.value == "cancelled"]
    assert all(item.ok for item in items), [item.error for item in items]
    assert len(cancelled) == 4
    assert sorted(per_input.values()) == [1] * 4 + [2] * 4  # only the cancelled were resent
    assert {item.request_id for item in items} == {
        job.request_id for job in sim.ledger.jobs if job.state.value == "succeeded"
    }
    assert await journal.states() == {"succeeded": 8}


async def test_an_unknown_submit_is_reported_not_resent(journal: JournalBackend) -> None:
    fault = FaultRule(action="reset_after_read", endpoint="submit", times=1)
    async with Simulator(sim_config(faults=[fault])) as sim, client_for(sim) as client:
        first = await run(client, inputs(5), journal, max_in_flight=1)
        unknown = [item for item in first if isinstance(item.error, rc.SubmissionUnknownError)]
        assert len(unknown) == 1
        again = await run(client, inputs(5), journal)
        assert sim.ledger.calls["submit"] == 5  # nothing resent
        reported = [item for item in again if isinstance(item.error, rc.SubmissionUnknownError)]
        assert [item.key for item in reported] == [unknown[0].key]
        assert "not resubmitted" in str(reported[0].error)
        forced = await run(client, inputs(5), journal, resubmit_unknown=True)
        assert sim.ledger.calls["submit"] == 6  # only on explicit opt-in
    assert all(item.ok for item in forced)
    assert await journal.states() == {"succeeded": 5}


async def test_a_journal_of_another_batch_is_refused(journal: JournalBackend) -> None:
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        await run(client, inputs(3), journal, key=lambda i: i.prompt[-1])
        other = [models.Wan22TextToImage(prompt="something else 0")]
        with pytest.raises(rc.JournalMismatchError, match="another batch"):
            await run(client, other, journal, key=lambda i: i.prompt[-1])
        assert sim.ledger.calls["submit"] == 3


async def test_the_same_input_three_times_is_three_requests_and_a_rerun_pays_none_again(
    journal: JournalBackend,
) -> None:
    same = [models.Wan22TextToImage(prompt="a fox")] * 3 + inputs(1)
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        first = await run(client, same, journal, max_in_flight=2)
        per_input = sim.ledger.jobs_per_input()
        assert per_input == {'{"prompt": "a fox"}': 3, '{"prompt": "prompt 0"}': 1}
        again = await run(client, same + same[:1], journal)  # one more copy: one more request
        assert sim.ledger.jobs_per_input()['{"prompt": "a fox"}'] == 4
    assert all(item.ok for item in first)
    assert len({item.request_id for item in first}) == 4
    assert sorted(item.resumed for item in again) == [False] + [True] * 4
    assert sum((await journal.states()).values()) == 5


async def test_duplicate_keys_of_the_callers_key_function_are_an_error_item(
    journal: JournalBackend,
) -> None:
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        items = await run(client, inputs(3) + inputs(1), journal, max_in_flight=1, key=str)
        assert sim.ledger.calls["submit"] == 3
    errors = [item for item in items if item.error is not None]
    assert len(errors) == 1
    assert "duplicate key" in str(errors[0].error)


async def test_rejected_submits_are_sent_again_on_rerun(journal: JournalBackend) -> None:
    fault = FaultRule(action="status", endpoint="submit", status_code=402, times=2)
    async with Simulator(sim_config(faults=[fault])) as sim, client_for(sim) as client:
        first = await run(client, inputs(4), journal, max_in_flight=1)
        assert sum(isinstance(i.error, rc.InsufficientBalanceError) for i in first) == 2
        again = await run(client, inputs(4), journal)
        assert sim.ledger.jobs_per_input() == {f'{{"prompt": "prompt {i}"}}': 1 for i in range(4)}
    assert all(item.ok for item in again)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    from runcomfy_async._journal import Journal

    path = tmp_path / "notes.txt"
    path.write_text("not a database, just words " * 100)
    with pytest.raises(rc.ConfigurationError, match="not a usable batch journal"):
        Journal(path)


async def test_batch_downloads_outputs_and_records_them(
    journal: JournalBackend, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        items = await run(client, inputs(6), journal, download_to=out, key=lambda i: i.prompt)
        stamps = {f.path: f.path.stat().st_mtime_ns for item in items for f in item.files}
        again = await run(client, inputs(6), journal, download_to=out, key=lambda i: i.prompt)
    assert all(item.ok for item in items)
    for item in items:
        (file,) = item.files
        assert file.path.parent == out
        assert file.path.name == f"{item.index:04d}-prompt-{item.index}-0.png"
        data = file.path.read_bytes()
        assert data.startswith(b"\x89PNG")
        assert hashlib.sha256(data).hexdigest() == file.sha256
        assert file.size == len(data)
    assert all(item.resumed for item in again)
    assert {f.path: f.sha256 for i in again for f in i.files} == {
        f.path: f.sha256 for i in items for f in i.files
    }
    assert {f.path: f.path.stat().st_mtime_ns for i in again for f in i.files} == stamps
    recorded = [row.files for row in await journal.rows()]
    assert sorted(r[0]["sha256"] for r in recorded) == sorted(
        f.sha256 for i in items for f in i.files
    )


async def test_a_rerun_downloads_what_an_interrupted_run_had_not(
    journal: JournalBackend, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        await run(client, inputs(4), journal)  # finished, nothing downloaded
        items = await run(client, inputs(4), journal, download_to=out)
        assert sim.ledger.calls["submit"] == 4
    assert all(item.ok and item.resumed for item in items)
    assert sorted(p.name for p in out.iterdir()) == [f"000{i}-prompt-{i}-0.png" for i in range(4)]


async def test_an_unusable_journal_stops_the_batch_before_any_submit(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just words " * 100)
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        with pytest.raises(rc.ConfigurationError, match="not a usable batch journal"):
            await run(client, inputs(3), JournalBackend("sqlite", str(path), None))
        assert sim.ledger.calls["submit"] == 0
