"""The PostgreSQL journal against a real server: schema versions, claims shared by workers,
the batch-wide in-flight cap, leases and takeover, and no password in any message."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest

import runcomfy_async as rc
from runcomfy_async import _pgschema
from runcomfy_async._journal import Entry
from runcomfy_async._pgjournal import PgJournal, open_journal, read_pg_journal, redact
from tests.pgserver import PASSWORD

MODEL = "wan-ai/wan-2-2/text-to-image"


def body(i: int) -> bytes:
    return b'{"prompt": "fox %d"}' % i


def name() -> str:
    return f"batch-{uuid.uuid4().hex[:8]}"


async def new_database(pg_server: Any) -> str:
    """A fresh database on the server, for tests of the schema itself: its DSN."""
    database = f"db_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_server.dsn(), autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {database}")
    return str(pg_server.dsn(database))


async def claim(
    journal: PgJournal, key: str, i: int = 0, data: bytes | None = None, **kwargs: Any
) -> Any:
    kwargs.setdefault("retry_failed", False)
    kwargs.setdefault("resubmit_unknown", False)
    return await journal.claim(key, i, None, MODEL, data or body(i), **kwargs)


async def test_two_workers_claim_an_input_once_and_the_second_replays_its_outcome(
    pg_server: Any,
) -> None:
    batch = name()
    first = await open_journal(pg_server.dsn(), batch)
    second = await open_journal(pg_server.dsn(), batch)
    try:
        row = await claim(first, "k0")
        assert row.send
        assert row.state is Entry.NEW
        waiting = asyncio.create_task(claim(second, "k0"))  # held by a live worker: waits
        await first.tracked("k0", "req-1")
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await first.finished("k0", Entry.SUCCEEDED, outputs={"a": 1}, error=None, cost=0.5)
        replay = await asyncio.wait_for(waiting, 10)
        assert not replay.send
        assert (replay.state, replay.request_id, replay.outputs) == (
            Entry.SUCCEEDED,
            "req-1",
            {"a": 1},
        )
    finally:
        await first.close()
        await second.close()


async def test_the_in_flight_cap_counts_requests_of_every_worker(pg_server: Any) -> None:
    batch = name()
    workers = [await open_journal(pg_server.dsn(), batch) for _ in range(3)]
    try:
        for journal in workers:
            await journal.join(max_in_flight=2, saves_files=False)
        assert (await claim(workers[0], "k0", 0)).send
        assert (await claim(workers[1], "k1", 1)).send
        third = asyncio.create_task(claim(workers[2], "k2", 2))  # 2 in flight: it waits
        await asyncio.sleep(0.3)
        assert not third.done()
        assert await workers[2].in_flight() == 2
        await workers[1].tracked("k1", "req-1")
        assert not third.done()  # tracked is still in flight
        await workers[1].finished("k1", Entry.FAILED, outputs=None, error="boom", cost=0.1)
        assert (await asyncio.wait_for(third, 10)).send
        assert await workers[0].in_flight() == 2
    finally:
        for journal in workers:
            await journal.close()


async def test_a_dead_workers_sends_become_unknown_and_its_requests_are_taken_over(
    pg_server: Any,
) -> None:
    batch = name()
    spec = pg_server.dsn() + "?lease=1"
    dead = await open_journal(spec, batch)
    await dead.join(max_in_flight=4, saves_files=True)
    assert (await claim(dead, "sent", 0)).send
    assert (await claim(dead, "tracked", 1)).send
    await dead.tracked("tracked", "req-7")
    assert (await claim(dead, "saved", 2)).send
    await dead.tracked("saved", "req-8")
    await dead.finished("saved", Entry.SUCCEEDED, outputs={"u": 1}, error=None, cost=0.2)
    await dead._link.stop_beating()  # the process "dies": no more heartbeats, no clean-up
    heir = await open_journal(spec, batch)
    try:
        await heir.join(max_in_flight=4, saves_files=True)
        unknown = await asyncio.wait_for(claim(heir, "sent", 0), 10)
        assert (unknown.state, unknown.send) == (Entry.UNKNOWN, False)  # never resent
        taken = await claim(heir, "tracked", 1)
        assert (taken.state, taken.request_id, taken.send) == (Entry.TRACKED, "req-7", False)
        files = await claim(heir, "saved", 2)  # succeeded, files never saved: ours to save
        assert (files.state, files.files, files.send) == (Entry.SUCCEEDED, None, False)
        assert await heir.in_flight() == 2  # tracked holds one, the unknown for one lease
        await asyncio.sleep(1.2)
        assert await heir.in_flight() == 1
        rows = {row.key: row for row in await read_pg_journal(spec, batch)}
        assert rows["sent"].state is Entry.UNKNOWN
        resend = await open_journal(spec, batch)
        try:
            again = await claim(resend, "sent", 0, resubmit_unknown=True)
            assert again.send  # only when asked
        finally:
            await resend.close()
    finally:
        await heir.close()
        await dead.close()


async def test_rerun_rules_hold_retry_failed_keeps_the_billed_attempt(pg_server: Any) -> None:
    batch = name()
    journal = await open_journal(pg_server.dsn(), batch)
    try:
        await claim(journal, "k", 0)
        await journal.tracked("k", "req-1")
        await journal.finished("k", Entry.FAILED, outputs=None, error="nsfw", cost=0.3)
        duplicate = await claim(journal, "k", 0)
        assert duplicate.duplicate
    finally:
        await journal.close()
    rerun = await open_journal(pg_server.dsn(), batch)
    try:
        assert not (await claim(rerun, "k", 0)).send  # failed stays failed
    finally:
        await rerun.close()
    retry = await open_journal(pg_server.dsn(), batch)
    try:
        assert (await claim(retry, "k", 0, retry_failed=True)).send
        [row] = [row async for row in retry.rows()]
        assert row.state is Entry.SENDING
        assert row.attempts == [
            {"request_id": "req-1", "state": "failed", "error": "nsfw", "cost": 0.3}
        ]
    finally:
        await retry.close()


async def test_other_inputs_under_a_key_are_refused_and_batches_do_not_mix(
    pg_server: Any,
) -> None:
    batch = name()
    journal = await open_journal(pg_server.dsn(), batch)
    other = await open_journal(pg_server.dsn(), name())
    try:
        await claim(journal, "k", 0, body(1))
        assert (await claim(other, "k", 0, body(2))).send
    finally:
        await journal.close()
        await other.close()
    again = await open_journal(pg_server.dsn(), batch)
    try:
        with pytest.raises(rc.JournalMismatchError, match="another batch") as caught:
            await claim(again, "k", 0, body(2))
        assert PASSWORD not in str(caught.value)
    finally:
        await again.close()


async def test_the_schema_is_versioned_and_a_newer_one_is_refused(pg_server: Any) -> None:
    spec = await new_database(pg_server)
    journal = await open_journal(spec, name())
    await journal.close()
    async with await psycopg.AsyncConnection.connect(spec, autocommit=True) as db:
        found = await (await db.execute("SELECT value FROM runcomfy_meta")).fetchone()
        assert found == (str(_pgschema.VERSION),)
        await db.execute("UPDATE runcomfy_meta SET value='99'")
    with pytest.raises(rc.ConfigurationError, match="schema version 99") as caught:
        await open_journal(spec, name())
    assert PASSWORD not in str(caught.value)


async def test_workers_starting_together_migrate_once(pg_server: Any) -> None:
    spec, batch = await new_database(pg_server), name()
    journals = await asyncio.gather(*(open_journal(spec, batch) for _ in range(4)))
    for journal in journals:
        await journal.close()


async def test_no_message_holds_the_password(pg_server: Any) -> None:
    wrong = pg_server.dsn().replace(PASSWORD, "wrong-" + PASSWORD)
    with pytest.raises(rc.ConfigurationError) as caught:
        await open_journal(wrong, name())
    text = f"{caught.value} {caught.value!r} {caught.value.__cause__!r}"
    assert PASSWORD not in text
    assert "runcomfy:***@127.0.0.1" in str(caught.value)
    journal = PgJournal(pg_server.dsn(), "b")
    assert PASSWORD not in repr(journal)
    assert redact("postgresql://u:p%40ss@h/db?password=x&sslmode=require") == (
        "postgresql://u:***@h/db?password=***&sslmode=require"
    )
    with pytest.raises(rc.ConfigurationError, match="batch name"):
        PgJournal(pg_server.dsn(), None)


def test_without_the_driver_the_error_names_the_extra(pg_server: Any) -> None:
    code = (
        "import sys, asyncio; sys.modules['psycopg'] = None\n"
        "from runcomfy_async._pgjournal import open_journal\n"
        "try:\n"
        f"    asyncio.run(open_journal({pg_server.dsn()!r}, 'b'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ConfigurationError" in done.stdout, done.stderr
    assert "pip install 'runcomfy-async[postgres]'" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


async def test_a_worker_of_this_host_whose_process_is_gone_is_taken_over_at_once(
    pg_server: Any,
) -> None:
    batch = name()
    dead = await open_journal(pg_server.dsn(), batch)  # a 30 s lease: not waited out here
    await dead.join(max_in_flight=2, saves_files=False)
    assert (await claim(dead, "k", 0)).send
    await dead.tracked("k", "req-9")
    await dead._link.stop_beating()
    exited = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await exited.wait()
    async with await psycopg.AsyncConnection.connect(pg_server.dsn(), autocommit=True) as db:
        await db.execute(  # the worker's process: one that has exited
            "UPDATE runcomfy_workers SET pid=%s WHERE worker=%s", (exited.pid, dead.worker)
        )
    heir = await open_journal(pg_server.dsn(), batch)
    try:
        taken = await asyncio.wait_for(claim(heir, "k", 0), 5)
        assert (taken.state, taken.request_id) == (Entry.TRACKED, "req-9")
    finally:
        await heir.close()
        await dead.close()


async def test_an_unknown_outcome_keeps_its_slot_for_one_lease(pg_server: Any) -> None:
    journal = await open_journal(pg_server.dsn() + "?lease=1", name())
    try:
        await journal.join(max_in_flight=1, saves_files=False)
        assert (await claim(journal, "k0", 0)).send
        await journal.unknown("k0", "read timeout after the submit was sent")  # a job may run
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(claim(journal, "k1", 1), 0.3)
        assert (await asyncio.wait_for(claim(journal, "k1", 1), 5)).send
    finally:
        await journal.close()


async def test_a_version_1_database_is_migrated_in_place(pg_server: Any) -> None:
    spec = await new_database(pg_server)
    async with await psycopg.AsyncConnection.connect(spec, autocommit=True) as db:
        await db.execute("CREATE TABLE runcomfy_meta (name TEXT PRIMARY KEY, value TEXT)")
        for statement in _pgschema._MIGRATIONS[0]:
            await db.execute(statement)
        await db.execute("INSERT INTO runcomfy_meta VALUES ('version', '1')")
        await db.execute(
            "INSERT INTO runcomfy_items (batch, key, idx, model_id, inputs, input_hash, state,"
            " request_id) VALUES ('old', 'k', 0, %s, '{}', 'h', 'tracked', 'req-1')",
            (MODEL,),
        )
    rows = await read_pg_journal(spec, "old")  # opened: migrated, its rows kept
    assert [(row.key, row.state, row.request_id) for row in rows] == [("k", Entry.TRACKED, "req-1")]
    async with await psycopg.AsyncConnection.connect(spec, autocommit=True) as db:
        found = await (await db.execute("SELECT value FROM runcomfy_meta")).fetchone()
        assert found == (str(_pgschema.VERSION),)
        await db.execute("SELECT free_at FROM runcomfy_slots")


async def test_run_times_are_shared_by_the_workers_of_a_batch_and_only_that_batch(
    pg_server: Any,
) -> None:
    batch = name()
    first = await open_journal(pg_server.dsn(), batch)
    second = await open_journal(pg_server.dsn(), batch)
    other = await open_journal(pg_server.dsn(), name())
    try:
        assert await first.run_times() == {}
        await first.save_run_times({MODEL: [12.5, 20.0], "x/y": [1.0]})
        await second.save_run_times({MODEL: [30.0] * 100})  # the last save of a model wins
        assert await first.run_times() == {MODEL: [30.0] * 64, "x/y": [1.0]}
        assert await other.run_times() == {}
    finally:
        for journal in (first, second, other):
            await journal.close()
