"""A batch a user finishes, checks and reruns: retries, repeats, numbers, names, the journal."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import runcomfy_async as rc
from runcomfy_async._journal import Keys, plan, stable_key
from runcomfy_async.simulator import ModelProfile, Simulator

from .test_journal import WAN, client_for, sim_config


def pairs(*prompts: str) -> list[tuple[str, dict[str, Any]]]:
    return [(WAN, {"prompt": prompt}) for prompt in prompts]


async def run(client: rc.Client, values: Any, **kwargs: Any) -> list[rc.Item]:
    return [item async for item in client.map(values, **kwargs)]


async def test_failed_inputs_stay_failed_unless_retry_failed_resubmits_them(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "batch.sqlite"
    values = pairs("a", "b", "c")
    async with Simulator(sim_config(failure_rate=1.0)) as sim, client_for(sim) as client:
        first = await run(client, values, journal=journal)
        failed_ids = {item.request_id for item in first}
    assert all(isinstance(item.error, rc.RequestFailedError) for item in first)
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        kept = await run(client, values, journal=journal)
        assert sim.ledger.calls["submit"] == 0  # without it, a rerun keeps them failed
        retried = await run(client, values, journal=journal, retry_failed=True)
        assert sim.ledger.jobs_per_input() == {
            '{"prompt": "a"}': 1,
            '{"prompt": "b"}': 1,
            '{"prompt": "c"}': 1,
        }
        done = await run(client, values, journal=journal, retry_failed=True)
        assert sim.ledger.calls["submit"] == 3  # nothing failed is left to retry
    assert all(item.resumed and isinstance(item.error, rc.RequestFailedError) for item in kept)
    assert all(item.ok and not item.resumed for item in retried)
    assert all(item.ok and item.resumed for item in done)
    rows = rc.read_journal(journal)
    assert [row.state for row in rows] == ["succeeded"] * 3
    assert {row.attempts[0]["request_id"] for row in rows} == failed_ids
    assert all(row.attempts[0]["state"] == "failed" and row.runs == 2 for row in rows)
    assert all(row.spent > 0 for row in rows)  # the failed run and the retry, both billed


async def test_numbered_inputs_keep_their_index_and_line_in_items_journal_and_names(
    tmp_path: Path,
) -> None:
    journal, out = tmp_path / "fresh" / "deep" / "journal.sqlite", tmp_path / "out"
    values = [
        rc.Numbered((WAN, {"prompt": "A red fox, in snow!"}), 7, line=9),
        rc.Numbered((WAN, {"prompt": "Ünïcödé owl"}), 3, line=4),
        rc.Numbered((WAN, {"prompt": "?!"}), 12),
    ]
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        items = await run(client, values, journal=journal, download_to=out)
    by_index = {item.index: item for item in items}
    assert sorted(by_index) == [3, 7, 12]
    assert (by_index[7].line, by_index[3].line, by_index[12].line) == (9, 4, None)
    assert by_index[7].input == (WAN, {"prompt": "A red fox, in snow!"})  # unwrapped
    names = {index: [f.path.name for f in item.files] for index, item in by_index.items()}
    assert names == {
        7: ["0007-a-red-fox-in-snow-0.png"],
        3: ["0003-unicode-owl-0.png"],
        12: ["0012-output-0.png"],
    }
    rows = rc.read_journal(journal)  # the folder was created; rows in input order (index)
    assert [(row.index, row.line) for row in rows] == [(3, 4), (7, 9), (12, None)]
    assert rows[1].inputs == {"prompt": "A red fox, in snow!"}
    assert rows[1].model_id == WAN
    assert rows[1].state == "succeeded"
    assert rows[1].files[0]["path"].endswith("0007-a-red-fox-in-snow-0.png")
    assert {"path", "size", "sha256", "url"} <= set(rows[1].files[0])


async def test_a_resumed_batch_never_renames_its_files(tmp_path: Path) -> None:
    journal, out = tmp_path / "journal.sqlite", tmp_path / "out"
    values = pairs("first prompt", "second prompt")
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        first = await run(client, values, journal=journal, download_to=out)
        saved = sorted(f.path.name for item in first for f in item.files)
        # reordered, and another template: the files are found where they were saved
        again = await run(
            client, values[::-1], journal=journal, download_to=out, name_template="{key}.{ext}"
        )
        (out / saved[0]).unlink()  # lost: saved again, under the name it had
        third = await run(
            client, values, journal=journal, download_to=out, name_template="x-{n}.{ext}"
        )
        assert sim.ledger.calls["submit"] == 2
    assert saved == ["0000-first-prompt-0.png", "0001-second-prompt-0.png"]
    assert sorted(f.path.name for item in again for f in item.files) == saved
    assert sorted(f.path.name for item in third for f in item.files) == saved
    assert sorted(p.name for p in out.iterdir()) == saved


def test_a_bad_name_template_is_refused_when_the_batch_is_made() -> None:
    client = rc.Client("test-key")
    with pytest.raises(rc.ConfigurationError, match="name_template"):
        client.map(pairs("a"), name_template="{prompt}.{ext}")


async def test_an_unusable_journal_is_refused_by_open_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        batch = client.map(pairs("a"), journal=blocker / "journal.sqlite")
        with pytest.raises(rc.ConfigurationError, match="folder"):
            await batch.open()
        notes = tmp_path / "notes.sqlite"
        notes.write_text("not a database, just words " * 100)
        with pytest.raises(rc.ConfigurationError, match="not a usable batch journal"):
            async with client.map(pairs("a"), journal=notes):
                pass
        assert sim.ledger.calls["submit"] == 0
    with pytest.raises(rc.ConfigurationError, match="not a usable batch journal"):
        rc.read_journal(notes)
    assert rc.read_journal(tmp_path / "none-yet.sqlite") == []


V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (key TEXT PRIMARY KEY, idx INTEGER NOT NULL, model_id TEXT NOT NULL,
    inputs TEXT NOT NULL, input_hash TEXT NOT NULL, state TEXT NOT NULL, run TEXT NOT NULL,
    request_id TEXT, outputs TEXT, error TEXT, cost REAL, files TEXT, created_at REAL NOT NULL,
    sent_at REAL, finished_at REAL);
INSERT INTO meta VALUES ('version', '1');
"""


async def test_a_version_1_journal_is_read_and_resumed_in_place(tmp_path: Path) -> None:
    import hashlib
    import json

    journal = tmp_path / "old.sqlite"
    body = b'{"prompt":"old"}'
    key = stable_key(WAN, body)
    digest = hashlib.sha256(f'{WAN}\0{{"prompt":"old"}}'.encode()).hexdigest()
    with sqlite3.connect(journal) as db:
        db.executescript(V1_SCHEMA)
        db.execute(
            "INSERT INTO items VALUES (?, 0, ?, ?, ?, 'succeeded', 'r', 'req-old', ?, NULL, "
            "0.04, NULL, 0, 0, 0)",
            (key, WAN, '{"prompt":"old"}', digest, json.dumps({"image": "https://x/a.png"})),
        )
    db.close()
    (row,) = rc.read_journal(journal)
    assert (row.key, row.line, row.request_id, row.attempts) == (key, None, "req-old", [])
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        items = await run(client, pairs("old", "new"), journal=journal)
        assert sim.ledger.calls["submit"] == 1  # only the new one
    assert sorted((item.resumed, item.request_id == "req-old") for item in items) == [
        (False, False),
        (True, True),
    ]
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT value FROM meta WHERE name='version'").fetchone() == ("2",)
    db.close()
    assert [row.state for row in rc.read_journal(journal)] == ["succeeded", "succeeded"]


def test_keys_count_repeats_and_plan_says_what_a_rerun_submits() -> None:
    keys = Keys()
    body = b'{"prompt": "x"}'
    got = [keys.key(WAN, body) for _ in range(3)]
    assert got[0] == stable_key(WAN, body) == stable_key(WAN, b'{"prompt":"x"}', occurrence=0)
    assert got[1:] == [stable_key(WAN, body, 1), stable_key(WAN, body, 2)]
    assert len(set(got)) == 3
    assert plan([], got) == got


async def test_a_finished_journal_plans_nothing_and_a_failed_one_plans_its_retries(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.sqlite"
    values = pairs("p", "p", "q")
    async with Simulator(sim_config(failure_rate=1.0)) as sim, client_for(sim) as client:
        await run(client, values, journal=journal)
    keys = Keys()
    wanted = [keys.key(WAN, b'{"prompt":"%s"}' % v[1]["prompt"].encode()) for v in values]
    rows = rc.read_journal(journal)
    assert plan(rows, wanted) == []
    assert plan(rows, wanted, retry_failed=True) == wanted
    assert plan(rows, [*wanted, "new-key"]) == ["new-key"]


async def test_after_an_early_end_progress_counts_cancelled_and_unfinished_apart() -> None:
    slow = {WAN: ModelProfile(run_time=(5.0, 5.0))}
    async with Simulator(sim_config(models=slow, concurrency=2)) as sim:
        async with client_for(sim) as client:
            batch = client.map(pairs(*"abcdef"), max_in_flight=6)
            async with batch:
                with anyio.fail_after(30):
                    while sim.ledger.calls["submit"] < 6 or batch.progress.queued < 4:
                        await asyncio.sleep(0.01)
            progress = batch.progress
        running = {j.request_id for j in sim.ledger.jobs if j.state.value == "in_progress"}
    assert (progress.cancelled, progress.unfinished) == (4, 2)
    assert progress.queued == progress.running == progress.pending == progress.failed == 0
    assert set(batch.unfinished) == running
