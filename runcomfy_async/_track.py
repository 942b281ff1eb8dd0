"""One tracked request: its poll state machine (/status and /result) and how it ends."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import msgspec

from ._errors import (
    NotFoundError,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    RunComfyError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)
from ._retry import Clock
from ._telemetry import about
from ._wire import CancelOutcome, Result, State, Status

logger = logging.getLogger("runcomfy_async")

# Failures of one poll that say nothing about the request: keep polling until the deadline.
_TRANSIENT = (TransportError, ServerError, RateLimitError, UnexpectedResponseError)


class Api(Protocol):
    """The calls tracking needs (the Client provides them)."""

    async def status(self, request_id: str, /) -> Status: ...
    async def result(self, request_id: str, /) -> Result: ...
    async def try_result(self, request_id: str, /) -> Result | None: ...
    async def cancel(self, request_id: str, /) -> CancelOutcome: ...


@dataclass(frozen=True)
class TrackSettings:
    """Client-wide knobs of tracking; every duration in seconds."""

    not_found_grace: float
    cancel_grace: float
    empty_result_confirmations: int = 3


class Expired:
    """The outcome of a tracker whose deadline passed before the request finished."""


EXPIRED = Expired()
Outcome = Result | RunComfyError | Expired


class Tracker:
    """What the client knows of one request it waits for, and the waiters' rendezvous."""

    __slots__ = (
        "_done",
        "anchor",
        "confirmations",
        "deadline",
        "ended_after",
        "ended_by",
        "finished",
        "fresh_until",
        "last_poll_at",
        "model_id",
        "on_change",
        "on_done",
        "outcome",
        "polling",
        "polls",
        "queue_position",
        "queued_seen_at",
        "request_id",
        "result",
        "running_polls",
        "state",
        "submitted_at",
        "version",
    )

    def __init__(
        self,
        request_id: str,
        *,
        model_id: str | None = None,
        submitted_at: float | None = None,
        fresh_until: float | None = None,
        deadline: float | None = None,
        on_change: Callable[[Tracker, State], None] | None = None,
        on_done: Callable[[Tracker], None] | None = None,
    ) -> None:
        self.request_id = request_id
        self.model_id = model_id
        self.submitted_at = submitted_at
        self.fresh_until = fresh_until
        self.deadline = deadline
        self.on_change = on_change
        self.on_done = on_done
        self.result: Result | None = None  # the last /result read
        self.state: State | None = None
        self.queue_position: int | None = None
        self.polls = 0
        self.polling = False  # handed to a poller: nothing else may poll it till it is back
        self.running_polls = 0
        self.finished = False  # /status said terminal: read /result from now on
        self.confirmations = 0
        self.last_poll_at: float | None = None
        self.queued_seen_at: float | None = None
        self.anchor: float | None = None  # estimated clock time the run started
        self.ended_after: float | None = None  # clock times between which the run ended
        self.ended_by: float | None = None
        self.version = 0  # bumped on every (re)schedule: older heap entries are stale
        self.outcome: Outcome | None = None
        self._done: anyio.Event | None = None  # made by the first wait(): a batch never waits

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def resolve(self, outcome: Outcome) -> None:
        """Set the outcome once and wake the waiters."""
        if self.outcome is None:
            self.outcome = outcome
            if self._done is not None:
                self._done.set()
            if self.on_done is not None:
                try:
                    self.on_done(self)
                except Exception:
                    logger.exception(
                        "the listener of request %s failed", self.request_id, extra=self.about()
                    )

    async def wait(self) -> Outcome:
        """The outcome, once there is one."""
        if self._done is None:
            self._done = anyio.Event()
            if self.outcome is not None:
                self._done.set()
        await self._done.wait()
        assert self.outcome is not None
        return self.outcome

    def observe(self, state: State, queue_position: int | None, now: float) -> None:
        """Record a state seen at clock time `now` (estimating when the run started)."""
        previous, prev_poll = self.state, self.last_poll_at
        if state is State.IN_QUEUE:
            self.queued_seen_at = now
        elif self.anchor is None and (state is State.IN_PROGRESS or state.is_terminal):
            if self.queued_seen_at is not None:
                self.anchor = (self.queued_seen_at + now) / 2  # started between the two polls
            elif self.submitted_at is not None:
                self.anchor = self.submitted_at  # never seen queued: it ran at once
        if state.is_terminal and self.ended_by is None:
            # It finished between the last poll (or the start) and this one.
            since = prev_poll if prev_poll is not None else self.anchor
            if since is not None:
                self.ended_after, self.ended_by = since, now
        if state is State.IN_PROGRESS:
            self.running_polls += 1
        self.state, self.queue_position, self.last_poll_at = state, queue_position, now
        self.polls += 1
        if state != previous:
            level = logging.DEBUG if state.is_known else logging.WARNING
            logger.log(level, "request %s is %s", self.request_id, state.value, extra=self.about())
            self._tell(state)

    def settled_as(self, state: State) -> None:
        """Take the state /result gave (e.g. `succeeded` after `completed` on /status)."""
        if state != self.state:
            self.state = state
            self._tell(state)

    def _tell(self, state: State) -> None:
        # A listener's bug is logged, never allowed to stop the poller that tells it.
        if self.on_change is not None:
            try:
                self.on_change(self, state)
            except Exception:
                logger.exception(
                    "a state listener of request %s failed", self.request_id, extra=self.about()
                )

    def about(self) -> dict[str, str | None]:
        """The structured `extra` of log records about this request."""
        return about(self.request_id, self.model_id)

    def run_time(self) -> float | None:
        """Seconds the run took, as well as the polls can tell (the midpoint of
        `run_time_range`), once it is over."""
        span = self.run_time_range()
        return None if span is None else (span[0] + span[1]) / 2

    def run_time_range(self) -> tuple[float, float] | None:
        """The shortest and longest the run can have taken (seconds), once it is over: it
        ended between the last poll that saw it running (or its start) and the next."""
        if self.anchor is None or self.ended_after is None or self.ended_by is None:
            return None
        return max(0.0, self.ended_after - self.anchor), self.ended_by - self.anchor


def of_model(result: Result, submitted_model_id: str | None) -> Result:
    """`result` stamped with the model it was submitted to; a result RunComfy says is of
    another model is logged as a warning (`result.model_mismatch` says it, too)."""
    if submitted_model_id is None or result.submitted_model_id is not None:
        return result
    result = msgspec.structs.replace(result, submitted_model_id=submitted_model_id)
    if result.model_mismatch:
        logger.warning(
            "request %s was submitted to %s but its result is of %s",
            result.request_id,
            submitted_model_id,
            result.model_id,
            extra=about(result.request_id, submitted_model_id),
        )
    return result


def settle(result: Result) -> Result | RequestFailedError:
    """The successful result, or the error its state means."""
    if result.state is State.CANCELLED:
        return RequestCancelledError(
            f"request {result.request_id} was cancelled", request_id=result.request_id
        )
    if result.state is State.FAILED or (result.output is None and result.error is not None):
        return RequestFailedError(
            f"request {result.request_id} failed: {result.error!r}",
            request_id=result.request_id,
            error=result.error,
        )
    return result


class Answers:
    """How this client's RunComfy answers, as its polls found out (shared by its trackers)."""

    __slots__ = ("result_tells_state",)

    def __init__(self) -> None:
        # An unfinished /result answered 200 with its state (the documented behaviour),
        # not 400005: a first poll can read /result, and a finished request takes one call.
        self.result_tells_state = False


async def poll_once(
    api: Api, tracker: Tracker, settings: TrackSettings, clock: Clock, answers: Answers
) -> Result | RunComfyError | None:
    """Poll once, in one call where RunComfy allows it.

    /result once the request is seen running: its end and its outcome come in one answer (a
    400005 "not ready" means it still runs). /result for a first poll too, once this
    RunComfy was found to tell an unfinished request's state there. /status otherwise (a
    queued request: its queue position), and /result after a /status that says finished.

    Returns the outcome (a Result on success, the error otherwise), or None to poll again.
    A poll that fails on the network never ends the tracking.
    """
    rid = tracker.request_id
    try:
        result: Result | None = None
        running = tracker.state is State.IN_PROGRESS
        if not tracker.finished and (
            running or (tracker.state is None and answers.result_tells_state)
        ):
            result = await api.try_result(rid)
            if result is None and running:  # 400005: not ready, so it still runs
                tracker.observe(State.IN_PROGRESS, None, clock())
                return None
            if result is not None:
                result = of_model(result, tracker.model_id)
                tracker.observe(result.state, None, clock())
                tracker.finished = result.state.is_terminal
                if not tracker.finished:
                    answers.result_tells_state = True
                    return None
        if not tracker.finished:
            status = await api.status(rid)
            tracker.observe(status.state, status.queue_position, clock())
            tracker.finished = status.state.is_terminal
        if tracker.finished:
            if result is None:
                result = of_model(await api.result(rid), tracker.model_id)
            tracker.result = result
            if not result.state.is_terminal:
                return None
            if (
                result.output is None
                and result.error is None
                and result.state
                in (
                    State.COMPLETED,
                    State.SUCCEEDED,
                )
            ):
                tracker.confirmations += 1  # finished, but the output is not there yet
                if tracker.confirmations < settings.empty_result_confirmations:
                    return None
                logger.warning("request %s finished without output", rid, extra=tracker.about())
                return result
            tracker.settled_as(result.state)
            return settle(result)
    except NotFoundError as exc:
        if tracker.fresh_until is None or clock() > tracker.fresh_until:
            return exc
        logger.debug("request %s not found yet; it was just submitted", rid, extra=tracker.about())
    except _TRANSIENT as exc:
        logger.info(
            "polling request %s failed (%s); will poll again", rid, exc, extra=tracker.about()
        )
    except RunComfyError as exc:  # authentication, permission, bad request: polling is futile
        return exc
    return None


async def cancel_quietly(api: Api, request_id: str, grace: float) -> CancelOutcome | None:
    """A bounded, shielded, best-effort cancel: never raises, never outlives `grace` s."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
        try:
            outcome = await api.cancel(request_id)
        except RunComfyError as exc:
            logger.warning(
                "could not cancel request %s: %s", request_id, exc, extra=about(request_id)
            )
            return None
        logger.info(
            "cancel of request %s: %s", request_id, outcome.outcome, extra=about(request_id)
        )
        return outcome
    logger.warning(
        "cancel of request %s got no answer within %s s",
        *(request_id, grace),
        extra=about(request_id),
    )
    return None
