"""Overlapping runs on one SQLite journal: one runs, the others are refused; a dead holder
(kill -9) frees it at once. Nothing is ever paid twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runcomfy_async as rc

from ._support import WAN, SimProcess

COUNT = 200
RUN = """
import sys, anyio, runcomfy_async as rc
async def main() -> int:
    url, journal, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    poll = rc.PollPolicy(first_interval=0.05, min_interval=0.02, max_interval=0.2)
    inputs = (("WAN_ID", {"prompt": f"prompt {i}"}) for i in range(count))
    async with rc.Client("lock-test-key", base_url=url, poll=poll) as client:
        batch = client.map(inputs, journal=journal, max_in_flight=50)
        try:
            await batch.open()
        except rc.JournalBusyError as exc:
            print("BUSY", exc, flush=True)
            return 3
        print("OPEN", flush=True)
        async with batch:
            items = [item async for item in batch]
    print("DONE", sum(item.ok for item in items), len(items), flush=True)
    return 0
raise SystemExit(anyio.run(main))
""".replace("WAN_ID", WAN)


def start(url: str, journal: Path, count: int = COUNT) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, "-c", RUN, url, str(journal), str(count)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_three_runs_started_at_once_on_one_journal_pay_once_per_input(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    sim = SimProcess("--time-scale", "0.02", "--queue-delay", "0", "--concurrency", "50")
    try:
        runs = [start(sim.url, journal) for _ in range(3)]
        outputs = [run.communicate(timeout=240) for run in runs]
        ledger = sim.ledger()
    finally:
        sim.stop()
    codes = sorted(run.returncode for run in runs)
    stdout = [out for out, _ in outputs]
    errors = "".join(err for _, err in outputs)
    assert "IntegrityError" not in errors
    assert codes == [0, 3, 3], errors
    assert f"DONE {COUNT} {COUNT}" in "".join(stdout)
    refusals = [line for out in stdout for line in out.splitlines() if line.startswith("BUSY")]
    assert len(refusals) == 2
    for line in refusals:
        assert f"on {socket.gethostname()}" in line
        assert "is in use by process" in line
        assert "sent nothing" in line
    per_input: dict[str, int] = {}
    for job in ledger["jobs"]:
        per_input[job["inputs"]["prompt"]] = per_input.get(job["inputs"]["prompt"], 0) + 1
    assert per_input == {f"prompt {i}": 1 for i in range(COUNT)}


def test_a_holder_killed_with_sigkill_releases_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    sim = SimProcess("--time-scale", "1", "--queue-delay", "0", "--concurrency", "50")
    try:
        holder = start(sim.url, journal, count=20)  # 2-6 s runs: it holds the journal a while
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "OPEN"
        refused = start(sim.url, journal, count=20)
        out, _ = refused.communicate(timeout=60)
        assert refused.returncode == 3
        assert f"process {holder.pid} on" in out
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        holder.stdout.close()
        assert holder.stderr is not None
        holder.stderr.close()
        started = time.monotonic()
        after = start(sim.url, journal, count=20)
        out, err = after.communicate(timeout=120)
        ledger = sim.ledger()
    finally:
        sim.stop()
    assert after.returncode == 0, err
    assert "OPEN" in out
    assert time.monotonic() - started < 100
    prompts = [job["inputs"]["prompt"] for job in ledger["jobs"]]
    assert len(prompts) == len(set(prompts))  # what the killed run sent was not sent again


async def test_a_second_batch_on_a_journal_in_use_in_the_same_process_is_refused(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.sqlite"
    client = rc.Client("k", base_url="http://127.0.0.1:9")
    async with client:
        first = client.map([(WAN, {"prompt": "a"})], journal=journal)
        await first.open()
        second = client.map([(WAN, {"prompt": "a"})], journal=journal)
        with pytest.raises(rc.JournalBusyError, match=f"process {os.getpid()}") as caught:
            await second.open()
        assert caught.value.holder["pid"] == os.getpid()
        assert isinstance(caught.value, rc.ConfigurationError)
        await first.aclose()
        third = client.map([], journal=journal)  # released by the first's end
        await third.open()
        await third.aclose()
