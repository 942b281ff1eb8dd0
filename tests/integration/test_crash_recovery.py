"""SIGKILL `runcomfy batch` at random points and rerun it: nothing paid twice, nothing lost."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import JournalBackend

CLI = "from runcomfy_async._cli import main; raise SystemExit(main())"
WAN = "wan-ai/wan-2-2/text-to-image"
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


def run_batch(url: str, folder: Path, journal: JournalBackend, *, kill_after: float | None) -> int:
    """`runcomfy batch` in a process of its own, SIGKILLed after `kill_after` seconds."""
    prompts, key = folder / "prompts.txt", folder / "key.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(COUNT)))
    key.write_text("crash-test-key\n")
    command = [sys.executable, "-c", CLI, "batch", WAN, str(prompts), "--out", str(folder / "out")]
    command += ["--base-url", url, "--api-key-file", str(key), "--max-in-flight", "10"]
    if journal.batch is not None:  # else the default, out/journal.sqlite
        command += ["--journal", journal.spec, "--batch", journal.batch]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    quiet = subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=quiet, stderr=quiet, env=env)
    if kill_after is None:
        return process.wait(timeout=120)
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=10)


def test_killed_batches_resume_without_paying_twice(
    simulator_url: str, tmp_path: Path, journal: JournalBackend
) -> None:
    if journal.batch is None:
        journal = JournalBackend("sqlite", str(tmp_path / "out" / "journal.sqlite"), None)
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261121")))
    kills = 0
    for _ in range(5):
        if run_batch(simulator_url, tmp_path, journal, kill_after=rng.uniform(0.8, 2.5)) == -9:
            kills += 1
    assert kills >= 2  # the batch really was killed part-way, several times
    final = run_batch(simulator_url, tmp_path, journal, kill_after=None)

    rows = {
        json.dumps(row.inputs, separators=(",", ":"), sort_keys=True): (
            str(row.state),
            row.request_id,
            row.files,
        )
        for row in asyncio.run(journal.rows())
    }
    jobs = ledger(simulator_url)["jobs"]
    assert isinstance(jobs, list)
    per_input: dict[str, list[dict[str, object]]] = {}
    for job in jobs:
        key = json.dumps(job["inputs"], separators=(",", ":"), sort_keys=True)
        per_input.setdefault(key, []).append(job)

    assert len(rows) == COUNT  # every input is in the journal
    for inputs, (state, request_id, files) in rows.items():
        created = per_input.get(inputs, [])
        assert len(created) <= 1, f"{inputs} was paid for {len(created)} times"
        if state == "succeeded":
            assert [job["request_id"] for job in created] == [request_id]
            assert created[0]["state"] == "succeeded"
            (file,) = files  # downloaded, whole, with the sha256 the journal recorded
            data = Path(file["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == file["sha256"]
            assert len(data) == file["size"]
        else:  # only a submit killed on the wire may stay unknown, and it is reported
            assert state in ("sending", "unknown"), (inputs, state)
    unknown = sum(1 for state, _, _ in rows.values() if state != "succeeded")
    assert unknown <= kills * 10  # at most the submits on the wire (max_in_flight) per kill
    assert final == (0 if unknown == 0 else 1)
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".png")
    assert len(names) == COUNT - unknown  # no stray, partial or duplicate files
