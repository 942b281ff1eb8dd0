"""The runtime a client runs on: calls, checks, polling, background work, downloads, time."""

from __future__ import annotations

import contextlib
import random
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import anyio
import msgspec

from . import _wire
from ._catalog import ModelListBody, is_unknown_model, iter_models, unknown_model_error
from ._checks import InputChecks
from ._download import Downloader
from ._errors import (
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ResultNotReadyError,
    RunComfyError,
)
from ._files import FileInputs, has_refs
from ._inputs import check_model_id
from ._policy import PollPolicy
from ._poll import Scheduler
from ._preflight import Preflight
from ._request import Request
from ._retry import CallKind, Clock, Sleep
from ._runtimes import RunTimesFile
from ._service import Service, Work
from ._telemetry import Telemetry
from ._track import Tracker, TrackSettings, of_model
from ._wire import CancelOutcome, ModelInfo, Result, Status

if TYPE_CHECKING:
    from ._transport import Transport

__all__ = ["Batches", "Runtime", "Submitted"]

SUGGEST_WITHIN = 10.0  # seconds the catalog listing for "did you mean …?" may take
_RECENT_MAX = 100_000  # request_ids remembered for their 404 grace and submit time

_SUBMIT = msgspec.json.Decoder(_wire.SubmitBody)
_STATUS = msgspec.json.Decoder(_wire.StatusBody)
_RESULT = msgspec.json.Decoder(_wire.ResultBody)
_CANCEL = msgspec.json.Decoder(_wire.CancelBody)
_MODEL = msgspec.json.Decoder(_wire.ModelBody)
_MODELS = msgspec.json.Decoder(ModelListBody)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submit RunComfy accepted: its request_id, model, and the runtime clock time."""

    request_id: str
    model_id: str
    submitted_at: float | None  # None: re-attached to a request of an earlier run


class Batches(Protocol):
    """A running batch, as the runtime's closing sees it."""

    async def interrupt(self) -> None: ...


class Runtime:
    """The one object a client's engines lean on (the batch, as_completed, watch, wait).

    It owns the transport, the input checks, the poller pool and the background service,
    the table of recent submits, the local file inputs, the download session and pre-flight,
    the telemetry hooks, the clock, and the grace settings (`settings`, seconds). The Client
    is the public facade over it.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        poll: PollPolicy,
        settings: TrackSettings,
        workers: int,
        validate: bool,
        preflight: bool,
        allow_loopback: bool,
        files: FileInputs,
        telemetry: Telemetry,
        run_times: RunTimesFile | None,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.clock = clock
        self.validate = validate  # the client's defaults for submit checks
        self.preflight = preflight
        self.allow_loopback = allow_loopback  # downloads and pre-flight may reach loopback
        self.files = files
        self.telemetry = telemetry
        self.run_times = run_times  # where run times learnt are kept between processes
        self.checks = InputChecks(self.model_info, clock, allow_loopback=allow_loopback)
        self.batches: weakref.WeakSet[Batches] = weakref.WeakSet()  # running map()s
        self._recent: dict[str, float] = {}  # request_id -> clock time it was submitted
        self._scheduler = Scheduler(
            self,
            policy=poll,
            settings=settings,
            workers=workers,
            clock=clock,
            sleep=sleep,
            rng=rng,
            submitting=lambda: self.transport.submits > 0,
        )
        self._service = Service(self._scheduler.run, name="runcomfy-async-service")
        self._downloader: Downloader | None = None
        self._download_lock = anyio.Lock()

    # ------------------------------------------------------------------ life

    @property
    def scheduler(self) -> Scheduler:
        """The poller pool (what a batch's journal seeds and saves run times through)."""
        return self._scheduler

    async def open(self) -> None:
        await self.transport.open()
        self._service.open()
        if self.run_times is not None:
            self._scheduler.seed(self.run_times.load())

    async def close(self) -> None:
        """Interrupt the running batches (within the cancel grace), let the background work
        that must end end (cancels, batches closing: `spawn(finish=True)`), stop the
        background service, close the download session, then the transport."""
        try:
            with anyio.CancelScope(shield=True):  # bounded by the cancel grace
                async with anyio.create_task_group() as group:
                    for batch in list(self.batches):
                        group.start_soon(batch.interrupt)
            # A batch's end waits for its late submits (one grace), then cancels what is
            # queued, each cancel within a grace and its landing within another.
            await self._service.close(linger=3 * self.settings.cancel_grace + 1.0)
            if self.run_times is not None:
                self.run_times.save(self._scheduler.learnt())
            downloader, self._downloader = self._downloader, None
            if downloader is not None:
                await downloader.__aexit__(None, None, None)
        finally:
            await self.transport.close()
            self.telemetry.close()

    def spawn(self, work: Work, *, finish: bool = False) -> bool:
        """Run `work` in the background service, which close() ends and awaits; False
        when it was dropped (closing). With `finish` (it lets go of billed requests),
        close() lets it end first, within a bound."""
        self.transport.check_open()
        return self._service.spawn(work, finish=finish)

    # ------------------------------------------------------------------ submits

    async def check(
        self, model_id: str, body: bytes, validate: bool | None, preflight: bool | Preflight | None
    ) -> bytes:
        """The checks before a submit; `preflight` may be a batch's own (its cache). The
        body to send: local files (references in `body`) checked and inlined or uploaded."""
        if has_refs(body):
            validator = await self.checks.validator(model_id)
            media = validator.media if validator is not None else ()
            body = await self.files.resolve(model_id, body, media)
        validate = self.validate if validate is None else validate
        preflight = self.preflight if preflight is None else preflight
        if preflight is True:  # one of its own: nothing measured is kept across submits
            preflight = await self.preflighter()
        checker = preflight if isinstance(preflight, Preflight) else None
        await self.checks.check(model_id, body, validate=validate, preflight=checker)
        return body

    async def post(
        self,
        model_id: str,
        body: bytes,
        original: object,
        *,
        rate_limit_until: float | None = None,
    ) -> Submitted:
        """Send one checked submit; `original` is what SubmissionUnknownError carries.
        429s are waited out until `rate_limit_until` (runtime clock; default: the retry
        policy's `rate_limit_patience` from now)."""
        with self.telemetry.submit(model_id) as traced:
            answer = await self.transport.call(
                CallKind.SUBMIT,
                "POST",
                f"/v1/models/{model_id}",
                _SUBMIT,
                body=body,
                submit_of=(model_id, original),
                rate_limit_until=rate_limit_until,
            )
            traced.submitted(answer.request_id)
        now = self.clock()
        horizon = now - self.settings.not_found_grace
        recent = self._recent  # in submit order: forget from the oldest end, O(1) each
        while recent and (len(recent) > _RECENT_MAX or next(iter(recent.values())) < horizon):
            del recent[next(iter(recent))]
        recent[answer.request_id] = now
        return Submitted(answer.request_id, model_id, now)

    # ------------------------------------------------------------------ calls about a request

    async def status(self, request_id: str) -> Status:
        with about(request_id):
            path = f"/v1/requests/{quote(request_id, safe='')}/status"
            body = await self.transport.call(CallKind.STATUS, "GET", path, _STATUS)
        status = _wire.status_from(body, request_id)
        self.telemetry.observed(request_id, status.state)
        return status

    async def result(
        self, request_id: str, *, include_cost: bool = True, model_id: str | None = None
    ) -> Result:
        """The request's Result; stamped with `model_id` (the model it was submitted to)."""
        result = await self.try_result(request_id, include_cost=include_cost, model_id=model_id)
        if result is None:
            # RunComfy's 400005: not ready. Report the state /status knows instead.
            status = await self.status(request_id)
            return Result(request_id=request_id, state=status.state)
        return result

    async def try_result(
        self, request_id: str, *, include_cost: bool = True, model_id: str | None = None
    ) -> Result | None:
        """`result`, but None where RunComfy answers 400005 (not ready) instead of the
        state: what a poll of a request known to be running needs, in one call."""
        try:
            with about(request_id):
                body = await self.transport.call(
                    CallKind.RESULT,
                    "GET",
                    f"/v1/requests/{quote(request_id, safe='')}/result",
                    _RESULT,
                    params={"include_cost": "true"} if include_cost else None,
                )
        except ResultNotReadyError:
            return None
        result = of_model(_wire.result_from(body, request_id), model_id)
        self.telemetry.resulted(result)
        return result

    async def cancel(self, request_id: str) -> CancelOutcome:
        with about(request_id):
            path = f"/v1/requests/{quote(request_id, safe='')}/cancel"
            body = await self.transport.call(CallKind.CANCEL, "POST", path, _CANCEL)
        return _wire.cancel_from(body, request_id)

    async def model_info(self, model_id: str) -> ModelInfo:
        """The catalog entry of a model, as fetched (the checks learn it on their own)."""
        check_model_id(model_id)
        path = f"/v1/models/{model_id}"
        try:
            body = await self.transport.call(CallKind.CATALOG, "GET", path, _MODEL)
        except (NotFoundError, BadRequestError) as exc:
            if not is_unknown_model(exc):
                raise
            known: list[str] = []
            try:  # the closest ids, for "did you mean …?"; a listing that fails names none
                with anyio.move_on_after(SUGGEST_WITHIN):
                    async for info in iter_models(self.model_page, include_schema=False):
                        known.append(info.model_id)
            except RunComfyError:
                known = []
            raise unknown_model_error(exc, model_id, known) from exc
        return _wire.model_info_from(body, model_id)

    async def model_page(self, params: Mapping[str, str]) -> ModelListBody:
        """One page of the catalog listing."""
        return await self.transport.call(
            CallKind.CATALOG, "GET", "/v1/models", _MODELS, params=params
        )

    # ------------------------------------------------------------------ tracking

    def tracker(self, request: Request | Submitted | str, *, deadline: float | None) -> Tracker:
        """A tracker of `request`, knowing when this runtime submitted it (the 404 grace)."""
        rid = request_id_of(request)
        model_id = None if isinstance(request, str) else request.model_id
        submitted_at = None if isinstance(request, str) else request.submitted_at
        if submitted_at is None:
            submitted_at = self._recent.get(rid)
        grace = self.settings.not_found_grace
        return Tracker(
            rid,
            model_id=model_id,
            submitted_at=submitted_at,
            fresh_until=None if submitted_at is None else submitted_at + grace,
            deadline=deadline,
        )

    def track(self, tracker: Tracker) -> None:
        """Hand a request to the poller pool (started on first use)."""
        self.transport.check_open()
        if self._service.closed:  # the client is closing: nobody would poll it
            tracker.resolve(RunComfyError("the client was closed"))
            return
        self._service.start()
        self._scheduler.track(tracker)

    def forget(self, tracker: Tracker) -> None:
        """Stop polling for `tracker` (the request goes on)."""
        self._scheduler.forget(tracker)

    # ------------------------------------------------------------------ downloads

    async def downloads(self) -> Downloader:
        """The download session (no key, no cookies), opened on first use."""
        async with self._download_lock:
            if self._downloader is None:
                downloader = Downloader(allow_loopback=self.allow_loopback)
                await downloader.__aenter__()
                self._downloader = downloader
            return self._downloader

    async def preflighter(self) -> Preflight:
        """A media pre-flight checker borrowing the download session (nothing to close);
        it measures each URL once, so a batch keeps one."""
        downloader = await self.downloads()
        return Preflight(allow_loopback=downloader.allow_loopback, downloader=downloader)


@contextlib.contextmanager
def about(request_id: str) -> Iterator[None]:
    """RunComfy's errors about one request (not found, not yours, not a valid id) name it
    (`request_id`, and in the message); a 429 or 5xx is about the service, not the request."""
    try:
        yield
    except (NotFoundError, PermissionDeniedError, BadRequestError) as exc:
        if exc.request_id is None:
            exc.request_id = request_id
        raise


def request_id_of(request: Request | Submitted | str) -> str:
    """The request_id of a handle or an id, checked to be one."""
    rid = request if isinstance(request, str) else request.request_id
    if not isinstance(rid, str) or not rid or len(rid) > 256:
        raise ValueError(f"not a request_id: {rid!r}")
    return rid
