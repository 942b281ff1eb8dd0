"""The Client's settings made into what it runs on: key, base URL, timeouts, transport, runtime."""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from ._config import Timeouts, environ, is_loopback, resolve_api_key, resolve_base_url
from ._errors import ConfigurationError
from ._files import FileInputs, Uploader, file_settings
from ._limiter import RateLimiter
from ._policy import PollPolicy
from ._retry import Clock, RetryPolicy, Sleep
from ._runtime import Runtime
from ._runtimes import run_times_file
from ._telemetry import Telemetry, telemetry_of
from ._track import TrackSettings
from ._transport import Transport
from ._version import __version__

if TYPE_CHECKING:
    import aiohttp

__all__ = ["build_runtime"]


def build_runtime(
    api_key: str | None,
    *,
    base_url: str | None,
    timeout: float | Timeouts,
    retry: RetryPolicy | None,
    poll: PollPolicy | None,
    max_connections: int,
    max_calls_per_second: float | None,
    session: aiohttp.ClientSession | None,
    validate: bool,
    preflight: bool,
    uploads: str | Uploader | None,
    inline_max_bytes: int,
    upload_expires: float,
    not_found_grace: float,
    cancel_grace: float,
    sleep: Sleep | None,
    clock: Clock | None,
    rng: random.Random | None,
    telemetry: bool | Telemetry,
    run_times: bool | str | os.PathLike[str],
) -> tuple[str, Runtime]:
    """The base URL and the runtime of a Client built with these arguments (see Client)."""
    env = environ()
    key = resolve_api_key(api_key, env)
    url = resolve_base_url(base_url, env)
    if isinstance(timeout, int | float):
        timeout = Timeouts(total=float(timeout), connect=min(10.0, float(timeout)))
    if max_connections < 1:
        raise ConfigurationError("max_connections must be at least 1")
    sleep = sleep or anyio.sleep
    clock = clock or time.monotonic
    rng = rng or random.Random()
    traced = telemetry_of(telemetry)
    limiter = None
    if max_calls_per_second is not None:
        limiter = RateLimiter(max_calls_per_second, clock=clock, sleep=sleep)
    transport = Transport(
        api_key=key,
        base_url=url,
        timeouts=timeout,
        retry=retry or RetryPolicy(),
        max_connections=max_connections,
        user_agent=f"runcomfy-async/{__version__}",
        session=session,
        limiter=limiter,
        sleep=sleep,
        clock=clock,
        rng=rng,
        telemetry=traced,
    )
    runtime = Runtime(
        transport,
        poll=poll or PollPolicy(),
        settings=TrackSettings(not_found_grace=not_found_grace, cancel_grace=cancel_grace),
        workers=max_connections,
        validate=validate,
        preflight=preflight,
        allow_loopback=is_loopback(urlsplit(url).hostname or ""),
        files=FileInputs(file_settings(uploads, inline_max_bytes, upload_expires)),
        telemetry=traced,
        run_times=run_times_file(run_times, env),
        clock=clock,
        sleep=sleep,
        rng=rng,
    )
    return url, runtime
