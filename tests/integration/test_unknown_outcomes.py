"""Issue 11, point 1: an answer to a submit that is not an explicit refusal is an unknown
outcome (never resent, journaled `unknown`), whatever the 5xx number."""

from __future__ import annotations

import collections
import sqlite3
from pathlib import Path

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig

WAN = models.Wan22TextToImage.model_id
QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)


def config(*faults: FaultRule) -> SimulatorConfig:
    return SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.05, 0.1))}, queue_delay=0.0, faults=faults
    )


def client_for(sim: Simulator) -> rc.Client:
    retry = rc.RetryPolicy(base_backoff=0.01, max_backoff=0.05)
    return rc.Client("test-key", base_url=sim.url, poll=QUICK, retry=retry, timeout=5.0)


def states(journal: Path) -> collections.Counter[str]:
    with sqlite3.connect(journal) as db:
        return collections.Counter(state for (state,) in db.execute("SELECT state FROM items"))


@pytest.mark.parametrize("status", [501, 505, 507, 520, 521, 522, 523, 524, 530, 599])
async def test_a_submit_answered_an_odd_5xx_after_its_job_was_created_is_unknown(
    status: int,
) -> None:
    fault = FaultRule(action="status_after_read", endpoint="submit", status_code=status, times=1)
    async with Simulator(config(fault)) as sim, client_for(sim) as client:
        with pytest.raises(rc.SubmissionUnknownError) as caught:
            await client.submit(models.Wan22TextToImage(prompt="a fox"))
        assert sim.ledger.calls["submit"] == 1  # not resent
        assert len(sim.ledger.jobs) == 1  # and the job it could not report exists
    assert f"HTTP {status}" in str(caught.value)


async def test_a_rerun_after_a_507_on_submit_does_not_pay_again(tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = [models.Wan22TextToImage(prompt=f"prompt {i}") for i in range(5)]
    fault = FaultRule(action="status_after_read", endpoint="submit", status_code=507, times=1)
    async with Simulator(config(fault)) as sim, client_for(sim) as client:
        first = [item async for item in client.map(inputs, journal=journal)]
        unknown = [item for item in first if isinstance(item.error, rc.SubmissionUnknownError)]
        assert len(unknown) == 1
        assert states(journal)["unknown"] == 1
        again = [item async for item in client.map(inputs, journal=journal)]
        jobs = collections.Counter(job.inputs["prompt"] for job in sim.ledger.jobs)
    assert sim.ledger.calls["submit"] == 5  # the rerun sent nothing
    assert set(jobs.values()) == {1}  # no input paid twice
    assert sum(1 for item in first if item.ok) == 4
    reported = [item for item in again if isinstance(item.error, rc.SubmissionUnknownError)]
    assert [item.key for item in reported] == [unknown[0].key]


async def test_reads_are_retried_through_odd_5xx_and_final_on_501() -> None:
    faults = [
        FaultRule(action="status", endpoint="status", status_code=507, times=1),
        FaultRule(action="status", endpoint="status", status_code=522, times=1),
    ]
    async with Simulator(config(*faults)) as sim, client_for(sim) as client:
        request = await client.submit(models.Wan22TextToImage(prompt="a fox"))
        status = await client.status(request)
        assert status.state in (rc.State.IN_QUEUE, rc.State.IN_PROGRESS, rc.State.COMPLETED)
        assert sim.ledger.calls["status"] == 3
        sim.faults.add(FaultRule(action="status", endpoint="status", status_code=501, times=1))
        with pytest.raises(rc.ServerError):
            await client.status(request)
        assert sim.ledger.calls["status"] == 4  # 501 will not change on a retry
