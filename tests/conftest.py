"""Shared test helpers: virtual time, a canary key, the API's base URL."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterator
from typing import Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without the `stream_writer` aiohttp 3.14 requires
    (pnuckowski/aioresponses#289). We keep aiohttp at its security-fixed versions and give
    the mock what it lacks, here only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoWriter())
        super().__init__(*args, **kwargs)


class _NoWriter:
    output_size = 0


aioresponses.core.ClientResponse = _CompatResponse  # type: ignore[misc]

API = "https://model-api.runcomfy.net"
CANARY = "rc-canary-7f3a9c1e5b2d4f60a8e1"


class VirtualTime:
    """An injectable clock and sleep: sleeping advances the clock instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


class EventTime:
    """Virtual time for many concurrent sleepers: the clock jumps to the earliest wake-up
    (`wake_next`) when the caller's driver finds nothing else to do."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self._due: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._order += 1
        heapq.heappush(self._due, (self.now + max(0.0, seconds), self._order, future))
        await future

    def wake_next(self) -> bool:
        """Jump to the earliest sleeper still waiting and wake it; False if there is none."""
        while self._due:
            when, _, future = heapq.heappop(self._due)
            if not future.done():  # a sleep cancelled meanwhile is skipped
                self.now = max(self.now, when)
                future.set_result(None)
                return True
        return False

    async def run(self, tasks: list[asyncio.Future[None]]) -> None:
        """Drive `tasks` (that touch no sockets) to the end."""
        while not all(task.done() for task in tasks):
            for _ in range(5):
                await asyncio.sleep(0)
            self.wake_next()


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNCOMFY_API_KEY", "RUNCOMFY_API_TOKEN", "RUNCOMFY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _own_run_times_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each test's clients (and CLI runs) keep learnt run times in a cache of the test's
    own: never the user's, and never warm from another test."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RUNCOMFY_RUN_TIMES", str(folder / "run_times.json"))


@pytest.fixture(autouse=True)
def _typed_inputs_registry() -> Iterator[None]:
    """Classes a test defines or loads (generated ones too) register their model ids with the
    package, and would check other tests' dict inputs: each test gets the registry back."""
    from runcomfy_async import _inputs

    saved = dict(_inputs.TYPED)
    yield
    _inputs.TYPED.clear()
    _inputs.TYPED.update(saved)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One throwaway PostgreSQL server for the session (tests/pgserver.py): each test uses
    batches of its own names, so they share it without seeing each other."""
    from tests.pgserver import running

    with running() as server:
        yield server


class JournalBackend:
    """Where a parametrised test's batch journal lives: a SQLite file or a PostgreSQL batch.
    `options` go to client.map(); `rows()` reads what the journal holds, from outside."""

    def __init__(self, kind: str, spec: str, batch: str | None) -> None:
        self.kind, self.spec, self.batch = kind, spec, batch

    @property
    def options(self) -> dict[str, Any]:
        return {"journal": self.spec, "batch": self.batch}

    async def rows(self) -> list[Any]:
        if self.batch is None:
            from runcomfy_async import read_journal

            return read_journal(self.spec)
        from runcomfy_async._pgjournal import read_pg_journal

        return await read_pg_journal(self.spec, self.batch)

    async def states(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in await self.rows():
            found[str(row.state)] = found.get(str(row.state), 0) + 1
        return found


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Any) -> JournalBackend:
    """The journal of a test that holds for both backends (the same test, run twice)."""
    if request.param == "sqlite":
        return JournalBackend("sqlite", str(tmp_path / "batch.sqlite"), None)
    import uuid

    server = request.getfixturevalue("pg_server")
    return JournalBackend("postgresql", server.dsn(), f"test-{uuid.uuid4().hex[:12]}")
