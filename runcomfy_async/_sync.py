"""SyncClient: the one async Client, driven from blocking code through anyio's blocking portal."""

from __future__ import annotations

import functools
import os
import random
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import Any, Literal, Self, overload

from ._blocking import BlockingBatch, BlockingIterator, Loop
from ._client import Client
from ._config import Timeouts
from ._download import DEFAULT_TEMPLATE
from ._errors import RunComfyError
from ._files import INLINE_MAX_BYTES, UPLOAD_EXPIRES, Uploader
from ._inputs import ModelInput
from ._items import BatchInput, Change
from ._policy import PollPolicy
from ._request import Request
from ._retry import Clock, RetryPolicy, Sleep
from ._sink import DownloadedFile
from ._telemetry import Telemetry
from ._wire import CancelOutcome, ModelInfo, Result, State, Status

__all__ = ["BlockingBatch", "BlockingIterator", "SyncClient"]


class SyncClient:
    """A blocking RunComfy client for scripts and notebooks: `with rc.SyncClient() as client:`.

    It runs one async `Client` (same arguments, same behaviour, except that a `session`
    cannot be lent) in an event loop of its own, in a daemon thread, through anyio's
    blocking portal. Each method blocks until the async one is done; iterators are plain
    iterators. It works in a thread that runs an event loop (Jupyter) and from many threads
    at once. Ctrl-C in a waiting call cancels that call as cancelling a task would: requests
    still queued are cancelled (within `cancel_grace`), then KeyboardInterrupt goes on.
    `on_change` callbacks run in the client's thread. `close()` (or leaving `with`) ends it.
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
        self._loop = Loop(cancel_grace)
        portal = self._loop.running()
        make = functools.partial(
            Client,
            api_key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            poll=poll,
            max_connections=max_connections,
            max_calls_per_second=max_calls_per_second,
            cancel_on_interrupt=cancel_on_interrupt,
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
        try:
            self._client: Client = portal.call(make)
            portal.call(self._client.__aenter__)
        except BaseException:
            self._loop.close()
            raise
        self.base_url = self._client.base_url

    def __repr__(self) -> str:
        return f"SyncClient(base_url={self.base_url!r}, api_key='********')"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the async client (as `aclose()`), then stop its thread. Idempotent."""
        self._loop.close(self._client.aclose)

    # ------------------------------------------------------------------ the API

    @overload
    def submit(
        self, model: ModelInput, /, *, validate: bool | None = ..., preflight: bool | None = ...
    ) -> Request: ...
    @overload
    def submit(
        self,
        model: str,
        inputs: Mapping[str, Any],
        /,
        *,
        validate: bool | None = ...,
        preflight: bool | None = ...,
    ) -> Request: ...

    def submit(
        self,
        model: ModelInput | str,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        validate: bool | None = None,
        preflight: bool | None = None,
    ) -> Request:
        """Blocking `Client.submit`: queue one request, return its handle (pass it back
        here: the handle's own methods are async)."""
        submit: Callable[..., Awaitable[Request]] = self._client.submit
        args = (model,) if inputs is None else (model, inputs)
        return self._loop.call(submit, *args, validate=validate, preflight=preflight)

    def status(self, request: Request | str) -> Status:
        """Blocking `Client.status`."""
        return self._loop.call(self._client.status, request)

    def result(self, request: Request | str, *, include_cost: bool = True) -> Result:
        """Blocking `Client.result`."""
        return self._loop.call(self._client.result, request, include_cost=include_cost)

    def wait(
        self,
        request: Request | str,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool | None = None,
    ) -> Result:
        """Blocking `Client.wait`; Ctrl-C while it is queued cancels it (cancel_on_interrupt)."""
        return self._loop.call(
            self._client.wait,
            request,
            timeout=timeout,
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_interrupt=cancel_on_interrupt,
        )

    @overload
    def run(
        self,
        model: ModelInput,
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result: ...
    @overload
    def run(
        self,
        model: str,
        inputs: Mapping[str, Any],
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result: ...

    def run(
        self,
        model: ModelInput | str,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result:
        """Blocking `Client.run`: submit and wait; `timeout` (seconds) covers both."""
        run: Callable[..., Awaitable[Result]] = self._client.run
        args = (model,) if inputs is None else (model, inputs)
        return self._loop.call(run, *args, timeout=timeout, cancel_on_timeout=cancel_on_timeout)

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
    ) -> BlockingBatch:
        """Blocking `Client.map`: a plain iterator of Items in completion order (see there).
        Leaving early (`with`, `close()`, a dropped iterator, Ctrl-C) cancels what it queued."""
        running = self._loop.running().call(
            functools.partial(
                self._client.map,
                inputs,
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
        )
        return BlockingBatch(self._loop, running)

    @overload
    def as_completed(
        self,
        requests: Iterable[Request | str],
        *,
        timeout: float | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> BlockingIterator[Result]: ...
    @overload
    def as_completed(
        self,
        requests: Iterable[Request | str],
        *,
        timeout: float | None = ...,
        return_exceptions: Literal[True],
    ) -> BlockingIterator[Result | RunComfyError]: ...

    def as_completed(
        self,
        requests: Iterable[Request | str],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> BlockingIterator[Result] | BlockingIterator[Result | RunComfyError]:
        """Blocking `Client.as_completed`: each request's Result as it finishes."""
        source: AsyncIterator[Any] = self._loop.running().call(
            functools.partial(
                self._client.as_completed,
                list(requests),
                timeout=timeout,
                return_exceptions=return_exceptions,
            )
        )
        return BlockingIterator(self._loop, source)

    def watch(
        self, request: Request | str, *, timeout: float | None = None
    ) -> BlockingIterator[State]:
        """Blocking `Client.watch`: the request's state each time it changes."""
        source = self._loop.running().call(
            functools.partial(self._client.watch, request, timeout=timeout)
        )
        return BlockingIterator(self._loop, source)

    def download(
        self,
        result: Result,
        dest_dir: str | os.PathLike[str],
        *,
        key: str | int | None = None,
        template: str = "{key}-{n}.{ext}",
    ) -> list[DownloadedFile]:
        """Blocking `Client.download`: every output of `result` into `dest_dir`."""
        return self._loop.call(self._client.download, result, dest_dir, key=key, template=template)

    def cancel(self, request: Request | str) -> CancelOutcome:
        """Blocking `Client.cancel`."""
        return self._loop.call(self._client.cancel, request)

    def cancel_many(
        self, requests: Iterable[Request | str], *, timeout: float = 10.0
    ) -> list[CancelOutcome]:
        """Blocking `Client.cancel_many`."""
        return self._loop.call(self._client.cancel_many, list(requests), timeout=timeout)

    def model_info(self, model_id: str) -> ModelInfo:
        """Blocking `Client.model_info`."""
        return self._loop.call(self._client.model_info, model_id)

    def models(
        self,
        search: str | None = None,
        category: str | None = None,
        *,
        include_schema: bool = True,
    ) -> BlockingIterator[ModelInfo]:
        """Blocking `Client.models`: every catalog entry matching, page by page."""
        source = self._client.models(search, category, include_schema=include_schema)
        return BlockingIterator(self._loop, source)
