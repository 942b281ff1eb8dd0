"""pytest plugin: the `runcomfy_simulator` fixture, a started local RunComfy simulator per test.

Enable it in your root conftest.py with `pytest_plugins = ["runcomfy_async.testing"]`, then:

```python
@pytest.mark.asyncio  # pytest-asyncio (strict or auto mode), or @pytest.mark.anyio
async def test_my_pipeline(runcomfy_simulator):
    ...  # point the code under test at runcomfy_simulator.url, with any bearer token
    assert all(n == 1 for n in runcomfy_simulator.ledger.jobs_per_input().values())
```
The fixture is a plain (synchronous) one: the simulator serves from an event loop of its
own, in a thread, so it works the same under pytest-asyncio in strict or auto mode, under
anyio's pytest plugin, and in plain `def` tests (e.g. of code using `rc.SyncClient`); it
needs only pytest (`pip install runcomfy-async[testing]`). What it yields has the
Simulator's attributes (`url`, `config`, `ledger`, `faults`, `engine`, `catalog`, `now()`,
`reset()`); each use of them runs in the simulator's loop, so reading the ledger while
calls arrive is safe.

Configure it by overriding the `runcomfy_simulator_config` fixture, or per test with
`@pytest.mark.parametrize("runcomfy_simulator", [{"concurrency": 2}], indirect=True)`
(a dict of SimulatorConfig fields replaced on the default config, or a whole SimulatorConfig).
The default config runs jobs 100 times faster than real time (`time_scale=0.01`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from runcomfy_async.simulator import CatalogEntry, Simulator, SimulatorConfig

__all__ = ["ThreadedSimulator", "runcomfy_simulator", "runcomfy_simulator_config"]


class _InLoop:
    """Forwards attribute reads and method calls to `target` inside the portal's loop."""

    __slots__ = ("_portal", "_target")

    def __init__(self, target: object, portal: BlockingPortal) -> None:
        self._target, self._portal = target, portal

    def __getattr__(self, name: str) -> Any:
        value = self._portal.call(getattr, self._target, name)
        if callable(value) and not isinstance(value, type):
            return functools.partial(_call_in, self._portal, value)
        return value

    def __repr__(self) -> str:
        return repr(self._target)


def _call_in(portal: BlockingPortal, function: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return portal.call(functools.partial(function, *args, **kw))


class ThreadedSimulator:
    """A started Simulator serving from its own event loop thread (what the fixture yields)."""

    def __init__(self, simulator: Simulator, portal: BlockingPortal) -> None:
        self._simulator, self._portal = simulator, portal
        self.url: str = simulator.url
        self.config: SimulatorConfig = simulator.config
        self.catalog: dict[str, CatalogEntry] = simulator.catalog

    @property
    def ledger(self) -> Any:
        """The Simulator's ledger (jobs, calls, cancels, money); see `Simulator.ledger`."""
        return _InLoop(self._portal.call(getattr, self._simulator, "ledger"), self._portal)

    @property
    def faults(self) -> Any:
        """The Simulator's fault rules: `faults.add(FaultRule(...))`, `faults.clear()`."""
        return _InLoop(self._portal.call(getattr, self._simulator, "faults"), self._portal)

    @property
    def engine(self) -> Any:
        """The Simulator's job engine."""
        return _InLoop(self._portal.call(getattr, self._simulator, "engine"), self._portal)

    def now(self) -> float:
        """Simulator-clock seconds."""
        return self._simulator.now()

    def reset(self) -> None:
        """Forget every job and call, restore the configured faults, reseed."""
        self._portal.call(self._simulator.reset)

    def __repr__(self) -> str:
        return f"<Simulator {self.url} (in a thread)>"


@pytest.fixture
def runcomfy_simulator_config() -> SimulatorConfig:
    """The configuration `runcomfy_simulator` starts from; override it in a conftest.py."""
    return SimulatorConfig(time_scale=0.01)


@pytest.fixture
def runcomfy_simulator(
    request: pytest.FixtureRequest, runcomfy_simulator_config: SimulatorConfig
) -> Iterator[ThreadedSimulator]:
    """A Simulator listening on an ephemeral 127.0.0.1 port for the length of one test."""
    param = getattr(request, "param", None)
    if isinstance(param, SimulatorConfig):
        config = param
    elif isinstance(param, Mapping):
        config = dataclasses.replace(runcomfy_simulator_config, **param)
    elif param is None:
        config = runcomfy_simulator_config
    else:
        raise TypeError(f"runcomfy_simulator takes a SimulatorConfig or a dict, got {param!r}")
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(Simulator(config)) as simulator,
    ):
        yield ThreadedSimulator(simulator, portal)
