"""A batch's inputs from reading to acceptance: keys, the journal's claim, checks, the submit."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ._batch_core import Core
from ._batch_track import Tracking
from ._download import slug
from ._errors import (
    InvalidInputError,
    JournalMismatchError,
    RequestCancelledError,
    RequestFailedError,
    RunComfyError,
    SubmissionUnknownError,
)
from ._inputs import ModelInput, encode_inputs
from ._items import Job, Numbered
from ._preflight import Preflight
from ._rows import Entry, Keys, Row
from ._runtime import Submitted
from ._sink import recorded_files
from ._wire import Output, Result, State

__all__ = ["Submits"]


class Submits:
    """Takes each input of a batch to an accepted request (handed to Tracking), or to its
    item: refused, a duplicate, replayed from the journal, or of unknown outcome."""

    def __init__(self, core: Core, tracking: Tracking) -> None:
        self.core = core
        self.tracking = tracking
        self._keys = Keys()  # default journal keys: the k-th repeat of an input is its own
        self._preflight = (
            core.runtime.preflight if core.options.preflight is None else core.options.preflight
        )
        self._checker: Preflight | None = None  # the batch's own: each URL measured once
        self._checker_lock = anyio.Lock()

    async def run_one(self, position: int, value: Any) -> None:
        """One input, from reading to its item. Whatever is raised on the way, the input
        gets exactly one item: the structural guarantee that a batch never waits on work
        that has died (here, in the tracker's callbacks and in the download)."""
        index, line = position, None
        if isinstance(value, Numbered):
            value, index, line = value.input, value.index, value.line
        job = Job(index, index, value, line)
        self.core.open.add(job)
        self.core.progress.pending += 1
        try:
            await self._submit(job)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            await self.core.broke(job, "sending it", exc)
        finally:
            self.core.sending.release()  # taken by the feeder before it started this

    async def _submit(self, job: Job) -> None:
        core, value = self.core, job.input
        options, journal = core.options, core.journal
        try:
            model_id, body = _encode(value)
            job.model_id = model_id
            # Keys are taken in input order: tasks start in that order and get here before
            # their first await, so the k-th repeat of an input is occurrence k.
            if options.key is not None:
                job.key = options.key(value)
            elif journal.durable:
                job.key = self._keys.key(model_id, body)
        except RunComfyError as exc:
            core.emit(job, error=exc)
            return
        except Exception as exc:  # the caller's key function failed: that input's error
            core.emit(job, error=InvalidInputError(f"input {job.index}: key() raised {exc!r}"))
            return
        if options.download_to is not None:
            job.slug = slug(msgspec.json.decode(body))
        if not await self._resume(job, model_id, body):
            return
        key = str(job.key)
        try:  # schema and media checks: a refusal costs nothing, and a rerun checks again
            checker = await self._checker_of()
            body = await core.runtime.check(model_id, body, options.validate, checker)
        except anyio.get_cancelled_exc_class():  # the client closed before this was sent
            await journal.rejected(key, "not sent: the client was closed")
            core.emit(job, error=RunComfyError(f"input {job.index}: not sent, client closed"))
            raise
        except RunComfyError as exc:
            await journal.rejected(key, str(exc))
            core.emit(job, error=exc)
            return
        if core.closed:  # the batch ended while this was checked: nothing is sent now
            await journal.rejected(key, "not sent: the batch ended")
            core.emit(job, error=RunComfyError(f"input {job.index}: not sent, batch ended"))
            return
        job.sent = True
        try:
            # A 429 proves nothing was created: an input waits out rate limits until the
            # batch's deadline (none: for as long as it takes), never failing for them.
            until = math.inf if core.deadline is None else core.deadline
            request = await core.runtime.post(model_id, body, value, rate_limit_until=until)
        except anyio.get_cancelled_exc_class():  # the client closed with this submit out
            unknown = SubmissionUnknownError(
                f"input {job.index}: the client was closed while its submit was on the wire; "
                "RunComfy may have created (and billed) a job: not resent",
                model_id=model_id,
                inputs=value,
            )
            await journal.unknown(key, str(unknown))
            core.emit(job, error=unknown)
            raise
        except SubmissionUnknownError as exc:
            await journal.unknown(key, str(exc))
            core.emit(job, error=exc)
            return
        except RunComfyError as exc:  # refused before a job existed: a rerun sends it again
            await journal.rejected(key, str(exc))
            core.emit(job, error=exc)
            return
        job.request_id = request.request_id
        await journal.tracked(key, request.request_id)
        self.tracking.follow(job, request)

    async def _checker_of(self) -> Preflight | bool:
        if not self._preflight:
            return False
        async with self._checker_lock:
            if self._checker is None:
                self._checker = await self.core.runtime.preflighter()
            return self._checker

    async def _resume(self, job: Job, model_id: str, body: bytes) -> bool:
        """Settle `job` from the journal; True when it is to be submitted now (the journal
        marked it `sending` in the same transaction as it claimed it)."""
        core, key = self.core, str(job.key)
        try:
            row = await core.journal.claim(
                key,
                job.index,
                job.line,
                model_id,
                body,
                retry_failed=core.options.retry_failed,
                resubmit_unknown=core.options.resubmit_unknown,
            )
        except JournalMismatchError as exc:
            core.fatal = exc  # never mix two batches' records: stop the batch
            core.reading.cancel()
            job.settled = True
            core.open.discard(job)
            core.emitted += 1
            core.end_if_done()
            return False
        if row.duplicate:
            core.emit(job, error=InvalidInputError(f"input {job.index}: duplicate key {key!r}"))
            return False
        if row.send:
            return True
        if row.state.finished:
            await self._replay(job, row)
        elif row.state is Entry.TRACKED and row.request_id is not None:
            self.tracking.follow(job, Submitted(row.request_id, model_id, None))  # re-attach
        elif row.state in (Entry.SENDING, Entry.UNKNOWN):
            unknown = SubmissionUnknownError(
                f"input {key!r}: an earlier run sent it and could not learn whether RunComfy "
                "created a job; not resubmitted (pass resubmit_unknown=True to send it again)",
                model_id=model_id,
                inputs=job.input,
            )
            core.emit(job, error=unknown, resumed=True)
        else:
            raise RuntimeError(f"journal row {key!r} in state {row.state}: neither sent nor kept")
        return False

    async def _replay(self, job: Job, row: Row) -> None:
        """Emit the outcome an earlier run recorded."""
        core = self.core
        job.request_id = rid = row.request_id or ""
        if row.state is Entry.SUCCEEDED:
            output = Output(row.outputs or {})
            result = Result(request_id=rid, state=State.SUCCEEDED, output=output, cost=row.cost)
            files = await recorded_files(core.sink, row.files)
            if core.options.download_to is not None and files is None:
                names = [Path(record["path"]).stem for record in row.files or ()]
                self.tracking.deliver(job, result, resumed=True, names=names or None)  # anew
            else:
                core.emit(job, result=result, resumed=True, files=files or ())
            return
        error: RunComfyError
        if row.state is Entry.CANCELLED:
            error = RequestCancelledError(f"request {rid} was cancelled", request_id=rid)
        else:
            error = RequestFailedError(
                f"request {rid} failed: {row.error!r}", request_id=rid, error=row.error
            )
        core.emit(job, error=error, resumed=True)


def _encode(value: Any) -> tuple[str, bytes]:
    if isinstance(value, ModelInput):
        return encode_inputs(value, None)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return encode_inputs(value[0], value[1])
    raise InvalidInputError(
        f"a batch input must be a typed model input or a (model_id, inputs) pair, got {value!r}"
    )
