"""One batch, four `runcomfy batch` worker processes, one PostgreSQL journal, one simulator
with a concurrency limit; two workers are SIGKILLed at random points and restarted."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runcomfy_async._journal import Entry
from runcomfy_async._pgjournal import read_pg_journal
from tests.pgserver import PASSWORD
from tests.reliability._support import WAN, SimProcess, seed

INPUTS = 420
CAP = 8  # the account's concurrency: the simulator's and the batch's max_in_flight
KEY = "rc-pg-workers-canary-5e1d"
CLI = ["-c", "from runcomfy_async._cli import main; raise SystemExit(main())"]


@pytest.fixture
def simulator() -> Any:
    process = SimProcess(
        "--time-scale", "0.02", "--queue-delay", "0", "--concurrency", str(CAP), key=KEY
    )
    try:
        yield process
    finally:
        process.stop()


def finished(dsn: str) -> int:
    """Inputs of the batch that succeeded so far (0 before the first worker made the tables)."""
    with psycopg.connect(dsn, autocommit=True) as db:
        try:
            found = db.execute(
                "SELECT COUNT(*) FROM runcomfy_items WHERE batch='spring-catalog'"
                " AND state='succeeded'"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(found[0]) if found else 0


def peak_overlap(jobs: list[dict[str, Any]], now: float) -> int:
    """The most jobs that existed (submitted, not yet ended) at the same instant."""
    edges = []
    for job in jobs:
        edges.append((job["created_at"], 1))
        edges.append((job["finished_at"] if job["finished_at"] is not None else now, -1))
    peak = level = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_four_workers_killed_and_restarted_pay_each_input_once(
    simulator: SimProcess, pg_server: Any, tmp_path: Path
) -> None:
    rng = random.Random(seed(15))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a fox, study {i}\n" for i in range(INPUTS)))
    out = tmp_path / "out"
    dsn = pg_server.dsn() + "?lease=2"
    env = {**os.environ, "RUNCOMFY_API_KEY": KEY}
    command = [
        sys.executable, *CLI, "batch", WAN, str(prompts), "--out", str(out),
        "--journal", dsn, "--batch", "spring-catalog", "--max-in-flight", str(CAP),
        "--base-url", simulator.url, "--no-preflight",
    ]  # fmt: skip
    logs: list[Path] = []

    def start(n: int) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{n}-{len(logs)}.log"
        logs.append(log)
        with log.open("wb") as sink:
            return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)

    workers = [start(n) for n in range(4)]
    deadline = time.monotonic() + 240
    # Each victim is killed once, at a random point of the batch (so many inputs finished,
    # then a random moment), and restarted.
    for victim, (low, high) in ((0, (30, 120)), (1, (150, 260))):
        point = rng.randint(low, high)
        while finished(pg_server.dsn()) < point and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait()
        workers[victim] = start(victim)
    try:
        codes = [worker.wait(timeout=max(deadline - time.monotonic(), 1)) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    text = "\n".join(log.read_text(errors="replace") for log in logs)
    assert PASSWORD not in text  # the DSN is shown redacted
    assert all(code in (0, 1) for code in codes), text  # 1: some inputs ended unknown

    ledger = simulator.ledger()
    rows = asyncio.run(read_pg_journal(pg_server.dsn(), "spring-catalog"))
    assert len(rows) == INPUTS
    per_input = ledger["jobs_per_input"]
    assert max(per_input.values()) == 1  # no input was paid twice
    assert len(ledger["jobs"]) == len(per_input)
    states = {row.state for row in rows}
    assert states <= {Entry.SUCCEEDED, Entry.UNKNOWN}, states  # finished, or reported unknown
    succeeded = [row for row in rows if row.state is Entry.SUCCEEDED]
    assert len(succeeded) >= INPUTS - 2 * CAP  # only the killed workers' sends can be unknown
    assert {row.request_id for row in succeeded} <= {job["request_id"] for job in ledger["jobs"]}
    assert peak_overlap(ledger["jobs"], ledger["now"]) <= CAP  # the account's concurrency

    status = subprocess.run(
        [sys.executable, *CLI, "batch-status", "--journal", dsn, "--batch", "spring-catalog",
         "--manifest", str(tmp_path / "status.jsonl")],
        capture_output=True, text=True, env={**os.environ},
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"{INPUTS} inputs: {len(succeeded)} succeeded" in status.stdout
    assert "runcomfy:***@127.0.0.1" in status.stdout
    assert PASSWORD not in status.stdout + status.stderr
    assert len((tmp_path / "status.jsonl").read_text().splitlines()) == INPUTS

    recorded: dict[Path, str] = {}
    for row in succeeded:
        assert row.files, row.key  # saved by whoever finished the request
        for file in row.files:
            recorded[Path(file["path"])] = file["sha256"]
    saved = {path for path in out.iterdir() if path.suffix == ".png"}
    assert saved == set(recorded)  # every file present once, nothing extra
    for path, digest in recorded.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
