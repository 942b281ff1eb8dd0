"""The PostgreSQL journal's ground: connection specs, the driver, the schema, its statements."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import ConfigurationError
from ._journal import JournalRow, dump_samples, journal_row, samples_of

__all__ = [
    "VERSION",
    "insert_item",
    "lock_item",
    "migrate",
    "redact",
    "release_slot",
    "save_run_times",
    "select_counts",
    "select_in_flight",
    "select_rows",
    "select_run_times",
    "select_workers",
    "take_slot",
]

EXTRA = "postgres"
DEFAULT_LEASE = 30.0  # seconds a worker's claims outlive its last heartbeat

# The schema, by version: each entry brings a database from the version before it to its
# own. The SDK applies what is missing at open, under an advisory lock (workers starting
# together migrate once), and refuses a database newer than it knows.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE runcomfy_items ("
        " batch TEXT NOT NULL, key TEXT NOT NULL, idx BIGINT NOT NULL, line BIGINT,"
        " model_id TEXT NOT NULL, inputs TEXT NOT NULL, input_hash TEXT NOT NULL,"
        " state TEXT NOT NULL, owner TEXT, request_id TEXT, outputs TEXT, error TEXT,"
        " cost DOUBLE PRECISION, files TEXT, attempts TEXT,"
        " created_at TIMESTAMPTZ NOT NULL DEFAULT now(), sent_at TIMESTAMPTZ,"
        " finished_at TIMESTAMPTZ, PRIMARY KEY (batch, key))",
        "CREATE INDEX runcomfy_items_order ON runcomfy_items (batch, idx)",
        "CREATE TABLE runcomfy_workers ("
        " batch TEXT NOT NULL, worker TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,"
        " started_at TIMESTAMPTZ NOT NULL DEFAULT now(), expires_at TIMESTAMPTZ NOT NULL,"
        " PRIMARY KEY (batch, worker))",
        "CREATE TABLE runcomfy_slots ("
        " batch TEXT NOT NULL, n INTEGER NOT NULL, key TEXT, PRIMARY KEY (batch, n))",
    ),
    (  # 2: run times learnt per model, so a resumed or shared batch starts warm
        "CREATE TABLE runcomfy_run_times ("
        " batch TEXT NOT NULL, model_id TEXT NOT NULL, samples TEXT NOT NULL,"
        " updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (batch, model_id))",
    ),
    # 3: the slot of an unknown outcome stays taken until `free_at` (its job may be running).
    ("ALTER TABLE runcomfy_slots ADD COLUMN free_at TIMESTAMPTZ",),
)
VERSION = len(_MIGRATIONS)
_LOCK_ID = 0x52434A4E  # pg_advisory_xact_lock key of the migrations ("RCJN")


def redact(spec: str) -> str:
    """The connection string with its password replaced by `***`, for messages."""
    parts = urllib.parse.urlsplit(spec)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    hidden = [(k, "***" if k == "password" else v) for k, v in query]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=_urlencode(hidden)))


def _urlencode(pairs: list[tuple[str, str]]) -> str:
    return urllib.parse.urlencode(pairs, safe="*")


def split_spec(spec: str) -> tuple[str, float]:
    """The libpq connection string and the lease (seconds, from `?lease=`, ours, removed)."""
    parts = urllib.parse.urlsplit(spec)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    lease = DEFAULT_LEASE
    kept = []
    for name, value in query:
        if name == "lease":
            try:
                lease = float(value)
            except ValueError:
                raise ConfigurationError(f"journal {redact(spec)}: lease={value!r}") from None
            if not 0.5 <= lease <= 86400:
                raise ConfigurationError(f"journal {redact(spec)}: lease must be 0.5..86400 s")
        else:
            kept.append((name, value))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept))), lease


def driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigurationError(
            "a postgresql:// journal needs the PostgreSQL driver: "
            "pip install 'runcomfy-async[postgres]'"
        ) from None
    return psycopg


def scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def check_batch(batch: str | None) -> str:
    if not batch or len(batch) > 200 or not batch.isprintable():
        raise ConfigurationError(
            "a postgresql:// journal needs a batch name (batch=..., --batch NAME): "
            "1 to 200 printable characters, the same on every worker of the batch"
        )
    return batch


async def migrate(db: Any, where: str) -> None:
    """Bring the schema up to this SDK's version, once, whoever else starts now."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        await db.execute(
            "CREATE TABLE IF NOT EXISTS runcomfy_meta (name TEXT PRIMARY KEY, value TEXT)"
        )
        found = await (
            await db.execute("SELECT value FROM runcomfy_meta WHERE name='version'")
        ).fetchone()
        have = 0 if found is None else int(found[0])
        if have > VERSION:
            raise ConfigurationError(
                f"the batch journal {where} has schema version {have}; this SDK "
                f"knows 1 to {VERSION}: upgrade runcomfy-async"
            )
        for statements in _MIGRATIONS[have:]:
            for statement in statements:
                await db.execute(statement)
        if have < VERSION:
            await db.execute(
                "INSERT INTO runcomfy_meta VALUES ('version', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(VERSION),),
            )


async def select_rows(db: Any, batch: str) -> list[JournalRow]:
    cursor = await db.execute(
        "SELECT key, idx, line, model_id, inputs, state, request_id, outputs, error, cost,"
        " files, attempts FROM runcomfy_items WHERE batch=%s AND state <> 'new'"
        " ORDER BY idx, key",
        (batch,),
    )
    return [journal_row(record) for record in await cursor.fetchall()]


async def select_counts(db: Any, batch: str) -> dict[str, int]:
    """How many inputs of the batch stand in each state."""
    cursor = await db.execute(
        "SELECT state, COUNT(*) FROM runcomfy_items WHERE batch=%s AND state <> 'new'"
        " GROUP BY state",
        (batch,),
    )
    return {state: count for state, count in await cursor.fetchall()}


async def select_workers(db: Any, batch: str) -> list[tuple[str, int, bool]]:
    """The batch's workers: host, pid, whether their lease is live (database time)."""
    cursor = await db.execute(
        "SELECT host, pid, expires_at > now() FROM runcomfy_workers WHERE batch=%s"
        " ORDER BY started_at",
        (batch,),
    )
    return [(host, pid, bool(live)) for host, pid, live in await cursor.fetchall()]


async def select_in_flight(db: Any, batch: str) -> int:
    """Slots taken across the batch: requests being sent or tracked by any worker, and
    unknown outcomes of the last lease (their jobs may be running)."""
    cursor = await db.execute(
        "SELECT COUNT(*) FROM runcomfy_slots WHERE batch=%s"
        " AND (key IS NOT NULL OR free_at > now())",
        (batch,),
    )
    found = await cursor.fetchone()
    return int(found[0]) if found else 0


async def take_slot(db: Any, batch: str, key: str, cap: int) -> bool:
    """Give `key` one of the batch's free slots below `cap` (in the caller's transaction);
    False when every one is taken (or held for an unknown outcome)."""
    free = await (
        await db.execute(
            "SELECT n FROM runcomfy_slots WHERE batch=%s AND key IS NULL AND n < %s"
            " AND (free_at IS NULL OR free_at <= now())"
            " ORDER BY n LIMIT 1 FOR UPDATE SKIP LOCKED",
            (batch, cap),
        )
    ).fetchone()
    if free is None:
        return False
    await db.execute(
        "UPDATE runcomfy_slots SET key=%s WHERE batch=%s AND n=%s", (key, batch, free[0])
    )
    return True


async def release_slot(db: Any, batch: str, key: str, hold: float | None) -> None:
    """Free `key`'s slot, at once or (`hold` seconds) later."""
    await db.execute(
        "UPDATE runcomfy_slots SET key=NULL, free_at=CASE WHEN %s"
        " THEN now() + make_interval(secs => %s) END WHERE batch=%s AND key=%s",
        (hold is not None, hold or 0.0, batch, key),
    )


async def lock_item(db: Any, batch: str, key: str, worker: str) -> tuple[Any, ...] | None:
    """`key`'s row, locked for the caller's transaction, with whether another worker than
    `worker` holds it on a live lease, and that worker's host and pid; None when there is no
    row or another worker's claim transaction has it locked right now."""
    found: tuple[Any, ...] | None = await (
        await db.execute(
            "SELECT i.input_hash, i.state, i.owner, i.request_id, i.outputs, i.error,"
            " i.cost, i.model_id, i.files, i.attempts, i.owner <> %s"
            " AND w.expires_at > now(), w.host, w.pid FROM runcomfy_items i"
            " LEFT JOIN runcomfy_workers w ON w.batch = i.batch AND w.worker = i.owner"
            " WHERE i.batch=%s AND i.key=%s FOR UPDATE OF i SKIP LOCKED",
            (worker, batch, key),
        )
    ).fetchone()
    return found


async def insert_item(
    db: Any,
    batch: str,
    key: str,
    index: int,
    line: int | None,
    model_id: str,
    inputs: str,
    digest: str,
) -> bool:
    """Add `key`'s row as `new`; False when another worker added it first."""
    inserted = await (
        await db.execute(
            "INSERT INTO runcomfy_items (batch, key, idx, line, model_id, inputs,"
            " input_hash, state) VALUES (%s, %s, %s, %s, %s, %s, %s, 'new')"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (batch, key, index, line, model_id, inputs, digest),
        )
    ).fetchone()
    return inserted is not None


async def select_run_times(db: Any, batch: str) -> dict[str, list[float]]:
    """Run-time samples per model id the batch's workers saved (seconds, oldest first)."""
    cursor = await db.execute(
        "SELECT model_id, samples FROM runcomfy_run_times WHERE batch=%s", (batch,)
    )
    return {model_id: samples_of(text) for model_id, text in await cursor.fetchall()}


async def save_run_times(db: Any, batch: str, learnt: Mapping[str, Sequence[float]]) -> None:
    """Replace the samples of each model named (in the caller's transaction)."""
    for model_id, samples in learnt.items():
        await db.execute(
            "INSERT INTO runcomfy_run_times (batch, model_id, samples)"
            " VALUES (%s, %s, %s) ON CONFLICT (batch, model_id)"
            " DO UPDATE SET samples = excluded.samples, updated_at = now()",
            (batch, model_id, dump_samples(samples)),
        )
