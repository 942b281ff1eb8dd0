"""Chaos: 500 inputs through client.map while the simulator injects every fault it knows.

The simulator runs in a process of its own and draws its faults from a fixed seed
($RELIABILITY_SEED overrides it). Whatever happens on the wire, the ledger must show: one
item per input, never two jobs for one input, and every job either tracked to the state the
simulator gave it or reported, with its input, as a submit of unknown outcome.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig
from tests.reliability._support import WAN, SimProcess, seed

SEED = seed(20260611)
COUNT = 500
TIMEOUT = 1.0  # seconds: the client's limit on one call
LATENCY = 1.6  # seconds: a slow answer, past the client's limit


def chaos_rules(http_date: str) -> list[dict[str, Any]]:
    """Every fault the simulator knows, each at a modest probability per call."""
    return [
        # 429 in both Retry-After forms: delta-seconds, and an HTTP date a moment ahead.
        {"action": "status", "endpoint": "status", "status_code": 429, "retry_after": 1,
         "probability": 0.01, "times": 3},
        {"action": "status", "endpoint": "submit", "status_code": 429, "retry_after": http_date,
         "probability": 0.01},
        {"action": "status", "endpoint": "result", "status_code": 429, "retry_after": http_date,
         "probability": 0.01},
        {"action": "status", "status_code": 500, "probability": 0.015},
        {"action": "status", "status_code": 502, "probability": 0.015},
        {"action": "status", "status_code": 503, "probability": 0.015},
        {"action": "reset_before_read", "probability": 0.01},
        {"action": "reset_after_read", "probability": 0.01},
        {"action": "latency", "seconds": LATENCY, "probability": 0.004},
        {"action": "truncate", "probability": 0.01},
        # HTTP 200 carrying an error body (error_code 500001: a server error inside a 200).
        {"action": "error_200", "probability": 0.01},
    ]  # fmt: skip


@pytest.fixture
def chaos_sim() -> Iterator[SimProcess]:
    when = datetime.now(UTC) + timedelta(seconds=2)
    http_date = email.utils.format_datetime(when, usegmt=True)
    options = ["--time-scale", "0.04", "--queue-delay", "0", "--seed", str(SEED)]
    options += ["--failure-rate", "0.1", "--fresh-404", "0.2"]
    sim = SimProcess(*options, faults=chaos_rules(http_date))
    try:
        yield sim
    finally:
        sim.stop()


def journal_rows(path: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT inputs, state, request_id FROM items").fetchall()
    return {json.loads(inputs)["prompt"]: (state, request_id) for inputs, state, request_id in rows}


async def test_chaos_every_input_once_every_job_tracked_or_reported(
    chaos_sim: SimProcess, tmp_path: Path
) -> None:
    inputs = [(WAN, {"prompt": f"chaos {i}"}) for i in range(COUNT)]
    poll = rc.PollPolicy(first_interval=0.05, min_interval=0.02, max_dense_interval=0.25)
    retry = rc.RetryPolicy(base_backoff=0.05, max_backoff=0.5)
    journal = tmp_path / "chaos.sqlite"
    started = time.monotonic()
    async with rc.Client(
        "chaos-key",
        base_url=chaos_sim.url,
        timeout=TIMEOUT,
        poll=poll,
        retry=retry,
        rng=random.Random(SEED),
    ) as client:
        items = [item async for item in client.map(inputs, max_in_flight=100, journal=journal)]
    elapsed = time.monotonic() - started
    ledger = chaos_sim.ledger()
    jobs = {job["request_id"]: job for job in ledger["jobs"]}
    log = ledger["call_log"]

    # Every input yields exactly one item.
    assert sorted(item.index for item in items) == list(range(COUNT))
    by_prompt = {item.input[1]["prompt"]: item for item in items}
    assert len(by_prompt) == COUNT

    # No input was paid for twice, and no submit that may have landed was sent again: every
    # submit the simulator saw, bar the 429s (explicit refusals), is a different input.
    assert set(ledger["jobs_per_input"].values()) <= {1}
    submits = [call for call in log if call["endpoint"] == "submit"]
    assert sum(1 for call in submits if call["status_code"] != 429) <= COUNT

    # Every job the simulator created is tracked to the state it has there, or reported with
    # its input as a submit of unknown outcome.
    tracked = {item.request_id: item for item in items if item.request_id is not None}
    assert set(tracked) <= set(jobs)
    for rid, job in jobs.items():
        item = tracked.get(rid)
        if item is None:
            item = by_prompt[job["inputs"]["prompt"]]
            assert isinstance(item.error, rc.SubmissionUnknownError), (job, item)
            assert item.error.inputs is item.input
            continue
        assert job["state"] in ("succeeded", "failed"), job
        if job["state"] == "succeeded":
            assert item.ok, (job, item.error)
            assert item.result is not None
            assert item.result.output is not None
            assert item.result.output.urls == [f"{chaos_sim.url}/files/{rid}/0.png"]
            assert item.result.cost == pytest.approx(job["charged"])
        else:
            assert type(item.error) is rc.RequestFailedError, (job, item.error)
            assert item.error.request_id == rid
            assert item.error.error is not None
    # An item without a job is an explicit refusal or an unknown outcome, never a lost job.
    for item in items:
        if item.request_id is None:
            assert item.error is not None
            assert not isinstance(item.error, rc.RequestFailedError)

    # The journal says the same, input by input (unknown submits are journaled as such).
    rows = journal_rows(journal)
    assert len(rows) == COUNT
    for prompt, (state, rid) in rows.items():
        item = by_prompt[prompt]
        assert rid == item.request_id
        if item.ok:
            assert state == "succeeded"
        elif isinstance(item.error, rc.SubmissionUnknownError):
            assert state == "unknown"
        elif item.request_id is None:
            assert state == "rejected"
        else:
            assert state == jobs[item.request_id]["state"]

    # The run really was chaotic: every fault fired, and most inputs still succeeded.
    fired = collections.Counter((call["fault"], call["status_code"]) for call in log)
    actions = {fault for fault, _ in fired if fault is not None}
    assert actions == {
        "status",
        "reset_before_read",
        "reset_after_read",
        "latency",
        "truncate",
        "error_200",
    }, fired
    assert {500, 502, 503, 429} <= {code for fault, code in fired if fault == "status"}
    limited = {call["endpoint"] for call in log if call["status_code"] == 429}
    assert "status" in limited
    assert limited & {"submit", "result"}  # the HTTP-date form
    assert sum(1 for item in items if item.ok) >= COUNT * 0.7
    assert elapsed < 40, f"the chaos run took {elapsed:.1f} s"


@pytest.mark.parametrize("endpoint", ["status", "result"])
async def test_an_http_200_error_body_on_a_poll_does_not_fail_the_request(endpoint: str) -> None:
    # Found by this suite: a 5xx-class error_code inside an HTTP 200 used to end the tracking.
    fault = FaultRule(action="error_200", endpoint=endpoint, times=1)  # type: ignore[arg-type]
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.1, 0.1))}, queue_delay=0.0, faults=[fault]
    )
    quick = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
    async with Simulator(config) as sim, rc.Client("k", base_url=sim.url, poll=quick) as client:
        request = await client.submit(WAN, {"prompt": "one flaky answer"})
        try:
            result = await client.wait(request, timeout=10)
        finally:
            await asyncio.sleep(0.2)
            truth = sim.ledger.job(request.request_id).state.value
    assert [c.fault for c in sim.ledger.call_log].count("error_200") == 1
    assert truth == "succeeded"
    assert result.succeeded


async def test_a_408_on_a_poll_does_not_fail_the_request() -> None:
    fault = FaultRule(action="status", endpoint="status", status_code=408, times=1)
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.1, 0.1))}, queue_delay=0.0, faults=[fault]
    )
    quick = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
    no_retries = rc.RetryPolicy(max_attempts=1)  # as with a spent budget, in an outage
    async with (
        Simulator(config) as sim,
        rc.Client("k", base_url=sim.url, poll=quick, retry=no_retries) as client,
    ):
        request = await client.submit(WAN, {"prompt": "one request timeout"})
        result = await client.wait(request, timeout=10)
    assert result.succeeded
    assert [c.status_code for c in sim.ledger.call_log].count(408) == 1
