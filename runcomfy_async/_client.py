"""The Client: configuration, session lifecycle, and submit/status/result/wait/run/cancel."""

from __future__ import annotations

import os
import random
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Hashable,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, overload
from urllib.parse import urlsplit

import anyio

from ._batch import Batch
from ._catalog import iter_models
from ._config import Timeouts, environ, is_loopback, resolve_api_key, resolve_base_url
from ._download import DEFAULT_TEMPLATE, download_result
from ._errors import ConfigurationError, RunComfyError, WaitTimeoutError
from ._files import INLINE_MAX_BYTES, UPLOAD_EXPIRES, FileInputs, Uploader, file_settings
from ._inputs import ModelInput, encode_inputs
from ._items import BatchInput, Change, MapOptions
from ._limiter import RateLimiter
from ._policy import PollPolicy
from ._request import Request
from ._retry import Clock, RetryPolicy, Sleep
from ._runtime import Runtime, request_id_of
from ._runtimes import run_times_file
from ._sink import DownloadedFile
from ._streams import as_completed, watch
from ._telemetry import Telemetry, telemetry_of
from ._track import EXPIRED, TrackSettings, cancel_quietly
from ._transport import Transport
from ._version import __version__
from ._wire import CancelOutcome, ModelInfo, Result, State, Status

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Client"]


class Client:
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
        env = environ()
        key = resolve_api_key(api_key, env)
        self.base_url = resolve_base_url(base_url, env)
        if isinstance(timeout, int | float):
            timeout = Timeouts(total=float(timeout), connect=min(10.0, float(timeout)))
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        sleep = sleep or anyio.sleep
        clock = clock or time.monotonic
        rng = rng or random.Random()
        self._cancel_on_interrupt = cancel_on_interrupt
        traced = telemetry_of(telemetry)
        limiter = None
        if max_calls_per_second is not None:
            limiter = RateLimiter(max_calls_per_second, clock=clock, sleep=sleep)
        transport = Transport(
            api_key=key,
            base_url=self.base_url,
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
        self._runtime = Runtime(
            transport,
            poll=poll or PollPolicy(),
            settings=TrackSettings(not_found_grace=not_found_grace, cancel_grace=cancel_grace),
            workers=max_connections,
            validate=validate,
            preflight=preflight,
            allow_loopback=is_loopback(urlsplit(self.base_url).hostname or ""),
            files=FileInputs(file_settings(uploads, inline_max_bytes, upload_expires)),
            telemetry=traced,
            run_times=run_times_file(run_times, env),
            clock=clock,
            sleep=sleep,
            rng=rng,
        )

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
        return await self._wait(request, deadline, timeout, cancel_on_timeout, cancel_on_interrupt)

    async def _wait(
        self,
        request: Request | str,
        deadline: float | None,
        timeout: float | None,
        cancel_on_timeout: bool,
        cancel_on_interrupt: bool | None,
    ) -> Result:
        """wait() up to a `deadline` on the client's clock; `timeout` is what the caller gave."""
        runtime = self._runtime
        rid = request_id_of(request)
        tracker = runtime.tracker(request, deadline=deadline)
        interrupt = (
            self._cancel_on_interrupt if cancel_on_interrupt is None else cancel_on_interrupt
        )
        runtime.track(tracker)
        try:
            outcome = await tracker.wait()
        except anyio.get_cancelled_exc_class():
            runtime.forget(tracker)
            if interrupt and tracker.state in (None, State.IN_QUEUE):
                await cancel_quietly(runtime, rid, runtime.settings.cancel_grace)
            raise
        if outcome is EXPIRED:
            cancelled = None
            if cancel_on_timeout:
                cancelled = await cancel_quietly(runtime, rid, runtime.settings.cancel_grace)
            raise WaitTimeoutError(
                f"request {rid} did not finish within {timeout} s; it " + _after_cancel(cancelled),
                request_id=rid,
                timeout=timeout or 0.0,
                cancel_outcome=cancelled,
            )
        if isinstance(outcome, RunComfyError):
            raise outcome
        return outcome  # type: ignore[return-value]

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
        return await self._wait(request, deadline, timeout, cancel_on_timeout, None)

    def map(
        self,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        max_in_flight: int = 32,
        timeout: float | None = None,
        cancel_on_exit: bool = True,
        key: Callable[[Any], Hashable] | None = None,
        on_change: Callable[[Change], None] | None = None,
        journal: str | os.PathLike[str] | None = None,
        batch: str | None = None,
        resubmit_unknown: bool = False,
        retry_failed: bool = False,
        download_to: str | os.PathLike[str] | None = None,
        name_template: str = DEFAULT_TEMPLATE,
        validate: bool | None = None,
        preflight: bool | None = None,
    ) -> Batch:
        """Run every input and yield an Item per input, in completion order.

        `inputs` (typed inputs or `(model_id, dict)` pairs, any iterable or async iterable)
        are read lazily; at most `max_in_flight` are outstanding (submitted and not yet taken
        from the iterator). Nothing fails fast: a rejected input or a failed request is an
        Item with `.error`. `timeout` (seconds) bounds the whole batch: reading stops, and
        unfinished requests yield WaitTimeoutError items. Leaving early cancels the queued
        requests this batch submitted (`cancel_on_exit`); running ones are listed in
        `batch.unfinished`. `key(input)` names items (default: the index); `on_change` is
        called on every state change; `batch.progress` has live counts. An input given as
        `rc.Numbered(input, index, line)` is known by that index (and line) in its Item, the
        journal and file names. If the iterable raises, the inputs read before it are still
        tracked to the end and yield their items; then the iteration raises its exception.

        With `journal` (a SQLite file path), every input's fate is written ahead: a rerun
        with the same journal skips finished inputs (their items come back with
        `resumed=True`), re-attaches to requests already submitted, submits only what was
        never sent, and reports inputs whose submit had an unknown outcome instead of paying
        twice (`resubmit_unknown=True` sends those again). Inputs whose request ran and
        failed stay failed, unless `retry_failed=True` resubmits them (a new, billed request;
        the journal keeps the earlier one). Keys then default to a hash of the model id and
        inputs, so a reordered input file resumes correctly; the k-th repeat of the same
        inputs is an input of its own. The journal's folder is created; one run at a time
        holds it (another raises JournalBusyError, from `await batch.open()` or `async with`).
        A `postgresql://user@host/db` journal with `batch="NAME"` is shared instead: any
        number of processes on any hosts run the same inputs as batch NAME, each input is
        submitted once across all of them, and `max_in_flight` counts the requests of every
        worker of the batch (see the README, "One batch on many machines").

        With `download_to` (a directory), each success's outputs are downloaded as it
        arrives, before its item is yielded (`item.files`; see download()), and recorded with
        size and sha256 in the journal; a rerun downloads what an interrupted run had not.
        Names come from `name_template` ({index}, {line}, {slug} of the prompt, {key}, {n},
        {request_id}, {ext}; default `0007-a-red-fox-0.png`), chosen when a file is saved and
        kept by the journal: a resumed batch never renames.

        `validate` and `preflight` are as for submit(); a batch's pre-flight measures each
        file URL once, however many inputs name it. An input they refuse is an item with
        its InvalidInputError (or PreflightError), and costs nothing.
        """
        options = MapOptions(
            max_in_flight=max_in_flight,
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
            key=key,
            on_change=on_change,
            journal=journal,
            batch=batch,
            resubmit_unknown=resubmit_unknown,
            retry_failed=retry_failed,
            download_to=download_to,
            name_template=name_template,
            validate=validate,
            preflight=preflight,
        )
        return Batch(self._runtime, inputs, options)

    @overload
    def as_completed(
        self,
        requests: Iterable[Request | str],
        *,
        timeout: float | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsyncIterator[Result]: ...
    @overload
    def as_completed(
        self,
        requests: Iterable[Request | str],
        *,
        timeout: float | None = ...,
        return_exceptions: Literal[True],
    ) -> AsyncIterator[Result | RunComfyError]: ...

    def as_completed(
        self,
        requests: Iterable[Request | str],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Result] | AsyncIterator[Result | RunComfyError]:
        """Yield the Result of each request (handle or request_id) as it finishes.

        Failed and cancelled requests are yielded as Results with that state. A request that
        cannot be tracked (NotFoundError for an unknown or expired id, naming it in
        `request_id` and the message) never costs the others their results: they are all
        yielded first, then its error is raised (a note lists any others). With
        `return_exceptions=True` such errors are yielded in place of that request's Result
        instead. After `timeout` seconds WaitTimeoutError is raised; the requests go on.
        """
        return as_completed(
            self._runtime, requests, timeout=timeout, return_exceptions=return_exceptions
        )

    def watch(
        self, request: Request | str, *, timeout: float | None = None
    ) -> AsyncIterator[State]:
        """Yield the request's state each time it changes, ending with its terminal state.

        The client's poller pool does the polling, so a thousand watchers cost no more than
        a thousand waits. A failed or cancelled request ends the iteration (read why with
        result()); a request that does not exist raises NotFoundError; after `timeout`
        seconds WaitTimeoutError is raised. Leaving early (close it, e.g. with
        `contextlib.aclosing`) stops the polling, not the request.
        """
        return watch(self._runtime, request, timeout=timeout)

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
        rids = [request_id_of(request) for request in requests]
        outcomes: list[CancelOutcome | None] = [None] * len(rids)

        async def one(index: int) -> None:
            outcomes[index] = await cancel_quietly(self._runtime, rids[index], timeout)

        async with anyio.create_task_group() as group:
            for index in range(len(rids)):
                group.start_soon(one, index)
        return [
            outcome or CancelOutcome(request_id=rid, cancelled=False, outcome="unknown")
            for rid, outcome in zip(rids, outcomes, strict=True)
        ]

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


def _after_cancel(cancelled: CancelOutcome | None) -> str:
    if cancelled is not None and cancelled.cancelled:
        return "was cancelled"
    if cancelled is not None and cancelled.requested:
        return "has a cancellation requested (it may still run): wait again to learn its end"
    return "goes on: wait again"
