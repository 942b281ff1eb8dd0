"""pytest plugin: the `runcomfy_simulator` fixture, a started local RunComfy simulator per test.

Enable it in your root conftest.py with `pytest_plugins = ["runcomfy_async.testing"]`, then:

```python
async def test_my_pipeline(runcomfy_simulator):
    ...  # point the code under test at runcomfy_simulator.url, with any bearer token
    assert all(n == 1 for n in runcomfy_simulator.ledger.jobs_per_input().values())
```
Configure it by overriding the `runcomfy_simulator_config` fixture, or per test with
`@pytest.mark.parametrize("runcomfy_simulator", [{"concurrency": 2}], indirect=True)`
(a dict of SimulatorConfig fields replaced on the default config, or a whole SimulatorConfig).
The default config runs jobs 100 times faster than real time (`time_scale=0.01`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping

import pytest
import pytest_asyncio

from runcomfy_async.simulator import Simulator, SimulatorConfig

__all__ = ["runcomfy_simulator", "runcomfy_simulator_config"]


@pytest.fixture
def runcomfy_simulator_config() -> SimulatorConfig:
    """The configuration `runcomfy_simulator` starts from; override it in a conftest.py."""
    return SimulatorConfig(time_scale=0.01)


@pytest_asyncio.fixture
async def runcomfy_simulator(
    request: pytest.FixtureRequest, runcomfy_simulator_config: SimulatorConfig
) -> AsyncIterator[Simulator]:
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
    async with Simulator(config) as simulator:
        yield simulator
