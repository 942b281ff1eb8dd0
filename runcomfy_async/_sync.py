"""SyncClient: the one async Client, driven from blocking code through anyio's blocking portal."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import threading
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
from typing import Any, Generic, Literal, Self, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._batch import Batch
from ._client import Client
from ._config import Timeouts
from ._download import DEFAULT_TEMPLATE
from ._errors import RunComfyError
from ._files import INLINE_MAX_BYTES, UPLOAD_EXPIRES, Uploader
from ._inputs import ModelInput
from ._items import BatchInput, Change, Item, Progress
from ._policy import PollPolicy
from ._request import Request
from ._retry import Clock, RetryPolicy, Sleep
from ._sink import DownloadedFile
from ._telemetry import Telemetry
from ._wire import CancelOutcome, ModelInfo, Result, State, Status

__all__ = ["BlockingBatch", "BlockingIterator", "SyncClient"]

T = TypeVar("T")
_SLACK = 5.0  # seconds past the cancel grace that Ctrl-C waits for the cancels to land


class _Raised:
    """An exception the async iterator raised, carried to the consuming thread."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class BlockingIterator(Generic[T]):
    """A plain iterator over one of the Client's async iterators (watch, as_completed, map).

    A task in the client's loop reads the async iterator and hands each value over as it is
    taken, so nothing is read ahead. Leaving early (`close()`, `with`, or dropping it) ends
    that task, as leaving the async iteration would; Ctrl-C does the same, then re-raises.
    """

    def __init__(self, owner: SyncClient, source: AsyncIterable[T]) -> None:
        self._owner, self._source = owner, source
        self._stream: Any = None
        self._future: Any = None
        self._done = threading.Event()
        self._finished = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        if self._stream is None:
            self._start()
        try:
            value = self._owner._call(self._stream.receive)
        except anyio.EndOfStream:
            self.close()
            raise StopIteration from None
        except BaseException:
            self.close()
            raise
        if isinstance(value, _Raised):
            self.close()
            raise value.error
        return value  # type: ignore[no-any-return]

    def _start(self) -> None:
        portal = self._owner._running_portal()
        send, self._stream = portal.call(anyio.create_memory_object_stream[object], 0)
        self._future = portal.start_task_soon(self._pump, send)

    async def _pump(self, send: Any) -> None:
        try:
            async with send, contextlib.AsyncExitStack() as stack:
                source = self._source
                if hasattr(source, "__aenter__"):
                    source = await stack.enter_async_context(source)  # type: ignore[arg-type]
                elif hasattr(source, "aclose"):
                    stack.push_async_callback(source.aclose)
                try:
                    async for value in source:
                        await send.send(value)
                except Exception as exc:  # the consumer gets it at its next step
                    await send.send(_Raised(exc))
        except anyio.BrokenResourceError:
            pass  # the consumer left
        finally:
            self._done.set()

    def close(self) -> None:
        """Stop iterating: end the reading task (a batch cancels what it queued) and wait."""
        self._finished = True
        if self._future is not None and not self._done.is_set():
            self._future.cancel()
            self._done.wait(self._owner._cancel_grace + _SLACK)
        stream, self._stream = self._stream, None
        if stream is not None:
            portal = self._owner._portal
            if portal is None:
                stream.close()
            else:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to close
                    portal.call(stream.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        future = getattr(self, "_future", None)
        if future is not None:  # dropped mid-iteration (a `break`): end it, never block here
            future.cancel()


class BlockingBatch(BlockingIterator[Item]):
    """What `SyncClient.map()` returns: a plain iterator of Items, in completion order."""

    def __init__(self, owner: SyncClient, batch: Batch) -> None:
        super().__init__(owner, batch)
        self._batch = batch

    @property
    def progress(self) -> Progress:
        """Live counts by state of the inputs read so far."""
        return self._batch.progress

    @property
    def unfinished(self) -> list[str]:
        """request_ids still running when the batch was ended early."""
        return self._batch.unfinished


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
        self._cancel_grace = cancel_grace
        self._lock = threading.Lock()
        self._portal_cm = start_blocking_portal("asyncio", name="runcomfy-sync-client")
        self._portal: BlockingPortal | None = self._portal_cm.__enter__()
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
            self._client: Client = self._portal.call(make)
            self._portal.call(self._client.__aenter__)
        except BaseException:
            self._portal, portal_cm = None, self._portal_cm
            portal_cm.__exit__(None, None, None)
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
        with self._lock:
            portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            portal.call(self._client.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def _running_portal(self) -> BlockingPortal:
        portal = self._portal
        if portal is None:
            raise RunComfyError("the client was closed")
        return portal

    def _call(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `function(*args, **kwargs)` in the client's loop and wait for it. Ctrl-C
        cancels it there (its shielded cancels included), waits for that, and re-raises."""
        portal = self._running_portal()
        done = threading.Event()

        async def run() -> T:
            try:
                return await function(*args, **kwargs)
            finally:
                done.set()

        future = portal.start_task_soon(run)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            done.wait(self._cancel_grace + _SLACK)
            raise

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
        return self._call(submit, *args, validate=validate, preflight=preflight)

    def status(self, request: Request | str) -> Status:
        """Blocking `Client.status`."""
        return self._call(self._client.status, request)

    def result(self, request: Request | str, *, include_cost: bool = True) -> Result:
        """Blocking `Client.result`."""
        return self._call(self._client.result, request, include_cost=include_cost)

    def wait(
        self,
        request: Request | str,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool | None = None,
    ) -> Result:
        """Blocking `Client.wait`; Ctrl-C while it is queued cancels it (cancel_on_interrupt)."""
        return self._call(
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
        return self._call(run, *args, timeout=timeout, cancel_on_timeout=cancel_on_timeout)

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
        running = self._running_portal().call(
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
        return BlockingBatch(self, running)

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
        source: AsyncIterator[Any] = self._running_portal().call(
            functools.partial(
                self._client.as_completed,
                list(requests),
                timeout=timeout,
                return_exceptions=return_exceptions,
            )
        )
        return BlockingIterator(self, source)

    def watch(
        self, request: Request | str, *, timeout: float | None = None
    ) -> BlockingIterator[State]:
        """Blocking `Client.watch`: the request's state each time it changes."""
        source = self._running_portal().call(
            functools.partial(self._client.watch, request, timeout=timeout)
        )
        return BlockingIterator(self, source)

    def download(
        self,
        result: Result,
        dest_dir: str | os.PathLike[str],
        *,
        key: str | int | None = None,
        template: str = "{key}-{n}.{ext}",
    ) -> list[DownloadedFile]:
        """Blocking `Client.download`: every output of `result` into `dest_dir`."""
        return self._call(self._client.download, result, dest_dir, key=key, template=template)

    def cancel(self, request: Request | str) -> CancelOutcome:
        """Blocking `Client.cancel`."""
        return self._call(self._client.cancel, request)

    def cancel_many(
        self, requests: Iterable[Request | str], *, timeout: float = 10.0
    ) -> list[CancelOutcome]:
        """Blocking `Client.cancel_many`."""
        return self._call(self._client.cancel_many, list(requests), timeout=timeout)

    def model_info(self, model_id: str) -> ModelInfo:
        """Blocking `Client.model_info`."""
        return self._call(self._client.model_info, model_id)

    def models(
        self,
        search: str | None = None,
        category: str | None = None,
        *,
        include_schema: bool = True,
    ) -> BlockingIterator[ModelInfo]:
        """Blocking `Client.models`: every catalog entry matching, page by page."""
        source = self._client.models(search, category, include_schema=include_schema)
        return BlockingIterator(self, source)
