"""The journal seam: a batch writes through BatchJournal, whichever journal open_journal() gives."""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async._journal import Entry, Journal, JournalRow, Row
from runcomfy_async._journals import BatchJournal, open_journal
from runcomfy_async.simulator import Simulator
from tests.conftest import JournalBackend

from .test_journal import client_for, inputs, run, sim_config


class MemoryJournal:
    """A journal in a list: what a batch tells its journal, in order."""

    durable = True

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.closed = False

    async def claim(
        self,
        key: str,
        index: int,
        line: int | None,
        model_id: str,
        body: bytes,
        *,
        retry_failed: bool,
        resubmit_unknown: bool,
    ) -> Row:
        self.events.append(("claim", key, index))
        return Row(key, Entry.NEW, None, None, None, None, None, False, send=True)

    async def tracked(self, key: str, request_id: str) -> None:
        self.events.append(("tracked", key, request_id))

    async def unknown(self, key: str, error: str) -> None:
        self.events.append(("unknown", key, error))

    async def rejected(self, key: str, error: str) -> None:
        self.events.append(("rejected", key, error))

    async def finished(
        self,
        key: str,
        state: Entry,
        *,
        outputs: dict[str, Any] | None,
        error: Any,
        cost: float | None,
    ) -> None:
        self.events.append(("finished", key, state))

    async def files(self, key: str, files: list[dict[str, Any]]) -> None:
        self.events.append(("files", key, len(files)))

    async def counts(self) -> dict[str, int]:
        return {}

    async def rows(self) -> AsyncIterator[JournalRow]:
        return
        yield

    async def close(self) -> None:
        self.closed = True


def _typed(journal: MemoryJournal) -> BatchJournal:
    return journal  # mypy checks that the protocol is what a journal of one's own writes


async def test_a_postgres_journal_without_its_extra_is_refused_before_any_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "runcomfy_async._pgjournal", None)  # not installed
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        batch = client.map(inputs(3), journal="postgresql://batch@db.example/runs")
        with pytest.raises(rc.ConfigurationError, match=r"\[postgres\] extra"):
            await batch.open()
        assert sim.ledger.calls["submit"] == 0


async def test_a_batch_writes_every_step_through_the_journal_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = MemoryJournal()
    opened: list[str] = []

    async def open_pg(spec: str, batch: str | None = None, **joined: Any) -> BatchJournal:
        opened.append(spec)
        assert joined == {"max_in_flight": 32, "saves_files": False}
        return _typed(journal)

    fake = types.ModuleType("runcomfy_async._pgjournal")
    fake.open_journal = open_pg  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runcomfy_async._pgjournal", fake)
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        items = await run(
            client, inputs(3), JournalBackend("pg", "postgres://db.example/runs", None)
        )
    assert opened == ["postgres://db.example/runs"]
    assert all(item.ok for item in items)
    assert journal.closed
    for item in items:
        mine = [(what, extra) for what, key, extra in journal.events if key == item.key]
        assert mine == [
            ("claim", item.index),
            ("tracked", item.request_id),
            ("finished", Entry.SUCCEEDED),
        ]


async def test_a_sqlite_journal_lists_its_rows_as_read_journal_does(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite"
    async with Simulator(sim_config()) as sim, client_for(sim) as client:
        await run(client, inputs(4), JournalBackend("sqlite", str(path), None))
    held = await open_journal(path)
    try:
        assert isinstance(held, Journal)
        rows = [row async for row in held.rows()]
        assert await held.counts() == {"succeeded": 4}
    finally:
        await held.close()
    assert rows == rc.read_journal(path)
    assert [row.index for row in rows] == [0, 1, 2, 3]
