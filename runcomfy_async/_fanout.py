"""The Client's fan-out methods, map (a batch), as_completed and watch: a base it builds on."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable, Iterable
from typing import Any, Literal, overload

from ._batch import Batch
from ._download import DEFAULT_TEMPLATE
from ._errors import RunComfyError
from ._items import BatchInput, Change, MapOptions
from ._request import Request
from ._runtime import Runtime
from ._streams import as_completed, watch
from ._wire import Result, State

__all__ = ["FanOut"]


class FanOut:
    """Many requests at once, on the runtime the Client builds (see Client)."""

    _runtime: Runtime

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
