"""The fan-out engine: map() over many inputs, resumable through a journal."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import msgspec

from ._download import DEFAULT_TEMPLATE, download_result, render_stem, slug
from ._errors import (
    ConfigurationError,
    DownloadError,
    InvalidInputError,
    ModelMismatchError,
    RequestCancelledError,
    RequestFailedError,
    RunComfyError,
    SubmissionUnknownError,
    WaitTimeoutError,
)
from ._inputs import ModelInput, encode_inputs
from ._items import BUCKET, BatchInput, Change, Item, Job, Numbered, Progress
from ._journal import Entry, JournalMismatchError, Keys, Row
from ._journals import BatchJournal, NullJournal, open_journal
from ._preflight import Preflight
from ._request import Request
from ._runtimes import JournalRunTimes
from ._sink import DownloadedFile, Sink, file_records, open_sink, recorded_files
from ._telemetry import BatchProbe
from ._track import EXPIRED, Tracker, cancel_quietly
from ._wire import Output, Result, State

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Batch"]

logger = logging.getLogger("runcomfy_async")


class Batch:
    """What `client.map()` returns: an async iterator of Items, in completion order.

    `progress` has live counts; `unfinished` lists the request_ids left running when the
    batch was ended early. End it early with `aclose()` or `async with client.map(...) as
    batch:`; a plain `break` ends it as soon as the iterator is dropped.
    """

    __slots__ = ("__weakref__", "_engine")

    def __init__(self, engine: _Engine) -> None:
        # The engine is referenced by background tasks; this handle only by the caller, so
        # dropping it (a `break`) is seen at once.
        self._engine = engine

    @property
    def progress(self) -> Progress:
        """Live counts by state of the inputs read so far."""
        return self._engine.progress

    @property
    def unfinished(self) -> list[str]:
        """request_ids still running when the batch was ended early."""
        return self._engine.unfinished

    async def open(self) -> None:
        """Open the journal and start the batch, now rather than at the first item, so that a
        journal that cannot be used (ConfigurationError) or is in use by another run
        (JournalBusyError) is reported before anything else; `async with` does the same."""
        await self._engine.start()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Item:
        return await self._engine.next()

    async def __aenter__(self) -> Self:
        await self._engine.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._engine.aclose()

    async def aclose(self) -> None:
        """End the batch: stop reading inputs, cancel what is still queued (cancel_on_exit),
        and list what is still running in `unfinished`."""
        await self._engine.aclose()

    def __del__(self) -> None:
        engine = self._engine
        if engine.started and not engine.closed:
            # The loop or the client may be gone already: then there is nothing to cancel.
            with contextlib.suppress(Exception):
                engine.client._spawn(engine.aclose)


class _Engine:
    """Submits inputs with at most `max_in_flight` outstanding and emits an Item per input."""

    def __init__(
        self,
        client: Client,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        max_in_flight: int,
        timeout: float | None,
        cancel_on_exit: bool,
        key: Callable[[Any], Hashable] | None,
        on_change: Callable[[Change], None] | None,
        journal: str | os.PathLike[str] | None = None,
        batch: str | None = None,
        resubmit_unknown: bool = False,
        retry_failed: bool = False,
        download_to: str | os.PathLike[str] | None = None,
        name_template: str = DEFAULT_TEMPLATE,
        validate: bool | None = None,
        preflight: bool | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        try:
            render_stem(name_template, key="k", n=0, request_id="r")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ConfigurationError(f"name_template {name_template!r}: {exc}") from None
        self.progress = Progress()
        self.unfinished: list[str] = []  # request_ids left running when the batch ended early
        self.client = client
        self._inputs = inputs
        self._slots = anyio.Semaphore(max_in_flight)
        self._timeout = timeout
        self._deadline: float | None = None
        self._cancel_on_exit = cancel_on_exit
        self._key = key
        self._on_change = on_change
        self._journal_path = journal
        self._batch_name = batch
        self._max_in_flight = max_in_flight
        self._journal: BatchJournal = NullJournal()  # the real one from start() to the end
        self._run_times = JournalRunTimes(client._scheduler)
        self._writes = 0  # outcomes being written by background tasks: the journal stays
        self._written = anyio.Event()  # set whenever _writes drops to 0
        self._resubmit_unknown = resubmit_unknown
        self._retry_failed = retry_failed
        self._keys = Keys()  # default journal keys: the k-th repeat of an input is its own
        self._open: set[Job] = set()  # inputs read whose item is not made yet
        self._input_error: Exception | None = None  # the caller's iterable raised it
        self._download_to = download_to
        # Where outputs go; without download_to, only to check files an earlier run saved.
        self._sink: Sink = open_sink(os.curdir if download_to is None else download_to)
        self._template = name_template
        self._validate = validate
        self._preflight = client._preflight if preflight is None else preflight
        self._checker: Preflight | None = None  # the batch's own: each URL measured once
        self._checker_lock = anyio.Lock()
        self._fatal: Exception | None = None  # ends the batch at once: raised by next()
        self._cut: RunComfyError | None = None  # the client closed: raised after the items
        self._send, self._receive = anyio.create_memory_object_stream[Item](math.inf)
        self._live: dict[Tracker, Job] = {}
        self._reading = anyio.CancelScope()
        self._fed = anyio.Event()
        self.started = self.closed = False
        self._wound_up = False  # ended and its requests let go of: the journal may close
        self._reads = self._emitted = 0
        self._traced: BatchProbe | None = None  # the batch's span, from start() on

    async def next(self) -> Item:
        await self.start()
        while True:
            if self._fatal is not None:
                with anyio.CancelScope(shield=True):
                    await self.aclose()
                raise self._fatal
            try:
                with anyio.move_on_after(self._patience()) as waited:
                    item = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if self._fatal is not None:
                    continue
                await self._ended()
                break
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self.aclose()
                raise
            if not waited.cancelled_caught:
                self._slots.release()
                return item
            self._expire()  # the deadline and its grace passed: nothing left may hold us
        if self._input_error is not None:  # after the items of the inputs read before it
            raise self._input_error
        if self._cut is not None:
            raise self._cut
        raise StopAsyncIteration

    def _patience(self) -> float:
        """Seconds next() may wait for an item: unbounded without a timeout, else until the
        deadline plus the cancel grace (for the last items and cancels to land)."""
        if self._deadline is None:
            return math.inf
        grace = 2 * self.client._track.cancel_grace + 1.0
        return max(self._deadline - self.client._clock(), 0.0) + grace

    def _expire(self) -> None:
        """Give every input still without an item its timeout now (a stuck download, a
        tracker that never ended): the batch timeout bounds the whole batch."""
        stuck = [job for job in self._open if not job.settled]
        if not stuck:
            return
        logger.error("batch timeout passed with %d inputs unsettled: ending them", len(stuck))
        for tracker, job in list(self._live.items()):
            if job in stuck:
                del self._live[tracker]
                self.client._scheduler.forget(tracker)
        for job in stuck:
            rid = job.request_id
            error: RunComfyError
            if rid is not None:
                error = WaitTimeoutError(
                    f"request {rid} had no outcome within the batch timeout of {self._timeout} s",
                    request_id=rid,
                    timeout=self._timeout or 0.0,
                )
                self.unfinished.append(rid)
            else:
                error = RunComfyError(
                    f"input {job.index}: no outcome within the batch timeout of {self._timeout} s"
                )
            self._emit(job, error=error)
        if self._emitted >= self._reads:  # reading stopped at the deadline: that is all
            self._send.close()

    async def _ended(self) -> None:
        """Every item was taken: nothing left to end."""
        self.closed = self._wound_up = True
        self.client._batches.discard(self)
        self._receive.close()
        await self._close_journal()
        self._end_trace()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client._batches.discard(self)
        self._reading.cancel()
        if not self.started:
            self._send.close()
            self._receive.close()
            return
        grace = self.client._track.cancel_grace
        await self._let_go(tell=False)
        with anyio.move_on_after(grace):  # submits already sent: let them land, then abandon
            await self._fed.wait()
            await self._quiet()
        if self.unfinished:
            logger.warning(
                "batch ended early; %d requests still running: %s",
                len(self.unfinished),
                ", ".join(self.unfinished),
            )
        self._send.close()
        self._receive.close()
        self._wound_up = True
        await self._close_journal()
        self._end_trace()

    def _end_trace(self) -> None:
        if self._traced is not None:
            self._traced.end(dataclasses.asdict(self.progress))

    async def _quiet(self) -> None:
        """Wait until no outcome is being written to the journal."""
        while self._writes:
            await self._written.wait()

    async def _close_journal(self) -> None:
        # Only once no submit is in flight (a request_id that arrives late must be written)
        # and no outcome is being written; from then on, late writes go nowhere.
        if self._fed.is_set() and not self._writes:
            journal, self._journal = self._journal, NullJournal()
            await self._run_times.save(journal)
            await journal.close()

    # ------------------------------------------------------------------ background work

    async def start(self) -> None:
        if self.started:
            return
        self.started = True  # before the first await: a second start() does nothing
        try:
            self._journal = await open_journal(
                self._journal_path,
                batch=self._batch_name,
                max_in_flight=self._max_in_flight,
                saves_files=self._download_to is not None,
            )
            await self._run_times.load(self._journal)
        except BaseException:
            self.started, self.closed = False, True  # release the streams, then say why
            self._send.close()
            self._receive.close()
            raise
        if self._timeout is not None:
            self._deadline = self.client._clock() + self._timeout
        self._traced = self.client._telemetry.batch()
        self.client._spawn(self._traced.inside(self._feed))
        self.client._batches.add(self)

    async def interrupt(self) -> None:
        """The client is closing under this batch, whose consumer still reads: let the
        submits on the wire land (within the cancel grace), cancel what is queued
        (`cancel_on_exit`), give every input read an item, then end with RunComfyError."""
        if self.closed or self._cut is not None:
            return
        self._cut = RunComfyError(
            "the client was closed during the batch: inputs not read by then were not sent"
        )
        self._reading.cancel()
        with anyio.move_on_after(self.client._track.cancel_grace):
            await self._fed.wait()
            await self._quiet()
        await self._let_go(tell=True)
        # Submits still on the wire are cancelled with the client's service: see _run_one.

    async def _let_go(self, *, tell: bool) -> None:
        """Stop tracking every live request: cancel the queued ones (`cancel_on_exit`), list
        the others in `unfinished`; with `tell` (the consumer still reads), each gets an item."""
        leftover = list(self._live.items())
        self._live.clear()
        async with anyio.create_task_group() as group:
            for tracker, job in leftover:
                self.client._scheduler.forget(tracker)
                group.start_soon(self._let_go_of, tracker.request_id, tracker.state, job, tell)

    async def _let_go_of(self, rid: str, state: State | None, job: Job, tell: bool) -> None:
        """Cancel or leave one request as the batch ends: its item (taken only if the
        consumer still reads) and its count, cancelled or unfinished (it goes on, billed)."""
        why = "the client closed" if tell else "the batch ended"
        try:
            cancelled = await self._abandon(rid, state, job, why=why)
        except Exception as exc:  # e.g. the journal could not record the cancel
            await self._broke(job, "letting it go", exc)
            return
        error: RunComfyError
        if cancelled:
            error = RequestCancelledError(
                f"request {rid} was queued when {why}: cancelled", request_id=rid
            )
        else:
            where = state.value if state is not None else "submitted"
            error = RunComfyError(
                f"request {rid} was {where} when {why}; it goes on "
                "(a rerun with the same journal picks it up)"
            )
        self._emit(job, error=error, bucket="cancelled" if cancelled else "unfinished")

    async def _feed(self) -> None:
        try:
            async with anyio.create_task_group() as submits:
                with self._reading:
                    if self._deadline is not None:  # stop reading inputs at the deadline
                        left = self._deadline - self.client._clock()
                        self._reading.deadline = anyio.current_time() + left
                    position = 0
                    try:
                        async for value in _each(self._inputs, self._slots):
                            self._reads += 1
                            submits.start_soon(self._run_one, position, value)
                            position += 1
                    except Exception as exc:
                        # The caller's iterable raised: stop reading, but the inputs read
                        # go on (their submits may be billed already) and next() raises it
                        # after their items.
                        self._input_error = exc
        except Exception as exc:  # a bug of the engine: end the batch, never hang it
            logger.exception("the batch's feeder failed")
            self._fail(RunComfyError(f"the batch failed: {type(exc).__name__}: {exc}"), exc)
        finally:
            self._fed.set()
            if self._wound_up:  # the last submit landed after the batch was ended
                await self._close_journal()
            self._end_if_done()

    def _fail(self, error: RunComfyError, cause: BaseException) -> None:
        """End the whole batch with `error`: next() raises it."""
        if self._fatal is None:
            error.__cause__ = cause
            self._fatal = error
            self._reading.cancel()
            self._send.close()  # wake the consumer

    async def _run_one(self, position: int, value: Any) -> None:
        """One input, from reading to its item. Whatever is raised on the way, the input
        gets exactly one item: the structural guarantee that a batch never waits on work
        that has died (here, in the tracker's callbacks and in the download)."""
        index, line = position, None
        if isinstance(value, Numbered):
            value, index, line = value.input, value.index, value.line
        job = Job(index, index, value, line)
        self._open.add(job)
        self.progress.pending += 1
        try:
            await self._submit(job)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            await self._broke(job, "sending it", exc)

    async def _broke(
        self, job: Job, doing: str, exc: BaseException, *, result: Result | None = None
    ) -> None:
        """An unexpected exception in `job`'s work: logged once, journaled (an input with no
        request is unknown if its submit may have left, else rejected), then its item."""
        error = self._broke_error(job, doing, exc)
        if error is None:
            return
        if job.request_id is None:
            try:
                if job.sent:
                    await self._journal.unknown(str(job.key), str(error))
                else:
                    await self._journal.rejected(str(job.key), str(error))
            except Exception:
                logger.exception("input %s: the journal could not record it", job.index)
        self._emit(job, result=result, error=error)

    def _broke_item(self, job: Job, doing: str, exc: BaseException) -> None:
        """_broke() of an input with a request (nothing to journal: it stays tracked)."""
        error = self._broke_error(job, doing, exc)
        if error is not None:
            self._emit(job, error=error)

    def _broke_error(self, job: Job, doing: str, exc: BaseException) -> RunComfyError | None:
        """The error of an input whose work raised `exc` unexpectedly (logged once); None
        when the input had its item already."""
        if job.settled:
            logger.error("input %s: failed after its item was made", job.index, exc_info=exc)
            return None
        logger.error("input %s: the SDK failed while %s", job.index, doing, exc_info=exc)
        what = f"{type(exc).__name__}: {exc}"
        rid = job.request_id
        error: RunComfyError
        if rid is None and job.sent:
            error = SubmissionUnknownError(
                f"input {job.index}: the SDK failed while {doing} ({what}) after its submit "
                "may have left; RunComfy may have created (and billed) a job: not resent",
                model_id=job.model_id or "",
                inputs=job.input,
            )
        elif rid is not None:
            error = RunComfyError(
                f"input {job.index}: request {rid}: the SDK failed while {doing} ({what}); "
                "the request is not resubmitted (a rerun with the journal re-attaches to it)"
            )
        else:
            error = RunComfyError(f"input {job.index}: the SDK failed while {doing} ({what})")
        error.__cause__ = exc
        return error

    async def _submit(self, job: Job) -> None:
        value = job.input
        try:
            model_id, body = _encode(value)
            job.model_id = model_id
            # Keys are taken in input order: tasks start in that order and get here before
            # their first await, so the k-th repeat of an input is occurrence k.
            if self._key is not None:
                job.key = self._key(value)
            elif self._journal.durable:
                job.key = self._keys.key(model_id, body)
        except RunComfyError as exc:
            self._emit(job, error=exc)
            return
        except Exception as exc:  # the caller's key function failed: that input's error
            self._emit(job, error=InvalidInputError(f"input {job.index}: key() raised {exc!r}"))
            return
        if self._download_to is not None:
            job.slug = slug(msgspec.json.decode(body))
        journal = self._journal
        if not await self._resume(job, journal, model_id, body):
            return
        try:  # schema and media checks: a refusal costs nothing, and a rerun checks again
            preflight = await self._batch_preflight()
            body = await self.client._check(model_id, body, self._validate, preflight)
        except anyio.get_cancelled_exc_class():  # the client closed before this was sent
            await journal.rejected(str(job.key), "not sent: the client was closed")
            self._emit(job, error=RunComfyError(f"input {job.index}: not sent, client closed"))
            raise
        except RunComfyError as exc:
            await journal.rejected(str(job.key), str(exc))
            self._emit(job, error=exc)
            return
        if self.closed:  # the batch ended while this was checked: nothing is sent now
            await journal.rejected(str(job.key), "not sent: the batch ended")
            self._emit(job, error=RunComfyError(f"input {job.index}: not sent, batch ended"))
            return
        job.sent = True
        try:
            # A 429 proves nothing was created: an input waits out rate limits until the
            # batch's deadline (none: for as long as it takes), never failing for them.
            until = math.inf if self._deadline is None else self._deadline
            request = await self.client._post(model_id, body, value, rate_limit_until=until)
        except anyio.get_cancelled_exc_class():  # the client closed with this submit out
            unknown = SubmissionUnknownError(
                f"input {job.index}: the client was closed while its submit was on the wire; "
                "RunComfy may have created (and billed) a job: not resent",
                model_id=model_id,
                inputs=value,
            )
            await journal.unknown(str(job.key), str(unknown))
            self._emit(job, error=unknown)
            raise
        except SubmissionUnknownError as exc:
            await journal.unknown(str(job.key), str(exc))
            self._emit(job, error=exc)
            return
        except RunComfyError as exc:  # refused before a job existed: a rerun sends it again
            await journal.rejected(str(job.key), str(exc))
            self._emit(job, error=exc)
            return
        job.request_id = request.request_id
        await journal.tracked(str(job.key), request.request_id)
        self._follow(job, request)

    async def _batch_preflight(self) -> Preflight | bool:
        if not self._preflight:
            return False
        async with self._checker_lock:
            if self._checker is None:
                self._checker = await self.client._preflighter()
            return self._checker

    async def _resume(self, job: Job, journal: BatchJournal, model_id: str, body: bytes) -> bool:
        """Settle `job` from the journal; True when it is to be submitted now (the journal
        marked it `sending` in the same transaction as it claimed it)."""
        key = str(job.key)
        try:
            row = await journal.claim(
                key,
                job.index,
                job.line,
                model_id,
                body,
                retry_failed=self._retry_failed,
                resubmit_unknown=self._resubmit_unknown,
            )
        except JournalMismatchError as exc:
            self._fatal = exc  # never mix two batches' records: stop the batch
            self._reading.cancel()
            job.settled = True
            self._open.discard(job)
            self._emitted += 1
            self._end_if_done()
            return False
        if row.duplicate:
            self._emit(job, error=InvalidInputError(f"input {job.index}: duplicate key {key!r}"))
            return False
        if row.send:
            return True
        if row.state.finished:
            await self._replay(job, row)
        elif row.state is Entry.TRACKED and row.request_id is not None:
            self._follow(job, Request(row.request_id, model_id, self.client))  # re-attach
        elif row.state in (Entry.SENDING, Entry.UNKNOWN):
            unknown = SubmissionUnknownError(
                f"input {key!r}: an earlier run sent it and could not learn whether RunComfy "
                "created a job; not resubmitted (pass resubmit_unknown=True to send it again)",
                model_id=model_id,
                inputs=job.input,
            )
            self._emit(job, error=unknown, resumed=True)
        else:
            raise RuntimeError(f"journal row {key!r} in state {row.state}: neither sent nor kept")
        return False

    async def _replay(self, job: Job, row: Row) -> None:
        """Emit the outcome an earlier run recorded."""
        job.request_id = rid = row.request_id or ""
        if row.state is Entry.SUCCEEDED:
            output = Output(row.outputs or {})
            result = Result(request_id=rid, state=State.SUCCEEDED, output=output, cost=row.cost)
            files = await recorded_files(self._sink, row.files)
            if self._download_to is not None and files is None:
                names = [Path(record["path"]).stem for record in row.files or ()]
                self._deliver(job, result, resumed=True, names=names or None)  # saved anew
            else:
                self._emit(job, result=result, resumed=True, files=files or ())
            return
        error: RunComfyError
        if row.state is Entry.CANCELLED:
            error = RequestCancelledError(f"request {rid} was cancelled", request_id=rid)
        else:
            error = RequestFailedError(
                f"request {rid} failed: {row.error!r}", request_id=rid, error=row.error
            )
        self._emit(job, error=error, resumed=True)

    def _follow(self, job: Job, request: Request) -> None:
        """Track an accepted request until it ends (or abandon it if the batch has)."""
        job.request_id = rid = request.request_id
        if self.closed:  # the batch ended while this submit was in flight
            if self._journal.durable:  # its cancel is journaled before the journal closes
                self._writing()
                self.client._spawn(lambda: self._let_go_late(rid, job))
            else:
                self.client._spawn(lambda: self._let_go_of(rid, None, job, False))
            return
        self._move(job, "submitted", None)
        tracker = self.client._tracker(request, deadline=None)
        tracker.deadline = self._deadline
        tracker.on_change = self._changed
        tracker.on_done = self._finished
        self._live[tracker] = job
        self.client._track_request(tracker)

    def _changed(self, tracker: Tracker, state: State) -> None:
        job = self._live.get(tracker)
        if job is not None:
            self._move(job, BUCKET.get(state), state)

    def _finished(self, tracker: Tracker) -> None:
        job = self._live.pop(tracker, None)
        if job is None:
            return  # abandoned by aclose()
        outcome = tracker.outcome
        if not self._journal.durable or not isinstance(outcome, Result | RequestFailedError):
            self._settle_now(job, tracker)  # nothing to write first
            return
        # The outcome is written before its item is made, in the background (a journal may
        # be a server); the journal stays open until it is.
        self._writing()
        try:
            spawned = self.client._spawn(lambda: self._write_then_settle(job, tracker))
        except RunComfyError:  # the client is closed
            spawned = False
        if not spawned:  # the item without the write: a rerun re-attaches to the request
            self._wrote()
            self._settle_now(job, tracker)

    async def _let_go_late(self, rid: str, job: Job) -> None:
        try:
            await self._let_go_of(rid, None, job, False)
        finally:
            self._wrote()
            if self._wound_up:
                await self._close_journal()

    def _writing(self) -> None:
        self._writes += 1
        if self._written.is_set():
            self._written = anyio.Event()

    def _wrote(self) -> None:
        self._writes -= 1
        if not self._writes:
            self._written.set()

    async def _write_then_settle(self, job: Job, tracker: Tracker) -> None:
        outcome = tracker.outcome
        try:
            if isinstance(outcome, Result):
                mismatch = _mismatch(outcome)
                if mismatch is not None:
                    await self._record(job, Entry.FAILED, outcome, error=str(mismatch))
                else:
                    await self._record(job, Entry.SUCCEEDED, outcome)
                await self._run_times.tick(self._journal)
            elif isinstance(outcome, RequestFailedError):
                cancelled = isinstance(outcome, RequestCancelledError)
                state = Entry.CANCELLED if cancelled else Entry.FAILED
                await self._record(job, state, tracker.result)
        except Exception as exc:  # e.g. an output the journal cannot encode
            self._broke_item(job, "recording its outcome", exc)
        else:
            self._settle_now(job, tracker)
        finally:
            self._wrote()
            if self._wound_up:
                await self._close_journal()

    def _settle_now(self, job: Job, tracker: Tracker) -> None:
        try:
            self._settle(job, tracker)
        except Exception as exc:
            self._broke_item(job, "recording its outcome", exc)

    def _settle(self, job: Job, tracker: Tracker) -> None:
        """Make the item of a request that ended (its outcome is in the journal already)."""
        outcome = tracker.outcome
        if outcome is EXPIRED:
            queued = tracker.state in (None, State.IN_QUEUE)
            if queued and self._cancel_on_exit:
                rid = tracker.request_id
                self.client._spawn(lambda: self._abandon(rid, State.IN_QUEUE, job, report=False))
            where = "was queued: cancelled" if queued and self._cancel_on_exit else "goes on"
            error: RunComfyError = WaitTimeoutError(
                f"request {tracker.request_id} did not finish within the batch timeout of "
                f"{self._timeout} s; it {where}",
                request_id=tracker.request_id,
                timeout=self._timeout or 0.0,
            )
            self._emit(job, error=error)
        elif isinstance(outcome, Result):
            mismatch = _mismatch(outcome)
            if mismatch is not None:
                self._emit(job, result=outcome, error=mismatch)
            else:
                self._deliver(job, outcome)
        elif isinstance(outcome, RunComfyError):
            self._emit(job, error=outcome)
        else:
            raise TypeError(f"a tracker ended with {outcome!r}")

    def _deliver(
        self, job: Job, result: Result, *, resumed: bool = False, names: list[str] | None = None
    ) -> None:
        """Emit a success, after downloading its outputs when the batch downloads."""
        if self._download_to is None:
            self._emit(job, result=result, resumed=resumed)
            return
        self.client._spawn(lambda: self._download(job, result, resumed, names))

    async def _download(
        self, job: Job, result: Result, resumed: bool, names: list[str] | None
    ) -> None:
        try:
            await self._save(job, result, resumed, names)
        except anyio.get_cancelled_exc_class():  # the client closed mid-download
            closed = DownloadError(
                f"the outputs of request {result.request_id}",
                "the client was closed before they were saved",
            )
            self._emit(job, result=result, error=closed, resumed=resumed)
            raise
        except Exception as exc:
            await self._broke(job, "saving its outputs", exc, result=result)

    async def _save(self, job: Job, result: Result, resumed: bool, names: list[str] | None) -> None:
        try:
            files = await download_result(
                await self.client._downloads(),
                result,
                self._sink,
                key=str(job.key),
                template=self._template,
                index=job.index,
                line=job.line,
                slug=job.slug,
                names=names,
            )
        except RunComfyError as exc:  # the request succeeded; its files did not arrive
            self._emit(job, result=result, error=exc, resumed=resumed)
            return
        except ValueError as exc:  # a template that names two outputs alike
            error = InvalidInputError(f"name_template: {exc}")
            self._emit(job, result=result, error=error, resumed=resumed)
            return
        # The names chosen now are the names from now on.
        await self._journal.files(str(job.key), file_records(files))
        self._emit(job, result=result, resumed=resumed, files=tuple(files))

    async def _record(
        self, job: Job, state: Entry, result: Result | None, *, error: str | None = None
    ) -> None:
        output = result.output.data if result is not None and result.output else None
        await self._journal.finished(
            str(job.key),
            state,
            outputs=output,
            error=error if error is not None else result.error if result is not None else None,
            cost=result.cost if result is not None else None,
        )

    def _emit(
        self,
        job: Job,
        *,
        result: Result | None = None,
        error: RunComfyError | None = None,
        resumed: bool = False,
        files: tuple[DownloadedFile, ...] = (),
        bucket: str | None = None,
    ) -> None:
        """Make the input's one Item (a second call is a bug elsewhere: logged, dropped)."""
        if job.settled:
            logger.debug("input %s already has its item; %r dropped", job.index, error)
            return
        job.settled = True
        self._open.discard(job)
        final: State | None
        if error is None:
            final, where = State.SUCCEEDED, "succeeded"
        elif isinstance(error, RequestCancelledError):
            final, where = State.CANCELLED, "cancelled"
        else:
            final, where = (State.FAILED if job.request_id else None), "failed"
        if bucket is None and self.closed and not job.sent:
            bucket = "pending"  # the batch ended before this was sent: it never was
        self._move(job, bucket or where, final)
        item = Item(
            job.index, job.key, job.input, job.request_id, result, error, resumed, files, job.line
        )
        self._emitted += 1
        if not self.closed and self._fatal is None:  # else nobody takes it
            self._send.send_nowait(item)
        self._end_if_done()

    def _move(self, job: Job, bucket: str | None, state: State | None) -> None:
        if bucket is not None and bucket != job.bucket:
            self.progress.move(job.bucket, bucket)
            job.bucket = bucket
        if self._on_change is None or job.told == (job.request_id, state):
            return  # one Change per change: a success seen on /status is not told twice
        job.told = (job.request_id, state)
        try:
            self._on_change(Change(job.index, job.key, job.request_id, state))
        except Exception as exc:  # the caller's callback failed: end the batch with its error
            if self._fatal is None:
                self._fatal = exc
                self._send.close()  # wake the consumer: next() raises it

    def _end_if_done(self) -> None:
        if self._fed.is_set() and self._emitted == self._reads:
            self._send.close()

    async def _abandon(
        self,
        request_id: str,
        state: State | None,
        job: Job,
        *,
        report: bool = True,
        why: str = "the batch ended",
    ) -> bool:
        """Cancel a request this batch leaves behind if it is queued (True); else list it."""
        if state in (None, State.IN_QUEUE) and self._cancel_on_exit:
            outcome = await self._cancel(request_id)
            cancelled = outcome is not None and outcome.cancelled
            if outcome is not None and outcome.requested:
                landed = await self._cancel_landed(request_id)
                if landed is False:  # it ran after all: the journal still tracks it
                    return False
                cancelled = landed is True
            if cancelled:
                # It never ran: a rerun sends it again.
                await self._journal.rejected(str(job.key), f"cancelled when {why}")
                return True
        if report:
            self.unfinished.append(request_id)
        return False

    async def _cancel(self, request_id: str) -> Any:
        return await cancel_quietly(self.client, request_id, self.client._track.cancel_grace)

    async def _cancel_landed(self, request_id: str) -> bool | None:
        """Track a request whose cancel RunComfy only took (`cancellation_requested`: it
        may still run) until it ends, within the cancel grace: True if it was cancelled,
        False if it ran to an end, None if it still goes on (then it stays unfinished)."""
        client = self.client
        tracker = Tracker(request_id, deadline=client._clock() + client._track.cancel_grace)
        with anyio.CancelScope(shield=True):
            client._track_request(tracker)
            outcome = await tracker.wait()
        if isinstance(outcome, RequestCancelledError):
            return True
        if isinstance(outcome, Result | RequestFailedError):
            return False
        return None


def _mismatch(outcome: Result) -> ModelMismatchError | None:
    """The error of a result of another model than the one submitted to, if it is one.

    Another model's output must not pass for this input's: the item is an error (its result
    attached), and the journal says failed, so a rerun neither takes it as a success nor
    pays for the input again unasked.
    """
    if not outcome.model_mismatch:
        return None
    return ModelMismatchError(
        f"request {outcome.request_id} was submitted to {outcome.submitted_model_id} "
        f"but RunComfy's result is of {outcome.model_id}: not taken as a success",
        request_id=outcome.request_id,
        model_id=str(outcome.model_id),
        submitted_model_id=str(outcome.submitted_model_id),
        result=outcome,
    )


def _encode(value: Any) -> tuple[str, bytes]:
    if isinstance(value, ModelInput):
        return encode_inputs(value, None)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return encode_inputs(value[0], value[1])
    raise InvalidInputError(
        f"a batch input must be a typed model input or a (model_id, inputs) pair, got {value!r}"
    )


async def _each(
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput], slots: anyio.Semaphore
) -> AsyncIterator[Any]:
    """Each input, read lazily, only once a slot is free for it."""
    if isinstance(inputs, AsyncIterable):
        iterator = aiter(inputs)
        while True:
            await slots.acquire()
            try:
                value = await anext(iterator)
            except StopAsyncIteration:
                slots.release()
                return
            yield value
    else:
        items = iter(inputs)
        while True:
            await slots.acquire()
            try:
                value = next(items)
            except StopIteration:
                slots.release()
                return
            yield value
