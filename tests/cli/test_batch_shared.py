"""`runcomfy batch --journal postgresql://… --batch NAME` and `runcomfy batch-status`."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.cli.conftest import WAN, SimProcess, manifest
from tests.pgserver import PASSWORD


def prompts(path: Path, n: int) -> Path:
    path.write_text("".join(f"prompt {i}\n" for i in range(n)), encoding="utf-8")
    return path


def test_two_runs_on_two_folders_share_one_batch_and_pay_once(
    cli: Any, sim: SimProcess, key_file: Path, tmp_path: Path, pg_server: Any
) -> None:
    source, batch = prompts(tmp_path / "p.txt", 4), f"cli-{uuid.uuid4().hex[:8]}"
    shared = ["--journal", pg_server.dsn(), "--batch", batch, "--base-url", sim.url]
    shared += ["--api-key-file", str(key_file)]
    before = sim.submits()
    first = cli("batch", WAN, source, "--out", tmp_path / "a", *shared)
    assert first.code == 0, first.err
    second = cli("batch", WAN, source, "--out", tmp_path / "b", *shared)  # another "host"
    assert second.code == 0, second.err
    assert sim.submits() == before + 4  # the second run replayed the batch
    assert "4 inputs: 4 succeeded" in second.out
    assert f"journal: postgresql://runcomfy:***@127.0.0.1:{pg_server.port}/batches" in second.out
    assert not (tmp_path / "a" / "journal.sqlite").exists()
    assert len(list((tmp_path / "a").glob("*.png"))) == 4
    assert not list((tmp_path / "b").glob("*.png"))  # saved once, where they are found
    assert all(len(row["files"]) == 1 for row in manifest(tmp_path / "b"))
    status = cli("batch-status", "--journal", pg_server.dsn(), "--batch", batch,
                 "--manifest", tmp_path / "status" / "manifest.jsonl")  # fmt: skip
    assert status.code == 0, status.err
    assert "4 inputs: 4 succeeded, 0 failed" in status.out
    assert "in flight across the batch's workers: 0" in status.out
    rows = manifest(tmp_path / "status")
    assert sorted(row["line"] for row in rows) == [1, 2, 3, 4]
    assert all(row["state"] == "succeeded" and row["files"] for row in rows)
    for outcome in (first, second, status):
        assert PASSWORD not in outcome.text


def test_a_shared_journal_needs_a_batch_name_and_a_sqlite_one_takes_none(
    cli: Any, tmp_path: Path, pg_server: Any
) -> None:
    source = prompts(tmp_path / "p.txt", 2)
    out = tmp_path / "out"
    missing = cli("batch", WAN, source, "--out", out, "--journal", pg_server.dsn(), "--simulate")
    assert missing.code == 2
    assert "needs --batch NAME" in missing.err
    stray = cli("batch", WAN, source, "--out", out, "--batch", "x", "--simulate")
    assert stray.code == 2
    assert "--batch NAME names a batch of a postgresql:// --journal" in stray.err
    simulated = cli("batch", WAN, source, "--out", out, "--journal", pg_server.dsn(),
                    "--batch", "x", "--simulate")  # fmt: skip
    assert simulated.code == 2
    assert "--base-url" in simulated.err
    wrong = pg_server.dsn().replace(PASSWORD, PASSWORD + "-wrong")
    refused = cli("batch-status", "--journal", wrong, "--batch", "x")
    assert refused.code != 0
    assert "runcomfy:***@127.0.0.1" in refused.err
    assert PASSWORD not in refused.text
