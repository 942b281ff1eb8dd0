"""SIGKILL a journaled batch at random points and rerun it: nothing paid twice, nothing lost."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_crash_worker.py")
COUNT = 40


@pytest.fixture
def simulator_url() -> Iterator[str]:
    """A simulator in a process of its own, as a real RunComfy would be."""
    command = [sys.executable, "-m", "runcomfy_async.simulator", "--port", "0"]
    command += ["--time-scale", "0.1", "--queue-delay", "0", "--concurrency", "4"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("runcomfy simulator: "), line
        yield line.split(": ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def ledger(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/_sim/ledger", timeout=10) as answer:
        data: dict[str, object] = json.load(answer)
        return data


def run_worker(url: str, journal: Path, *, kill_after: float | None) -> int:
    command = [sys.executable, str(WORKER), url, str(journal), str(COUNT)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    if kill_after is None:
        return process.wait(timeout=120)
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=10)


def test_killed_batches_resume_without_paying_twice(simulator_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261121")))
    kills = 0
    for _ in range(5):
        if run_worker(simulator_url, journal, kill_after=rng.uniform(0.6, 2.0)) == -9:
            kills += 1
    assert kills >= 2  # the batch really was killed part-way, several times
    assert run_worker(simulator_url, journal, kill_after=None) == 0

    with sqlite3.connect(journal) as db:
        rows = {
            inputs: (state, request_id)
            for inputs, state, request_id in db.execute(
                "SELECT inputs, state, request_id FROM items"
            )
        }
    jobs = ledger(simulator_url)["jobs"]
    assert isinstance(jobs, list)
    per_input: dict[str, list[dict[str, object]]] = {}
    for job in jobs:
        key = json.dumps(job["inputs"], separators=(",", ":"), sort_keys=True)
        per_input.setdefault(key, []).append(job)

    assert len(rows) == COUNT  # every input is in the journal
    for inputs, (state, request_id) in rows.items():
        created = per_input.get(inputs, [])
        assert len(created) <= 1, f"{inputs} was paid for {len(created)} times"
        if state == "succeeded":
            assert [job["request_id"] for job in created] == [request_id]
            assert created[0]["state"] == "succeeded"
        else:  # only a submit killed on the wire may stay unknown, and it is reported
            assert state in ("sending", "unknown"), (inputs, state)
    unknown = sum(1 for state, _ in rows.values() if state != "succeeded")
    assert unknown <= kills * 10  # at most the submits on the wire (max_in_flight) per kill
