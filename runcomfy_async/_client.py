"""The Client: configuration, session lifecycle, and submit/status/result/wait/run/cancel."""

from __future__ import annotations

import os
import random
from collections.abc import (
    AsyncIterator,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, overload

from ._catalog import iter_models
from ._config import Timeouts
from ._download import download_result
from ._fanout import FanOut
from ._files import INLINE_MAX_BYTES, UPLOAD_EXPIRES, Uploader
from ._inputs import ModelInput, encode_inputs
from ._policy import PollPolicy
from ._request import Request
from ._retry import Clock, RetryPolicy, Sleep
from ._runtime import request_id_of
from ._setup import build_runtime
from ._sink import DownloadedFile
from ._telemetry import Telemetry
from ._waits import cancel_all, wait_for
from ._wire import CancelOutcome, ModelInfo, Result, Status

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Client"]


class Client(FanOut):
    """An async client of the RunComfy Model API; use it as `async with rc.Client() as c:`.

    The key comes from `api_key`, else RUNCOMFY_API_KEY, else RUNCOMFY_API_TOKEN; the base URL
    from `base_url`, else RUNCOMFY_BASE_URL (https, or http to loopback only). `timeout` is
    seconds per call (or a Timeouts). One aiohttp session per client, opened on enter with
    `max_connections`; a `session` passed in is used as it is and not closed. `sleep`,
    `clock` and `rng` exist so tests can run in virtual time. `telemetry=True` emits
    OpenTelemetry spans and metrics (the `[otel]` extra; see runcomfy_async.otel); a
    Telemetry of your own gets the same hooks. `run_times` is where the run times learnt
    per model are kept between processes, so a new client polls as a warmed-up one would:
    True the per-user cache file (RUNCOMFY_RUN_TIMES, a path or `off`, overrides it), a
    path that file, False nowhere.

    A local file input (`pathlib.Path`, `LocalFile`) is checked on disk against the model's
    media rules, then sent inline as a data: URI up to `inline_max_bytes` (bytes), else
    uploaded to `uploads` (an object-store prefix such as "s3://bucket/inputs/", credentials
    from the store's own environment; the `[storage]` extra) and sent as a presigned URL valid
    `upload_expires` seconds.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeouts = 60.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        max_connections: int = 100,
        max_calls_per_second: float | None = None,
        session: aiohttp.ClientSession | None = None,
        cancel_on_interrupt: bool = True,
        validate: bool = True,
        preflight: bool = False,
        uploads: str | Uploader | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
        upload_expires: float = UPLOAD_EXPIRES,
        not_found_grace: float = 15.0,
        cancel_grace: float = 5.0,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        telemetry: bool | Telemetry = False,
        run_times: bool | str | os.PathLike[str] = True,
    ) -> None:
        self.base_url, self._runtime = build_runtime(
            api_key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            poll=poll,
            max_connections=max_connections,
            max_calls_per_second=max_calls_per_second,
            session=session,
            validate=validate,
            preflight=preflight,
            uploads=uploads,
            inline_max_bytes=inline_max_bytes,
            upload_expires=upload_expires,
            not_found_grace=not_found_grace,
            cancel_grace=cancel_grace,
            sleep=sleep,
            clock=clock,
            rng=rng,
            telemetry=telemetry,
            run_times=run_times,
        )
        self._cancel_on_interrupt = cancel_on_interrupt

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, api_key='********')"

    async def __aenter__(self) -> Self:
        await self._runtime.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop tracking, then close the session this client opened (a borrowed one stays
        open). Waits still pending raise RunComfyError. A batch still running gets an item
        for every input it read (submits on the wire get the cancel grace to land), then
        raises RunComfyError."""
        await self._runtime.close()

    # ------------------------------------------------------------------ the API

    @overload
    async def submit(
        self, model: ModelInput, /, *, validate: bool | None = ..., preflight: bool | None = ...
    ) -> Request: ...
    @overload
    async def submit(
        self,
        model: str,
        inputs: Mapping[str, Any],
        /,
        *,
        validate: bool | None = ...,
        preflight: bool | None = ...,
    ) -> Request: ...

    async def submit(
        self,
        model: ModelInput | str,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        validate: bool | None = None,
        preflight: bool | None = None,
    ) -> Request:
        """Queue one request and return its handle at once.

        Inputs are checked before anything is sent (InvalidInputError). If the call fails
        after its bytes may have reached RunComfy, SubmissionUnknownError is raised and the
        submit is never resent: a second send could create, and bill, a second job.

        Dict inputs of a model without a typed input are checked against its catalog
        schema (fetched once per client; `validate=False` skips it). With `preflight=True`
        (default: the client's), file inputs are fetched in part and checked against the
        model's media rules (size, dimensions, aspect ratio, kind): PreflightError.
        """
        return await self._submit(model, inputs, validate, preflight)

    async def _submit(
        self,
        model: ModelInput | str,
        inputs: Mapping[str, Any] | None,
        validate: bool | None = None,
        preflight: bool | None = None,
    ) -> Request:
        model_id, body = encode_inputs(model, inputs)
        body = await self._runtime.check(model_id, body, validate, preflight)
        sent = await self._runtime.post(model_id, body, model if inputs is None else inputs)
        return Request(sent.request_id, model_id, self, submitted_at=sent.submitted_at)

    async def status(self, request: Request | str) -> Status:
        """The request's current state; a failed or cancelled request is a state, not an error."""
        return await self._runtime.status(request_id_of(request))

    async def result(self, request: Request | str, *, include_cost: bool = True) -> Result:
        """The request's outcome: output on success, `error` on failure, or the current state
        while unfinished. Never raises for a state. Given a Request handle, the Result says
        whether RunComfy's answer is of another model (`model_mismatch`, logged)."""
        model_id = request.model_id if isinstance(request, Request) else None
        return await self._runtime.result(
            request_id_of(request), include_cost=include_cost, model_id=model_id
        )

    async def wait(
        self,
        request: Request | str,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool | None = None,
    ) -> Result:
        """Poll until the request is terminal, and return its Result on success.

        Raises RequestFailedError or RequestCancelledError otherwise, and WaitTimeoutError
        after `timeout` seconds (the request goes on unless `cancel_on_timeout`). Polls that
        fail on the network are retried until the deadline, never taken as failure. If the
        waiting task is cancelled while the request is queued, a bounded, shielded cancel is
        sent (`cancel_on_interrupt`, default from the client) and CancelledError propagates.
        """
        deadline = None if timeout is None else self._runtime.clock() + timeout
        interrupt = (
            self._cancel_on_interrupt if cancel_on_interrupt is None else cancel_on_interrupt
        )
        return await wait_for(
            self._runtime, request, deadline, timeout, cancel_on_timeout, interrupt
        )

    @overload
    async def run(
        self,
        model: ModelInput,
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result: ...
    @overload
    async def run(
        self,
        model: str,
        inputs: Mapping[str, Any],
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result: ...

    async def run(
        self,
        model: ModelInput | str,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result:
        """Submit and wait: `timeout` (seconds) covers both. Raises as submit() and wait() do."""
        deadline = None if timeout is None else self._runtime.clock() + timeout
        request = await self._submit(model, inputs)
        interrupt = self._cancel_on_interrupt
        return await wait_for(
            self._runtime, request, deadline, timeout, cancel_on_timeout, interrupt
        )

    async def download(
        self,
        result: Result,
        dest_dir: str | os.PathLike[str],
        *,
        key: str | int | None = None,
        template: str = "{key}-{n}.{ext}",
    ) -> list[DownloadedFile]:
        """Download every output of `result` into `dest_dir`; the files, in output order.

        Files are fetched with a session of their own that never carries the API key, over
        https only (plain http and loopback only when the client's own base URL is loopback,
        as with the simulator), streamed to a temporary file, size-capped, checked (sha256)
        and renamed into place. Names come from `template` ({key} (default: the
        request_id), {n}, {request_id}, {ext}), never from the URL; an existing different
        file is never overwritten. Failures raise DownloadError.
        """
        return await download_result(
            await self._runtime.downloads(), result, dest_dir, key=key, template=template
        )

    async def cancel(self, request: Request | str) -> CancelOutcome:
        """Ask RunComfy to cancel a queued request. A running or finished one cannot be
        (outcome `not_cancellable`, and it is billed); that is reported, not raised."""
        return await self._runtime.cancel(request_id_of(request))

    async def cancel_many(
        self, requests: Iterable[Request | str], *, timeout: float = 10.0
    ) -> list[CancelOutcome]:
        """Cancel many requests at once (e.g. a service's queue on shutdown): concurrently,
        paced like every call, all within `timeout` seconds even if the caller is cancelled.

        One outcome per request, in order. A cancel that failed or got no answer in time is
        outcome `unknown` (`cancelled` False): reported, never raised.
        """
        return await cancel_all(self._runtime, requests, timeout)

    async def model_info(self, model_id: str) -> ModelInfo:
        """The catalog entry of a model: input schema, base price in USD and its unit."""
        info = await self._runtime.model_info(model_id)
        self._runtime.checks.learn(info)  # submits to it are checked without asking again
        return info

    def models(
        self,
        search: str | None = None,
        category: str | None = None,
        *,
        include_schema: bool = True,
    ) -> AsyncIterator[ModelInfo]:
        """Every catalog entry whose id or name contains `search` (and of `category`), as
        `async for info in client.models(search="upscale"):`, paging until the catalog's
        total. `include_schema=False` asks for entries without their input schemas."""
        return iter_models(
            self._runtime.model_page,
            search=search,
            category=category,
            include_schema=include_schema,
        )
