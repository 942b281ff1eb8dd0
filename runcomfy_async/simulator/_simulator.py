"""Simulator: serves the simulated RunComfy API on a local port for the length of a block."""

from __future__ import annotations

import logging
from types import TracebackType

from aiohttp import web

from ._app import build_app
from ._backend import Backend
from ._catalog import CatalogEntry
from ._config import SimulatorConfig
from ._engine import Engine
from ._faults import Faults
from ._ledger import Ledger

_SHUTDOWN_TIMEOUT = 1.0  # seconds given to calls in flight (e.g. a latency fault) at stop


class Simulator:
    """A RunComfy Model API on `127.0.0.1`, in this process.

    ```python
    async with Simulator(SimulatorConfig(time_scale=0.01)) as sim:
        ...  # point a client at sim.url; assert on sim.ledger
    ```
    `access_log` True logs each call to the "aiohttp.access" logger (never the token).
    """

    def __init__(self, config: SimulatorConfig | None = None, *, access_log: bool = False):
        self.config = config if config is not None else SimulatorConfig()
        self._backend = Backend(self.config)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:40123` (RuntimeError before `start`)."""
        if self._url is None:
            raise RuntimeError("the simulator is not started: use `async with Simulator()`")
        return self._url

    @property
    def ledger(self) -> Ledger:
        """Jobs, calls, cancels, peaks and money (replaced by `reset`)."""
        return self._backend.ledger

    @property
    def faults(self) -> Faults:
        """The active fault rules: `sim.faults.add(FaultRule(...))`, `sim.faults.clear()`."""
        return self._backend.faults

    @property
    def engine(self) -> Engine:
        """The job engine (replaced by `reset`)."""
        return self._backend.engine

    @property
    def catalog(self) -> dict[str, CatalogEntry]:
        """The served models by model_id."""
        return self._backend.catalog

    def now(self) -> float:
        """Simulator-clock seconds: the clock of `Job.finished_at` and `Call.at`."""
        return self._backend.now()

    def reset(self) -> None:
        """Forget every job and call, restore the configured faults, reseed."""
        self._backend.reset()

    async def start(self) -> None:
        """Listen on `config.host`:`config.port` (0: an ephemeral port)."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        runner = web.AppRunner(
            build_app(self._backend),
            access_log=logging.getLogger("aiohttp.access") if self._access_log else None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def stop(self) -> None:
        """Close the listening socket and every connection."""
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<Simulator {self._url or 'stopped'}>"
