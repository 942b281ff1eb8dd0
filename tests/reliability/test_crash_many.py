"""kill -9 mid-batch, over several seeds: tests/integration/test_crash_recovery.py's scenario,
repeated ($RELIABILITY_RUNS runs, 3 by default; $RELIABILITY_SEED moves the seeds)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import test_crash_recovery as crash
from tests.reliability._support import SimProcess, seed

RUNS = int(os.environ.get("RELIABILITY_RUNS", "3"))
SEEDS = [seed(20261121) + 7919 * (run + 1) for run in range(RUNS)]


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[SimProcess]:
    """A fresh simulator per seed (its own job outcomes too), as the original test uses."""
    options = ["--time-scale", "0.1", "--queue-delay", "0", "--concurrency", "4"]
    process = SimProcess(*options, "--seed", str(request.node.callspec.params["run_seed"]))
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("run_seed", SEEDS)
def test_killed_batches_resume_without_paying_twice_over_many_seeds(
    run_seed: int, simulator: SimProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scenario reads its kill times from CRASH_SEED: 5 SIGKILLs of `runcomfy batch` at
    # random points, a final rerun, then journal vs ledger (no input paid twice, every
    # request_id tracked to the end) and files vs the sha256 the journal recorded.
    monkeypatch.setenv("CRASH_SEED", str(run_seed))
    sqlite = crash.JournalBackend("sqlite", str(tmp_path / "out" / "journal.sqlite"), None)
    crash.test_killed_batches_resume_without_paying_twice(simulator.url, tmp_path, sqlite)
