"""Waiting for one request: the poll-interval policy and the status→result state machine."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Protocol

import anyio

from ._errors import (
    NotFoundError,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    RunComfyError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from ._retry import Clock, Sleep
from ._wire import CancelOutcome, Result, State, Status

__all__ = ["PollPolicy"]

logger = logging.getLogger("runcomfy_async")

# Failures of one poll that say nothing about the request: keep polling until the deadline.
_TRANSIENT = (TransportError, ServerError, RateLimitError, UnexpectedResponseError)


@dataclass(frozen=True)
class PollPolicy:
    """When to poll next, in seconds: soon after submit, then backing off to `max_interval`,
    held back while the queue ahead is long, always jittered by ±`jitter` (a fraction)."""

    first_interval: float = 0.5
    growth: float = 1.5
    max_interval: float = 5.0
    seconds_per_queue_position: float = 0.5
    max_queue_interval: float = 15.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.first_interval <= self.max_interval and self.growth >= 1):
            raise ValueError("need 0 < first_interval <= max_interval and growth >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    def next_interval(self, polls: int, queue_position: int | None, rng: random.Random) -> float:
        """Seconds until the next poll, after `polls` polls of this request."""
        interval = min(self.max_interval, self.first_interval * self.growth ** min(polls, 64))
        if queue_position:
            held = min(self.max_queue_interval, self.seconds_per_queue_position * queue_position)
            interval = max(interval, held)
        return interval * rng.uniform(1 - self.jitter, 1 + self.jitter)


class _Api(Protocol):
    async def status(self, request_id: str, /) -> Status: ...
    async def result(self, request_id: str, /) -> Result: ...
    async def cancel(self, request_id: str, /) -> CancelOutcome: ...


@dataclass(frozen=True)
class WaitSettings:
    """Client-wide knobs of wait(); every duration in seconds."""

    policy: PollPolicy
    not_found_grace: float
    cancel_grace: float
    empty_result_confirmations: int = 3


def settle(result: Result) -> Result:
    """Return a successful result, or raise the error its state means."""
    if result.state is State.CANCELLED:
        raise RequestCancelledError(
            f"request {result.request_id} was cancelled", request_id=result.request_id
        )
    if result.state is State.FAILED or (result.output is None and result.error is not None):
        raise RequestFailedError(
            f"request {result.request_id} failed: {result.error!r}",
            request_id=result.request_id,
            error=result.error,
        )
    return result


async def wait_for(
    api: _Api,
    request_id: str,
    *,
    timeout: float | None,
    fresh_until: float | None,
    cancel_on_timeout: bool,
    cancel_on_interrupt: bool,
    settings: WaitSettings,
    sleep: Sleep,
    clock: Clock,
    rng: random.Random,
) -> Result:
    """Poll /status until terminal, confirm on /result, and return or raise (see Client.wait).

    `fresh_until` is the clock time until which a 404 is taken as a just-submitted request
    that RunComfy has not indexed yet.
    """
    deadline = None if timeout is None else clock() + timeout
    last: State | None = None
    queue_position: int | None = None
    polls = 0
    confirmations = 0
    finished = False  # /status said terminal: read /result from now on
    try:
        while True:
            try:
                if not finished:
                    status = await api.status(request_id)
                    if status.state != last:
                        level = logging.DEBUG if status.state.is_known else logging.WARNING
                        logger.log(level, "request %s is %s", request_id, status.state.value)
                    last, queue_position = status.state, status.queue_position
                    finished = status.state.is_terminal
                if finished:
                    result = await api.result(request_id)
                    if (
                        result.state.is_terminal
                        and result.output is None
                        and (
                            result.state in (State.COMPLETED, State.SUCCEEDED)
                            and result.error is None
                        )
                    ):
                        confirmations += 1  # finished but no output yet: ask again
                        if confirmations >= settings.empty_result_confirmations:
                            logger.warning("request %s finished without output", request_id)
                            return result
                    elif result.state.is_terminal:
                        return settle(result)
                    else:
                        last = result.state
            except NotFoundError:
                if fresh_until is None or clock() > fresh_until:
                    raise
                logger.debug("request %s not found yet; it was just submitted", request_id)
            except _TRANSIENT as exc:
                logger.info("polling request %s failed (%s); will poll again", request_id, exc)
            polls += 1
            delay = settings.policy.next_interval(polls, queue_position, rng)
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    raise await _timed_out(api, request_id, timeout, cancel_on_timeout, settings)
                delay = min(delay, left)
            await sleep(delay)
    except anyio.get_cancelled_exc_class():
        if cancel_on_interrupt and (last is None or last is State.IN_QUEUE):
            await _cancel_quietly(api, request_id, settings.cancel_grace)
        raise


async def _timed_out(
    api: _Api,
    request_id: str,
    timeout: float | None,
    cancel: bool,
    settings: WaitSettings,
) -> WaitTimeoutError:
    outcome = await _cancel_quietly(api, request_id, settings.cancel_grace) if cancel else None
    return WaitTimeoutError(
        f"request {request_id} did not finish within {timeout} s; it "
        + ("was cancelled" if outcome and outcome.cancelled else "goes on: wait on it again"),
        request_id=request_id,
        timeout=timeout if timeout is not None else 0.0,
        cancel_outcome=outcome,
    )


async def _cancel_quietly(api: _Api, request_id: str, grace: float) -> CancelOutcome | None:
    """A bounded, shielded, best-effort cancel: never raises, never outlives `grace` s."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
        try:
            outcome = await api.cancel(request_id)
        except RunComfyError as exc:
            logger.warning("could not cancel request %s: %s", request_id, exc)
            return None
        logger.info("cancel of request %s: %s", request_id, outcome.outcome)
        return outcome
    logger.warning("cancel of request %s got no answer within %s s", request_id, grace)
    return None
