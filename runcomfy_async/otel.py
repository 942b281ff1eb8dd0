"""OpenTelemetry for the Client (`pip install 'runcomfy-async[otel]'`): spans and metrics.

`rc.Client(telemetry=True)` uses the global tracer and meter providers; pass
`telemetry=OpenTelemetry(tracer_provider=..., meter_provider=...)` to choose others. Spans:
`runcomfy.request` from submit to terminal state (model id, request_id, final state, queue
and run seconds as the polls saw them, cost; an event per state change; error status when it
failed), a client span per API call (`GET /v1/requests/{request_id}/status`: method, route
template, status code, retries, 429 waits; the request_id as an attribute), and
`runcomfy.batch` around each `map()`. Metrics are listed in `INSTRUMENTS`. Never recorded:
the key, input values, URLs and their query strings, exception messages (only their type).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from ._telemetry import Work, route_of
from ._version import __version__
from ._wire import Result, State

__all__ = ["INSTRUMENTS", "OpenTelemetry"]

INSTRUMENTS = {
    "runcomfy.requests.in_flight": "requests this client tracks, by `runcomfy.state`",
    "runcomfy.requests.finished": "requests seen terminal, by model and final state",
    "runcomfy.request.detection_latency": "seconds from RunComfy's finish to the client's sight",
    "runcomfy.request.queue_duration": "seconds queued, as the polls saw them",
    "runcomfy.request.run_duration": "seconds running, as the polls saw them",
    "runcomfy.http.calls": "API calls by `runcomfy.call_kind` and `runcomfy.outcome`",
    "runcomfy.http.retries": "retries after failed calls, by kind",
    "runcomfy.rate_limit.pauses": "waits after 429 answers, by kind",
    "runcomfy.rate_limit.pause_duration": "seconds waited after 429 answers",
    "runcomfy.cost": "USD RunComfy reported for finished requests, by model",
}
_SUBMITTED = "submitted"  # in flight, state not yet seen


@dataclass(slots=True)
class _Open:
    """A request span not ended yet, and what the polls saw of it."""

    span: Span
    model_id: str | None
    started: float
    state: str = _SUBMITTED
    running_since: float | None = None
    states: list[str] = field(default_factory=list)


class _Call:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.retries = self.pauses = 0
        self.paused = 0.0

    def answered(self, status_code: int) -> None:
        self.span.set_attribute("http.response.status_code", status_code)

    def retrying(self, delay: float, *, rate_limited: bool) -> None:
        if rate_limited:
            self.pauses += 1
            self.paused += delay
        else:
            self.retries += 1
        self.span.add_event(
            "retry", {"runcomfy.delay": delay, "runcomfy.rate_limited": rate_limited}
        )


class _Submit:
    def __init__(self, owner: OpenTelemetry, span: Span, model_id: str) -> None:
        self.owner, self.span, self.model_id = owner, span, model_id
        self.request_id: str | None = None

    def submitted(self, request_id: str) -> None:
        self.request_id = request_id
        self.span.set_attribute("runcomfy.request_id", request_id)
        self.owner._open_request(request_id, self.span, self.model_id)


class _Batch:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.ended = False

    def inside(self, work: Work) -> Work:
        span = self.span

        async def run() -> None:
            token = context.attach(trace.set_span_in_context(span))
            try:
                await work()
            finally:
                context.detach(token)

        return run

    def end(self, counts: dict[str, int]) -> None:
        if self.ended:
            return
        self.ended = True
        for name, count in counts.items():
            self.span.set_attribute(f"runcomfy.batch.{name}", count)
        self.span.end()


class OpenTelemetry:
    """The OpenTelemetry backend of the Client's tracer hook."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracer = trace.get_tracer("runcomfy_async", __version__, tracer_provider)
        meter = metrics.get_meter("runcomfy_async", __version__, meter_provider=meter_provider)
        self._clock = clock
        self._open: dict[str, _Open] = {}
        counter, histogram = meter.create_counter, meter.create_histogram
        self._in_flight = meter.create_up_down_counter(
            "runcomfy.requests.in_flight", "{request}", INSTRUMENTS["runcomfy.requests.in_flight"]
        )
        self._finished = counter("runcomfy.requests.finished", "{request}")
        self._detection = histogram("runcomfy.request.detection_latency", "s")
        self._queued = histogram("runcomfy.request.queue_duration", "s")
        self._ran = histogram("runcomfy.request.run_duration", "s")
        self._calls = counter("runcomfy.http.calls", "{call}")
        self._retries = counter("runcomfy.http.retries", "{retry}")
        self._pauses = counter("runcomfy.rate_limit.pauses", "{pause}")
        self._paused = histogram("runcomfy.rate_limit.pause_duration", "s")
        self._cost = counter("runcomfy.cost", "USD")

    # ------------------------------------------------------------------ API calls

    @contextmanager
    def call(self, kind: str, method: str, path: str) -> Iterator[_Call]:
        route, request_id, model_id = route_of(path)
        parent = None
        if request_id is not None and request_id in self._open:
            parent = trace.set_span_in_context(self._open[request_id].span)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.template": route,
            "runcomfy.call_kind": kind,
        }
        if request_id is not None:
            attributes["runcomfy.request_id"] = request_id
        if model_id is not None:
            attributes["runcomfy.model_id"] = model_id
        span = self._tracer.start_span(
            f"{method} {route}", parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        probe = _Call(span)
        outcome = "ok"
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                yield probe
        except BaseException as exc:
            outcome = type(exc).__name__
            span.set_attribute("error.type", outcome)
            if isinstance(exc, Exception):
                span.set_status(StatusCode.ERROR, outcome)
            raise
        finally:
            if probe.retries:  # absent: none (each attribute costs the SDK a few us)
                span.set_attribute("runcomfy.retries", probe.retries)
            if probe.pauses:
                span.set_attribute("runcomfy.rate_limit_waits", probe.pauses)
            span.end()
            self._calls.add(1, {"runcomfy.call_kind": kind, "runcomfy.outcome": outcome})
            if probe.retries:
                self._retries.add(probe.retries, {"runcomfy.call_kind": kind})
            if probe.pauses:
                self._pauses.add(probe.pauses, {"runcomfy.call_kind": kind})
                self._paused.record(probe.paused, {"runcomfy.call_kind": kind})

    # ------------------------------------------------------------------ requests

    @contextmanager
    def submit(self, model_id: str) -> Iterator[_Submit]:
        span = self._tracer.start_span(
            "runcomfy.request", attributes={"runcomfy.model_id": model_id}
        )
        probe = _Submit(self, span, model_id)
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                yield probe
        except BaseException as exc:
            if probe.request_id is None:  # nothing was queued: the span ends here
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(StatusCode.ERROR, type(exc).__name__)
                span.end()
            raise

    def _open_request(self, request_id: str, span: Span, model_id: str | None) -> _Open:
        opened = self._open[request_id] = _Open(span, model_id, self._clock())
        self._in_flight.add(1, {"runcomfy.state": _SUBMITTED})
        return opened

    def observed(self, request_id: str, state: State) -> None:
        opened = self._open.get(request_id)
        if opened is None:  # a request submitted elsewhere: its span starts when first seen
            span = self._tracer.start_span(
                "runcomfy.request", attributes={"runcomfy.request_id": request_id}
            )
            opened = self._open_request(request_id, span, None)
        if state.value == opened.state:
            return
        self._in_flight.add(-1, {"runcomfy.state": opened.state})
        self._in_flight.add(1, {"runcomfy.state": state.value})
        opened.state = state.value
        opened.span.add_event("state", {"runcomfy.state": state.value})
        if state is State.IN_PROGRESS and opened.running_since is None:
            opened.running_since = self._clock()

    def resulted(self, result: Result) -> None:
        self.observed(result.request_id, result.state)
        if not result.state.is_terminal:
            return
        opened = self._open.pop(result.request_id)
        now, span = self._clock(), opened.span
        model_id = opened.model_id or result.model_id
        model = {"runcomfy.model_id": model_id} if model_id else {}
        self._in_flight.add(-1, {"runcomfy.state": opened.state})
        self._finished.add(1, {**model, "runcomfy.state": result.state.value})
        span.set_attribute("runcomfy.state", result.state.value)
        if model_id:
            span.set_attribute("runcomfy.model_id", model_id)
        queued = (opened.running_since or now) - opened.started
        span.set_attribute("runcomfy.queue_duration", queued)
        self._queued.record(queued, model)
        if opened.running_since is not None:
            span.set_attribute("runcomfy.run_duration", now - opened.running_since)
            self._ran.record(now - opened.running_since, model)
        if result.cost is not None:
            span.set_attribute("runcomfy.cost", result.cost)
            self._cost.add(result.cost, model)
        if result.finished_at is not None:
            finished = result.finished_at
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=UTC)
            lag = max(0.0, (datetime.now(UTC) - finished).total_seconds())
            self._detection.record(lag, model)
        if result.state is State.FAILED:
            span.set_status(StatusCode.ERROR, "the request failed")
        span.end()

    # ------------------------------------------------------------------ batches, close

    def batch(self) -> _Batch:
        return _Batch(self._tracer.start_span("runcomfy.batch"))

    def close(self) -> None:
        """End the spans of requests not seen finished (`runcomfy.state`: the last seen)."""
        for opened in self._open.values():
            self._in_flight.add(-1, {"runcomfy.state": opened.state})
            opened.span.set_attribute("runcomfy.state", opened.state)
            opened.span.end()
        self._open.clear()
