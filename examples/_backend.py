"""Shared by the examples: a Client on RunComfy if RUNCOMFY_API_KEY is set, else on a simulator.

Set RUNCOMFY_EXAMPLE_TIME_SCALE (e.g. 0.01) to make the simulator run jobs faster.
"""

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import runcomfy_async as rc
from runcomfy_async.simulator import Simulator, SimulatorConfig


@contextlib.asynccontextmanager
async def connect(time_scale: float = 0.25, **simulator: Any) -> AsyncIterator[rc.Client]:
    """A Client on RunComfy when RUNCOMFY_API_KEY is set; else one on an in-process simulator
    whose run times are multiplied by `time_scale`, configured by `simulator` (SimulatorConfig
    fields, e.g. concurrency=2). Either way the caller's code is the same."""
    if os.environ.get("RUNCOMFY_API_KEY"):
        async with rc.Client() as client:
            yield client
        return
    print("RUNCOMFY_API_KEY is not set: using the local simulator (no cost)", file=sys.stderr)
    scale = float(os.environ.get("RUNCOMFY_EXAMPLE_TIME_SCALE") or time_scale)
    config = SimulatorConfig(**{**simulator, "time_scale": scale})
    async with Simulator(config) as sim, rc.Client("simulator", base_url=sim.url) as client:
        yield client
