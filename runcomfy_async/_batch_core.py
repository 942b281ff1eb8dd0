"""A batch's shared state: its phase, its journal and sink, its counts, and each input's item."""

from __future__ import annotations

import enum
import logging
import math
import os
from collections.abc import AsyncIterable, Iterable

import anyio

from ._errors import RunComfyError, SubmissionUnknownError
from ._items import BatchInput, Change, Item, Job, MapOptions, Outcome, Progress
from ._journals import BatchJournal, NullJournal
from ._runtime import Runtime
from ._runtimes import JournalRunTimes
from ._sink import DownloadedFile, Sink, open_sink
from ._telemetry import about
from ._track import Tracker
from ._wire import Result, State

__all__ = ["Core", "Phase"]

logger = logging.getLogger("runcomfy_async")

#: The progress bucket of each outcome.
_BUCKET = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.CANCELLED: "cancelled",
    Outcome.FAILED: "failed",
    Outcome.UNKNOWN: "failed",
}


class Phase(enum.Enum):
    """Where a batch stands; it only moves forward (NEW, RUNNING, then CUT or CLOSED...)."""

    NEW = "new"  # made by map(): start() opens the journal and starts reading
    RUNNING = "running"  # reading inputs, submitting, tracking; items go to the consumer
    CUT = "cut"  # the client is closing under it: the items read still come, then an error
    CLOSED = "closed"  # ended (aclose, or every item taken): nobody takes items any more
    WOUND_UP = "wound_up"  # closed and its requests let go of: the journal may close


class Core:
    """What the parts of a batch (its lifecycle, its submits, its tracking) share."""

    def __init__(
        self,
        runtime: Runtime,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: MapOptions,
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.inputs = inputs
        self.phase = Phase.NEW
        self.progress = Progress()
        self.unfinished: list[str] = []  # request_ids left running when the batch ended early
        self.slots = anyio.Semaphore(options.max_in_flight)
        # Inputs between reading and acceptance (checks, the submit): more than the pool
        # can send at once only wait in aiohttp's queue, each holding its request's state
        # (10,000 at once: 175 MiB against 62).
        self.sending = anyio.Semaphore(max(32, runtime.transport.connections))
        self.deadline: float | None = None  # runtime clock time the batch's timeout ends
        self.journal: BatchJournal = NullJournal()  # the real one from start() to the end
        self.run_times = JournalRunTimes(runtime.scheduler)  # kept in the journal too
        download_to = options.download_to
        # Where outputs go; without download_to, only to check files an earlier run saved.
        self.sink: Sink = open_sink(os.curdir if download_to is None else download_to)
        self.live: dict[Tracker, Job] = {}  # requests being tracked, and their inputs
        self.open: set[Job] = set()  # inputs read whose item is not made yet
        self.fatal: Exception | None = None  # ends the batch at once: next() raises it
        self.reading = anyio.CancelScope()  # the reading of inputs: cancelled to stop it
        self.fed = anyio.Event()  # every input read has been sent (or settled)
        self.reads = self.emitted = 0
        self.send, self.receive = anyio.create_memory_object_stream[Item](math.inf)
        self._writes = 0  # outcomes being written by background tasks: the journal stays
        self._written = anyio.Event()  # set whenever _writes drops to 0

    @property
    def closed(self) -> bool:
        """Nobody takes items any more."""
        return self.phase in (Phase.CLOSED, Phase.WOUND_UP)

    # ------------------------------------------------------------------ items

    def emit(
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
            logger.debug(
                "input %s already has its item; %r dropped", job.index, error, extra=_about(job)
            )
            return
        job.settled = True
        self.open.discard(job)
        outcome = Outcome.of(error)
        final: State | None
        if outcome is Outcome.SUCCEEDED:
            final = State.SUCCEEDED
        elif outcome is Outcome.CANCELLED:
            final = State.CANCELLED
        else:
            final = State.FAILED if job.request_id else None
        if bucket is None and self.closed and not job.sent:
            bucket = "pending"  # the batch ended before this was sent: it never was
        self.move(job, bucket or _BUCKET[outcome], final)
        item = Item(
            job.index, job.key, job.input, job.request_id, result, error, resumed, files, job.line
        )
        self.emitted += 1
        if not self.closed and self.fatal is None:  # else nobody takes it
            self.send.send_nowait(item)
        self.end_if_done()

    def move(self, job: Job, bucket: str | None, state: State | None) -> None:
        """Count `job` in `bucket` now, and tell on_change of its new state."""
        if bucket is not None and bucket != job.bucket:
            self.progress.move(job.bucket, bucket)
            job.bucket = bucket
        on_change = self.options.on_change
        if on_change is None or job.told == (job.request_id, state):
            return  # one Change per change: a success seen on /status is not told twice
        job.told = (job.request_id, state)
        try:
            on_change(Change(job.index, job.key, job.request_id, state))
        except Exception as exc:  # the caller's callback failed: end the batch with its error
            if self.fatal is None:
                self.fatal = exc
                self.send.close()  # wake the consumer: next() raises it

    def end_if_done(self) -> None:
        if self.fed.is_set() and self.emitted == self.reads:
            self.send.close()

    def fail(self, error: Exception, cause: BaseException | None = None) -> None:
        """End the whole batch with `error` at once: reading stops, next() raises it."""
        if self.fatal is None:
            if cause is not None:
                error.__cause__ = cause
            self.fatal = error
            self.reading.cancel()
            self.send.close()  # wake the consumer

    # ------------------------------------------------------------------ failures

    async def broke(
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
                    await self.journal.unknown(str(job.key), str(error))
                else:
                    await self.journal.rejected(str(job.key), str(error))
            except Exception:
                logger.exception(
                    "input %s: the journal could not record it", job.index, extra=_about(job)
                )
        self.emit(job, result=result, error=error)

    def broke_tracked(self, job: Job, doing: str, exc: BaseException) -> None:
        """broke() of an input with a request (nothing to journal: it stays tracked)."""
        error = self._broke_error(job, doing, exc)
        if error is not None:
            self.emit(job, error=error)

    def _broke_error(self, job: Job, doing: str, exc: BaseException) -> RunComfyError | None:
        if job.settled:
            logger.error(
                "input %s: failed after its item was made",
                job.index,
                exc_info=exc,
                extra=_about(job),
            )
            return None
        logger.error(
            "input %s: the SDK failed while %s", job.index, doing, exc_info=exc, extra=_about(job)
        )
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

    # ------------------------------------------------------------------ the journal

    def writing(self) -> None:
        """An outcome is being written in the background: the journal stays open."""
        self._writes += 1
        if self._written.is_set():
            self._written = anyio.Event()

    def written(self) -> None:
        self._writes -= 1
        if not self._writes:
            self._written.set()

    async def quiet(self) -> None:
        """Wait until no outcome is being written to the journal."""
        while self._writes:
            await self._written.wait()

    async def close_journal(self) -> None:
        """Close the journal once no submit is in flight (a request_id that arrives late
        must be written) and no outcome is being written; later writes go nowhere."""
        if self.fed.is_set() and not self._writes:
            journal, self.journal = self.journal, NullJournal()
            await self.run_times.save(journal)
            await journal.close()


def _about(job: Job) -> dict[str, str | None]:
    """The structured `extra` of a log record about an input (its request, once it has one)."""
    return about(job.request_id, job.model_id)
