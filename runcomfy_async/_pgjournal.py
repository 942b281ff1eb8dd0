"""The shared batch journal: one batch's record in PostgreSQL, run by any number of workers.

Driver: psycopg 3 (async). It is libpq's own client (the same connection strings, `PG*`
variables, `.pgpass` and TLS options as psql), it parses and rebuilds connection strings
(`conninfo_to_dict`), which keeps the password out of every message, and it ships wheels
with libpq inside (`psycopg[binary]`). asyncpg is faster per query, but a claim here is a few
small statements in a short transaction: the time is the round trip and the commit, not the
driver (see benchmarks/bench_journal.py).

Every worker reads the same inputs and claims each input by key, as with SQLite, so every
rule of the SQLite journal holds unchanged (resume, replay, retry_failed, mismatch refusal).
(Loading the inputs into the database once for workers to pull would suit SKIP LOCKED
best, with no waits; but the engine, its input checks and file names, and the refusal of
an edited input file would then differ between the two journals.)
A claim is one short transaction: the input's row `FOR UPDATE SKIP LOCKED` (a row another
worker is claiming right now is skipped, not waited on), then, to submit, one free slot of
the batch's `max_in_flight` slots `FOR UPDATE SKIP LOCKED`: the account-wide cap is the
slots table, held from `sending` until the request ends, across all workers. An input
another live worker holds is waited for (polled) until it ends: the waiting worker then
replays its outcome. Workers hold a lease (renewed every third of it); once a worker's
lease has expired (or at once, for a process of this host that is gone), its `sending`
rows become `unknown` (never resent without `resubmit_unknown`; the slot stays taken for
one lease, as the job may run), its `tracked` rows are taken over and re-attached by
request_id, and a success whose files it had not saved is saved by whoever claims it next.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio

from ._errors import JournalMismatchError
from ._journal import (
    Entry,
    JournalRow,
    Row,
    canonical,
    dump,
    load,
    will_submit,
)
from ._pglink import Link, gone
from ._pgschema import (
    check_batch,
    driver,
    insert_item,
    lock_item,
    redact,
    release_slot,
    save_run_times,
    select_counts,
    select_in_flight,
    select_rows,
    select_run_times,
    select_workers,
    take_slot,
)

__all__ = ["PgJournal", "open_journal", "read_pg_journal", "redact"]


_POLL = (0.02, 0.5)  # seconds between two looks at a row another worker holds (min, max)


class _Wait(Exception):
    """The claim cannot be settled now: look again later (the transaction is undone).
    `soon`: the row is in another worker's claim transaction, over in a millisecond."""

    def __init__(self, *, soon: bool = False, slot: bool = False) -> None:
        super().__init__()
        self.soon, self.slot = soon, slot


class PgJournal:
    """A batch journal in PostgreSQL, shared by every worker that runs batch `batch`."""

    durable = True

    def __init__(self, spec: str, batch: str | None) -> None:
        self._psycopg = driver()
        self.batch = check_batch(batch)
        self.path = redact(spec)  # what messages name
        self.worker = uuid.uuid4().hex
        self._link = Link(self._psycopg, spec, self.batch, self.worker)
        self._seen: set[str] = set()  # keys this worker has claimed: a repeat is a duplicate
        self._cap: int | None = None  # max_in_flight across the batch (join())
        self._saves_files = False  # this worker downloads outputs (join())

    def __repr__(self) -> str:
        return f"PgJournal({self.path!r}, batch={self.batch!r})"

    @property
    def lease(self) -> float:
        """Seconds this worker's claims outlive its last heartbeat."""
        return self._link.lease

    async def connect(self, *, lease: bool = True) -> None:
        """Connect, create or migrate the schema, and start this worker's lease (`lease`)."""
        await self._link.connect(lease=lease)

    async def close(self) -> None:
        """End the lease (other workers take over what this one still holds) and disconnect."""
        await self._link.close()

    def _use(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._link.use()

    async def join(self, *, max_in_flight: int, saves_files: bool) -> None:
        """Take part in the batch: `max_in_flight` is the cap across all its workers (the
        slots below it are created), `saves_files` whether this worker saves outputs."""
        await self.connect()
        self._cap, self._saves_files = max_in_flight, saves_files
        async with self._use() as db:
            await db.execute(
                "INSERT INTO runcomfy_slots (batch, n) SELECT %s, generate_series(0, %s - 1) "
                "ON CONFLICT DO NOTHING",
                (self.batch, max_in_flight),
            )

    # ------------------------------------------------------------------ the claim

    async def claim(
        self,
        key: str,
        index: int,
        line: int | None,
        model_id: str,
        body: bytes,
        *,
        retry_failed: bool = False,
        resubmit_unknown: bool = False,
    ) -> Row:
        """Record that this worker read `key`; return what the batch holds of it. To be
        submitted now, it is marked `sending` and takes a slot in the same transaction
        (`Row.send`). An input another live worker holds is waited for until it ends."""
        await self.connect()
        inputs = canonical(body).decode()
        digest = hashlib.sha256(f"{model_id}\0{inputs}".encode()).hexdigest()
        delay = _POLL[0]
        while True:
            try:
                async with self._use() as db:
                    row = await self._claim_once(
                        db,
                        key, index, line, model_id, inputs, digest, key in self._seen,
                        retry_failed=retry_failed, resubmit_unknown=resubmit_unknown,
                    )  # fmt: skip
                self._seen.add(key)  # claimed: read again in this run, it is a duplicate
                return row
            except _Wait as wait:
                if wait.soon:
                    await anyio.sleep(random.uniform(0.001, 0.005))
                    continue
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _POLL[1])

    async def _claim_once(
        self,
        db: Any,
        key: str,
        index: int,
        line: int | None,
        model_id: str,
        inputs: str,
        digest: str,
        duplicate: bool,
        *,
        retry_failed: bool,
        resubmit_unknown: bool,
    ) -> Row:
        async with db.transaction():
            found = await lock_item(db, self.batch, key, self.worker)
            if found is None:
                if not await insert_item(
                    db, self.batch, key, index, line, model_id, inputs, digest
                ):
                    raise _Wait(soon=True)  # another worker is claiming it this very moment
                found = (digest, "new", None, None, None, None, None, model_id, None, None)
                found += (False, None, None)
            input_hash, state_text, owner, rid, outputs, error, cost, old_model, files, tried = (
                found[:10]
            )
            held_elsewhere = bool(found[10]) and not gone(found[11], found[12])
            if input_hash != digest:
                raise JournalMismatchError(
                    f"batch {self.batch!r} in {self.path} is another batch: key {key!r} was "
                    f"{old_model} with other inputs; use a new batch name, or the same inputs"
                )
            state = Entry(state_text)
            if duplicate or owner == self.worker:  # read twice in this run
                return Row(key, state, rid, None, None, cost, None, duplicate=True)
            if held_elsewhere and not state.finished:
                raise _Wait  # a live worker sends or tracks it: its outcome is awaited
            if held_elsewhere and state is Entry.SUCCEEDED and files is None:
                raise _Wait  # ...or saves its outputs
            lapsed = owner is not None and owner != self.worker and not held_elsewhere
            if lapsed and state is Entry.SENDING:  # its sender died before the answer
                state = Entry.UNKNOWN
                error = dump("the worker that sent it stopped before its answer was recorded")
                await self._release(db, key, hold=True)
                await db.execute(
                    "UPDATE runcomfy_items SET state='unknown', owner=NULL, error=%s"
                    " WHERE batch=%s AND key=%s",
                    (error, self.batch, key),
                )
            row = Row(
                key,
                state,
                rid,
                load(outputs) if outputs else None,
                load(error) if error else None,
                cost,
                load(files) if files else None,
                duplicate=False,
            )
            if state is Entry.TRACKED:  # ours now: re-attached by request_id
                await db.execute(
                    "UPDATE runcomfy_items SET owner=%s WHERE batch=%s AND key=%s",
                    (self.worker, self.batch, key),
                )
                return row
            if lapsed and state is Entry.SUCCEEDED and files is None:
                owner_now = self.worker if self._saves_files else None  # its files: ours
                await db.execute(
                    "UPDATE runcomfy_items SET owner=%s WHERE batch=%s AND key=%s",
                    (owner_now, self.batch, key),
                )
            send = will_submit(state, retry_failed=retry_failed, resubmit_unknown=resubmit_unknown)
            if not send:
                return row
            await self._take_slot(db, key)
            attempts = tried
            if state is Entry.FAILED:  # retried: the billed request goes to `attempts`
                earlier = load(tried) if tried else []
                earlier.append(
                    {"request_id": rid, "state": state.value, "error": row.error, "cost": cost}
                )
                attempts = dump(earlier)
            await db.execute(
                "UPDATE runcomfy_items SET state='sending', owner=%s, idx=%s, line=%s,"
                " attempts=%s, request_id=NULL, outputs=NULL, error=NULL, cost=NULL, files=NULL,"
                " sent_at=now(), finished_at=NULL WHERE batch=%s AND key=%s",
                (self.worker, index, line, attempts, self.batch, key),
            )
            return Row(key, state, None, None, None, None, None, False, send=True)

    async def _take_slot(self, db: Any, key: str) -> None:
        """Hold one of the batch's `max_in_flight` slots for `key`, or wait (_Wait)."""
        if self._cap is not None and not await take_slot(db, self.batch, key, self._cap):
            raise _Wait(slot=True)  # the whole batch has max_in_flight requests out

    async def _release(self, db: Any, key: str, *, hold: bool = False) -> None:
        """Let go of `key`'s slot; with `hold` (an unknown outcome: its job may exist and
        run), it is free again only after one lease."""
        await release_slot(db, self.batch, key, self.lease if hold else None)

    async def _write(
        self, key: str, sql: str, values: tuple[Any, ...], *, free: bool, hold: bool = False
    ) -> None:
        async with self._use() as db, db.transaction():
            await db.execute(sql, (*values, self.batch, key))
            if free:
                await self._release(db, key, hold=hold)

    async def tracked(self, key: str, request_id: str) -> None:
        # Written whoever holds the row now: a request_id is never thrown away.
        await self._write(
            key,
            "UPDATE runcomfy_items SET state='tracked', request_id=%s, owner=%s"
            " WHERE batch=%s AND key=%s",
            (request_id, self.worker),
            free=False,
        )

    async def unknown(self, key: str, error: str) -> None:
        await self._write(
            key,
            "UPDATE runcomfy_items SET state='unknown', error=%s, owner=NULL"
            " WHERE batch=%s AND key=%s",
            (dump(error),),
            free=True,
            hold=True,  # its job may exist: the slot stays taken for one lease
        )

    async def rejected(self, key: str, error: str) -> None:
        await self._write(
            key,
            "UPDATE runcomfy_items SET state='rejected', error=%s, owner=NULL"
            " WHERE batch=%s AND key=%s",
            (dump(error),),
            free=True,
        )

    async def finished(
        self,
        key: str,
        state: Entry,
        *,
        outputs: dict[str, Any] | None,
        error: Any,
        cost: float | None,
    ) -> None:
        # A success this worker will save files for stays held (others wait for the files).
        keep = state is Entry.SUCCEEDED and self._saves_files
        await self._write(
            key,
            "UPDATE runcomfy_items SET state=%s, outputs=%s, error=%s, cost=%s,"
            " finished_at=now(), owner=%s WHERE batch=%s AND key=%s",
            (
                state.value,
                dump(outputs) if outputs is not None else None,
                dump(error) if error is not None else None,
                cost,
                self.worker if keep else None,
            ),
            free=True,
        )

    async def files(self, key: str, files: list[dict[str, Any]]) -> None:
        """Record the saved files (path, size, sha256) of a finished input; let it go."""
        await self._write(
            key,
            "UPDATE runcomfy_items SET files=%s, owner=NULL WHERE batch=%s AND key=%s",
            (dump(files),),
            free=False,
        )

    async def run_times(self) -> dict[str, list[float]]:
        """Run-time samples per model id the batch's workers saved (seconds, oldest first)."""
        async with self._use() as db:
            return await select_run_times(db, self.batch)

    async def save_run_times(self, learnt: Mapping[str, Sequence[float]]) -> None:
        """Replace the samples of each model named (the last worker to save one wins)."""
        async with self._use() as db, db.transaction():
            await save_run_times(db, self.batch, learnt)

    async def counts(self) -> dict[str, int]:
        """How many inputs of the batch stand in each state."""
        async with self._use() as db:
            return await select_counts(db, self.batch)

    async def rows(self) -> AsyncIterator[JournalRow]:
        """Every input of the batch, in input order."""
        await self.connect()
        async with self._use() as db:
            found = await select_rows(db, self.batch)
        for row in found:
            yield row

    async def workers(self) -> list[tuple[str, int, bool]]:
        """The batch's workers: host, pid, whether their lease is live."""
        async with self._use() as db:
            return await select_workers(db, self.batch)

    async def in_flight(self) -> int:
        """Slots held across the batch: requests being sent or tracked by any worker."""
        async with self._use() as db:
            return await select_in_flight(db, self.batch)


async def open_journal(
    spec: str,
    batch: str | None = None,
    *,
    max_in_flight: int | None = None,
    saves_files: bool = False,
) -> PgJournal:
    """The batch `batch` of the database `spec` names, connected, its schema up to date,
    joined with `max_in_flight` (the cap across its workers) when given."""
    journal = PgJournal(spec, batch)
    try:
        await journal.connect()
        if max_in_flight is not None:
            await journal.join(max_in_flight=max_in_flight, saves_files=saves_files)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await journal.close()
        raise
    return journal


async def read_pg_journal(spec: str, batch: str | None) -> list[JournalRow]:
    """Every input batch `batch` records, in input order, from any host (read-only: no
    lease is taken)."""
    journal = PgJournal(spec, batch)
    try:
        await journal.connect(lease=False)
        return [row async for row in journal.rows()]
    finally:
        await journal.close()
