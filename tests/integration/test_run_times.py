"""Run times kept between clients: the cache file and the batch journal, on the simulator."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig

WAN = models.Wan22TextToImage.model_id
# No probes: the one request of each test is polled as the remembered run times say.
POLICY = rc.PollPolicy(probes=0)


def sim() -> Simulator:
    return Simulator(
        SimulatorConfig(models={WAN: ModelProfile(run_time=(2.0, 2.0))}, queue_delay=0.0)
    )


def first_poll_after_submit(simulator: Simulator, request_id: str) -> float:
    calls = [c for c in simulator.ledger.call_log if c.subject == request_id]
    submit = next(c.at for c in simulator.ledger.call_log if c.endpoint == "submit")
    return min(c.at for c in calls if c.endpoint == "status") - submit


def remembered(path: Path, seconds: float) -> None:
    path.write_text(
        json.dumps(
            {
                "format": "runcomfy_async/run-times",
                "version": 1,
                "models": {WAN: {"samples": [seconds] * 20, "updated_at": 1.0}},
            }
        )
    )


async def test_a_client_saves_what_it_learnt_and_the_next_one_starts_from_it(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "run_times.json"
    async with sim() as simulator:
        async with rc.Client("k", base_url=simulator.url, run_times=cache) as client:
            await client.run(models.Wan22TextToImage(prompt="a cat"))
        samples = json.loads(cache.read_text())["models"][WAN]["samples"]
        assert len(samples) == 1
        assert 1.0 <= samples[0] <= 3.0  # the run took 2 s, as well as polls can tell
        assert first_poll_after_submit(simulator, simulator.ledger.jobs[0].request_id) < 1.0

    remembered(cache, 2.0)  # as if many runs had been seen
    async with sim() as simulator:
        async with rc.Client("k", base_url=simulator.url, poll=POLICY, run_times=cache) as c:
            request = await c.run(models.Wan22TextToImage(prompt="a dog"))
        # Warm from the first poll: nothing is asked before the shortest runs end.
        assert first_poll_after_submit(simulator, request.request_id) >= 1.5


async def test_run_times_off_reads_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "run_times.json"
    remembered(cache, 2.0)
    before = cache.read_bytes()
    monkeypatch.setenv("RUNCOMFY_RUN_TIMES", str(cache))
    async with sim() as simulator:
        async with rc.Client("k", base_url=simulator.url, poll=POLICY, run_times=False) as c:
            request = await c.run(models.Wan22TextToImage(prompt="a cat"))
        assert first_poll_after_submit(simulator, request.request_id) < 1.0  # cold
    assert cache.read_bytes() == before
    monkeypatch.setenv("RUNCOMFY_RUN_TIMES", "off")
    async with sim() as simulator, rc.Client("k", base_url=simulator.url) as client:
        await client.run(models.Wan22TextToImage(prompt="a cat"))
    assert cache.read_bytes() == before


async def test_a_corrupt_cache_is_a_log_line_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "run_times.json"
    cache.write_text("{ truncated")
    with caplog.at_level(logging.WARNING, logger="runcomfy_async"):
        async with (
            sim() as simulator,
            rc.Client("k", base_url=simulator.url, run_times=cache) as client,
        ):
            result = await client.run(models.Wan22TextToImage(prompt="a cat"))
    assert result.ok
    assert any("run times not read from" in r.getMessage() for r in caplog.records)
    assert WAN in json.loads(cache.read_text())["models"]  # replaced by a good one


async def test_a_resumed_batch_starts_warm_from_its_journal(tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite"
    one = [models.Wan22TextToImage(prompt="one")]
    async with (
        sim() as simulator,
        rc.Client("k", base_url=simulator.url, run_times=False) as client,
        client.map(one, journal=journal) as b,
    ):
        assert [item.ok async for item in b] == [True]
    with sqlite3.connect(journal) as db:
        ((model_id, samples),) = db.execute("SELECT model_id, samples FROM run_times")
    assert model_id == WAN
    assert 1.0 <= json.loads(samples)[0] <= 3.0

    inputs = [models.Wan22TextToImage(prompt="one"), models.Wan22TextToImage(prompt="two")]
    with sqlite3.connect(journal) as db:  # as if many runs had been seen
        db.execute("UPDATE run_times SET samples=?", (json.dumps([2.0] * 20),))
    async with sim() as simulator:
        async with (
            rc.Client("k", base_url=simulator.url, poll=POLICY, run_times=False) as c,
            c.map(inputs, journal=journal) as batch,
        ):
            items = [item async for item in batch]
        assert [item.resumed for item in items] == [True, False]
        rid = items[1].request_id
        assert rid is not None
        assert first_poll_after_submit(simulator, rid) >= 1.5
