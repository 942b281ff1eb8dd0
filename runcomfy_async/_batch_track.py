"""A batch's requests from acceptance to their items: tracking, journal, outputs, letting go."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ._batch_core import Core, Phase
from ._download import download_result
from ._errors import (
    DownloadError,
    InvalidInputError,
    ModelMismatchError,
    RequestCancelledError,
    RequestFailedError,
    RunComfyError,
    WaitTimeoutError,
)
from ._items import BUCKET, Job
from ._rows import Entry
from ._runtime import Submitted
from ._service import Work
from ._sink import file_records
from ._track import EXPIRED, Tracker, cancel_quietly
from ._wire import Result, State

__all__ = ["Tracking"]

logger = logging.getLogger("runcomfy_async")


class Tracking:
    """Follows each accepted request of a batch to its end, writes the end to the journal,
    saves the outputs (download_to), then makes the input's item; lets go of the requests
    still running when the batch ends (cancelling the queued ones: cancel_on_exit)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def follow(self, job: Job, request: Submitted) -> None:
        """Track an accepted request until it ends (or let go of it if the batch has)."""
        core = self.core
        job.request_id = rid = request.request_id
        if core.closed:  # the batch ended while this submit was in flight
            # Its cancel is journaled before the journal closes, and the batch's end (and
            # the client's close) waits for it.
            if not self._write_later(lambda: self._release_late(rid, job)):
                core.unfinished.append(rid)  # the client closed: nobody can cancel it now
                logger.warning("request %s landed after the client closed; it goes on", rid)
            return
        core.move(job, "submitted", None)
        tracker = core.runtime.tracker(request, deadline=None)
        tracker.deadline = core.deadline
        tracker.on_change = self._changed
        tracker.on_done = self._finished
        core.live[tracker] = job
        core.runtime.track(tracker)

    def _changed(self, tracker: Tracker, state: State) -> None:
        job = self.core.live.get(tracker)
        if job is not None:
            self.core.move(job, BUCKET.get(state), state)

    def _finished(self, tracker: Tracker) -> None:
        core = self.core
        job = core.live.pop(tracker, None)
        if job is None:
            return  # let go of when the batch ended
        outcome = tracker.outcome
        if not core.journal.durable or not isinstance(outcome, Result | RequestFailedError):
            self._settle_now(job, tracker)  # nothing to write first
            return
        # The outcome is written before its item is made, in the background (a journal may
        # be a server); the journal stays open until it is.
        if not self._write_later(lambda: self._write_then_settle(job, tracker)):
            self._settle_now(job, tracker)  # without the write: a rerun re-attaches to it

    def _write_later(self, work: Work) -> bool:
        """Run `work` (an outcome's write, a late submit's cancel and its record) in the
        background: the journal stays open, and the batch's end and the client's close
        wait for it. False if the client is closed (then it does not run)."""
        self.core.writing()
        try:
            spawned = self.core.runtime.spawn(work, finish=True)
        except RunComfyError:  # the client is closed
            spawned = False
        if not spawned:
            self.core.written()
        return spawned

    async def _write_then_settle(self, job: Job, tracker: Tracker) -> None:
        outcome = tracker.outcome
        try:
            if isinstance(outcome, Result):
                mismatch = _mismatch(outcome)
                if mismatch is not None:
                    await self._record(job, Entry.FAILED, outcome, error=str(mismatch))
                else:
                    await self._record(job, Entry.SUCCEEDED, outcome)
                await self.core.run_times.tick(self.core.journal)
            elif isinstance(outcome, RequestFailedError):
                cancelled = isinstance(outcome, RequestCancelledError)
                state = Entry.CANCELLED if cancelled else Entry.FAILED
                await self._record(job, state, tracker.result)
        except Exception as exc:  # e.g. an output the journal cannot encode
            self.core.broke_tracked(job, "recording its outcome", exc)
        else:
            self._settle_now(job, tracker)
        finally:
            self.core.written()
            if self.core.phase is Phase.WOUND_UP:
                await self.core.close_journal()

    async def _release_late(self, rid: str, job: Job) -> None:
        try:
            await self.release(rid, None, job, tell=False)
        finally:
            self.core.written()
            if self.core.phase is Phase.WOUND_UP:
                await self.core.close_journal()

    def _settle_now(self, job: Job, tracker: Tracker) -> None:
        try:
            self._settle(job, tracker)
        except Exception as exc:
            self.core.broke_tracked(job, "recording its outcome", exc)

    def _settle(self, job: Job, tracker: Tracker) -> None:
        """Make the item of a request that ended (its outcome is in the journal already)."""
        core, outcome = self.core, tracker.outcome
        timeout = core.options.timeout
        if outcome is EXPIRED:
            queued = tracker.state in (None, State.IN_QUEUE)
            cancel = queued and core.options.cancel_on_exit
            if cancel:
                rid = tracker.request_id
                core.runtime.spawn(
                    lambda: self.abandon(rid, State.IN_QUEUE, job, report=False), finish=True
                )
            where = "was queued: cancelled" if cancel else "goes on"
            error: RunComfyError = WaitTimeoutError(
                f"request {tracker.request_id} did not finish within the batch timeout of "
                f"{timeout} s; it {where}",
                request_id=tracker.request_id,
                timeout=timeout or 0.0,
            )
            core.emit(job, error=error)
        elif isinstance(outcome, Result):
            mismatch = _mismatch(outcome)
            if mismatch is not None:
                core.emit(job, result=outcome, error=mismatch)
            else:
                self.deliver(job, outcome)
        elif isinstance(outcome, RunComfyError):
            core.emit(job, error=outcome)
        else:
            raise TypeError(f"a tracker ended with {outcome!r}")

    async def _record(
        self, job: Job, state: Entry, result: Result | None, *, error: str | None = None
    ) -> None:
        output = result.output.data if result is not None and result.output else None
        await self.core.journal.finished(
            str(job.key),
            state,
            outputs=output,
            error=error if error is not None else result.error if result is not None else None,
            cost=result.cost if result is not None else None,
        )

    # ------------------------------------------------------------------ outputs

    def deliver(
        self, job: Job, result: Result, *, resumed: bool = False, names: list[str] | None = None
    ) -> None:
        """Emit a success, after saving its outputs when the batch downloads."""
        if self.core.options.download_to is None:
            self.core.emit(job, result=result, resumed=resumed)
            return
        self.core.runtime.spawn(lambda: self._download(job, result, resumed, names))

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
            self.core.emit(job, result=result, error=closed, resumed=resumed)
            raise
        except Exception as exc:
            await self.core.broke(job, "saving its outputs", exc, result=result)

    async def _save(self, job: Job, result: Result, resumed: bool, names: list[str] | None) -> None:
        core = self.core
        try:
            files = await download_result(
                await core.runtime.downloads(),
                result,
                core.sink,
                key=str(job.key),
                template=core.options.name_template,
                index=job.index,
                line=job.line,
                slug=job.slug,
                names=names,
            )
        except RunComfyError as exc:  # the request succeeded; its files did not arrive
            core.emit(job, result=result, error=exc, resumed=resumed)
            return
        except ValueError as exc:  # a template that names two outputs alike
            error = InvalidInputError(f"name_template: {exc}")
            core.emit(job, result=result, error=error, resumed=resumed)
            return
        # The names chosen now are the names from now on.
        await core.journal.files(str(job.key), file_records(files))
        core.emit(job, result=result, resumed=resumed, files=tuple(files))

    # ------------------------------------------------------------------ letting go

    async def release_all(self, *, tell: bool) -> None:
        """Stop tracking every live request: cancel the queued ones (`cancel_on_exit`), list
        the others in `unfinished`; with `tell` (the consumer still reads), each gets an item."""
        leftover = list(self.core.live.items())
        self.core.live.clear()
        async with anyio.create_task_group() as group:
            for tracker, job in leftover:
                self.core.runtime.forget(tracker)
                group.start_soon(self._release, tracker.request_id, tracker.state, job, tell)

    async def _release(self, rid: str, state: State | None, job: Job, tell: bool) -> None:
        await self.release(rid, state, job, tell=tell)

    async def release(self, rid: str, state: State | None, job: Job, *, tell: bool) -> None:
        """Cancel or leave one request as the batch ends: its item (taken only if the
        consumer still reads) and its count, cancelled or unfinished (it goes on, billed)."""
        why = "the client closed" if tell else "the batch ended"
        try:
            cancelled = await self.abandon(rid, state, job, why=why)
        except Exception as exc:  # e.g. the journal could not record the cancel
            await self.core.broke(job, "letting it go", exc)
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
        self.core.emit(job, error=error, bucket="cancelled" if cancelled else "unfinished")

    async def abandon(
        self,
        request_id: str,
        state: State | None,
        job: Job,
        *,
        report: bool = True,
        why: str = "the batch ended",
    ) -> bool:
        """Cancel a request this batch leaves behind if it is queued (True); else list it."""
        core = self.core
        if state in (None, State.IN_QUEUE) and core.options.cancel_on_exit:
            outcome = await self._cancel(request_id)
            cancelled = outcome is not None and outcome.cancelled
            if outcome is not None and outcome.requested:
                landed = await self._cancel_landed(request_id)
                if landed is False:  # it ran after all: the journal still tracks it
                    return False
                cancelled = landed is True
            if cancelled:
                # It never ran: a rerun sends it again.
                await core.journal.rejected(str(job.key), f"cancelled when {why}")
                return True
        if report:
            core.unfinished.append(request_id)
        return False

    async def _cancel(self, request_id: str) -> Any:
        runtime = self.core.runtime
        return await cancel_quietly(runtime, request_id, runtime.settings.cancel_grace)

    async def _cancel_landed(self, request_id: str) -> bool | None:
        """Track a request whose cancel RunComfy only took (`cancellation_requested`: it
        may still run) until it ends, within the cancel grace: True if it was cancelled,
        False if it ran to an end, None if it still goes on (then it stays unfinished)."""
        runtime = self.core.runtime
        tracker = Tracker(request_id, deadline=runtime.clock() + runtime.settings.cancel_grace)
        with anyio.CancelScope(shield=True):
            runtime.track(tracker)
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
