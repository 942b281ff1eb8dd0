"""Shared helpers for the simulator tests: a fake clock, a simulator factory, a JSON caller."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from runcomfy_async.simulator import Simulator, SimulatorConfig

TOKEN = "sim-test-token-canary-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeClock:
    """A simulator clock that moves only when told to (seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


Start = Callable[..., Awaitable[Simulator]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start(clock: FakeClock) -> AsyncIterator[Start]:
    """Start simulators with SimulatorConfig overrides; virtual time (`clock`) by default."""
    async with contextlib.AsyncExitStack() as stack:

        async def _start(**overrides: Any) -> Simulator:
            config = SimulatorConfig(**{"clock": clock, **overrides})
            return await stack.enter_async_context(Simulator(config))

        yield _start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One API call with the test token unless `headers` says otherwise: (status, JSON body)."""
    async with session.request(
        method, url, json=json, data=data, headers=AUTH if headers is None else headers
    ) as response:
        return response.status, await response.json(content_type=None)
