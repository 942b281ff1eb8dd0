"""A worker's link to the shared journal's database: its pool of connections and its lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio

from ._errors import ConfigurationError
from ._pgschema import migrate, redact, scrub, split_spec

__all__ = ["Link", "gone"]

logger = logging.getLogger("runcomfy_async")

POOL = 4  # connections of a worker: the commits of its concurrent claims overlap
_DRAIN = 30.0  # seconds close() waits for the writes under way

_RENEW = (
    "INSERT INTO runcomfy_workers (batch, worker, host, pid, expires_at)"
    " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
    " ON CONFLICT (batch, worker) DO UPDATE SET expires_at = excluded.expires_at"
)


class Link:
    """The connections of one worker of batch `batch`, and the lease that says it is alive:
    renewed every third of `lease` seconds (database time, so hosts' clocks do not matter),
    ended by close(). A reader (connect(lease=False)) takes one connection and no lease."""

    def __init__(self, driver: Any, spec: str, batch: str, worker: str) -> None:
        self._psycopg = driver
        self.path = redact(spec)
        self._dsn, self.lease = split_spec(spec)
        self._password = driver.conninfo.conninfo_to_dict(self._dsn).get("password")
        self.batch, self.worker = batch, worker
        self._pool: list[Any] = []
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        self._heartbeat: asyncio.Task[None] | None = None
        self._open = self._closed = False

    def text(self, exc: BaseException) -> str:
        """An error's text for a message: never the password."""
        return scrub(str(exc).strip() or type(exc).__name__, self._password)

    async def connect(self, *, lease: bool = True) -> None:
        """Connect, create or migrate the schema, and start the lease (`lease`)."""
        if self._open:
            return
        if self._closed:
            raise ConfigurationError(f"the batch journal {self.path} is closed")
        try:
            first = await self._connection()
            await migrate(first, self.path)
            for _ in range(POOL - 1 if lease else 0):
                await self._connection()
            if lease:
                await first.execute(_RENEW, self._me())
        except self._psycopg.Error as exc:
            await self._drop()
            raise ConfigurationError(
                f"the batch journal {self.path} cannot be used: {self.text(exc)}"
            ) from None
        except BaseException:
            await self._drop()
            raise
        for db in self._pool:
            self._idle.put_nowait(db)
        self._open = True
        if lease:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _connection(self) -> Any:
        db = await self._psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        self._pool.append(db)
        return db

    def _me(self) -> tuple[Any, ...]:
        return (self.batch, self.worker, socket.gethostname(), os.getpid(), self.lease)

    async def _beat(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            try:
                async with self.use() as db:
                    await db.execute(_RENEW, self._me())
            except self._psycopg.Error as exc:  # tried again at the next beat
                logger.warning("batch journal %s: lease not renewed: %s", self.path, self.text(exc))

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Any]:
        """One connection of the pool, for one statement or one transaction. A database
        error is a ConfigurationError naming the journal (never its password)."""
        if not self._open:
            raise ConfigurationError(f"the batch journal {self.path} is closed")
        db = await self._idle.get()
        try:
            yield db
        except self._psycopg.Error as exc:
            raise ConfigurationError(f"the batch journal {self.path}: {self.text(exc)}") from None
        finally:
            self._idle.put_nowait(db)

    async def close(self) -> None:
        """End the lease (other workers take over what this one holds) and disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._heartbeat
        if self._open:
            with anyio.CancelScope(shield=True):
                # Writes under way finish first: each holds a connection until it is done.
                with anyio.move_on_after(_DRAIN):
                    for _ in self._pool:
                        await self._idle.get()
                with contextlib.suppress(self._psycopg.Error):
                    await self._pool[0].execute(
                        "DELETE FROM runcomfy_workers WHERE batch=%s AND worker=%s",
                        (self.batch, self.worker),
                    )
        await self._drop()

    async def stop_beating(self) -> None:
        """Stop renewing the lease, as a process that died would (for tests)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def _drop(self) -> None:
        with anyio.CancelScope(shield=True):
            for db in self._pool:
                with contextlib.suppress(Exception):
                    await db.close()
        self._pool.clear()
        self._open = False


def gone(host: str | None, pid: int | None) -> bool:
    """Whether a worker of this host is a process that no longer exists: its lease need not
    run out (a batch killed and rerun on one machine resumes at once)."""
    if host != socket.gethostname() or not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's process
        return False
    return False
