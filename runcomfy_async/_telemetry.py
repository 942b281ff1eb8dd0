"""The tracer hook: what the core tells a telemetry backend, and the no-op default.

The core calls these hooks and never imports a tracing library; `telemetry=True` loads the
OpenTelemetry backend (`runcomfy_async.otel`, the `[otel]` extra) lazily. What a hook is
given never holds the key, an input value or a URL's query string: the route template, ids,
states, status codes, durations and costs only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._wire import Result, State

__all__ = ["Telemetry"]

Work = Callable[[], Coroutine[Any, Any, None]]

_REQUEST_PATH = re.compile(r"^/v1/requests/([^/?]+)/(status|result|cancel)$")
_MODEL_PATH = re.compile(r"^/v1/models/(.+)$")


def route_of(path: str) -> tuple[str, str | None, str | None]:
    """(route template, request_id, model_id) of an API path: ids become attributes, not
    parts of a span's name."""
    if found := _REQUEST_PATH.match(path):
        return f"/v1/requests/{{request_id}}/{found[2]}", unquote(found[1]), None
    if found := _MODEL_PATH.match(path):
        return "/v1/models/{model_id}", None, unquote(found[1])
    return path, None, None


# The request a task is busy with (request_id, model_id): names the model in the log records
# of calls that know only the request_id (a poll's status and result calls).
_CONCERNING: ContextVar[tuple[str, str | None] | None] = ContextVar(
    "runcomfy_async_concerning", default=None
)


@contextmanager
def concerning(request_id: str, model_id: str | None) -> Iterator[None]:
    """Within this block, records about `request_id` also name `model_id`."""
    token = _CONCERNING.set((request_id, model_id))
    try:
        yield
    finally:
        _CONCERNING.reset(token)


def about(request_id: str | None, model_id: str | None = None) -> dict[str, str | None]:
    """The structured `extra` of a log record about one request (`record.request_id`,
    `record.model_id`)."""
    if model_id is None and request_id is not None:
        current = _CONCERNING.get()
        if current is not None and current[0] == request_id:
            model_id = current[1]
    return {"request_id": request_id, "model_id": model_id}


class CallProbe(Protocol):
    """What one API call (with its retries) reports while it runs."""

    def answered(self, status_code: int) -> None: ...
    def retrying(self, delay: float, *, rate_limited: bool) -> None: ...


class SubmitProbe(Protocol):
    """What one submit reports once RunComfy has named the request."""

    def submitted(self, request_id: str) -> None: ...


class BatchProbe(Protocol):
    """One batch: its feed runs inside it; it ends once, with its counts."""

    def inside(self, work: Work) -> Work: ...
    def end(self, counts: dict[str, int]) -> None: ...


class Telemetry(Protocol):
    """The hooks a Client calls (pass an implementation as `Client(telemetry=...)`)."""

    def call(self, kind: str, method: str, path: str) -> AbstractContextManager[CallProbe]: ...
    def submit(self, model_id: str) -> AbstractContextManager[SubmitProbe]: ...
    def observed(self, request_id: str, state: State) -> None: ...
    def resulted(self, result: Result) -> None: ...
    def batch(self) -> BatchProbe: ...
    def close(self) -> None: ...


class _Nothing:
    """Every probe of the no-op telemetry, and the context that hands it out (a generator
    context manager cost two calls of each submit ~3 us)."""

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def answered(self, status_code: int) -> None:
        pass

    def retrying(self, delay: float, *, rate_limited: bool) -> None:
        pass

    def submitted(self, request_id: str) -> None:
        pass

    def inside(self, work: Work) -> Work:
        return work

    def end(self, counts: dict[str, int]) -> None:
        pass


_NOTHING = _Nothing()


class NoTelemetry:
    """The default: every hook does nothing."""

    def call(self, kind: str, method: str, path: str) -> AbstractContextManager[CallProbe]:
        return _NOTHING

    def submit(self, model_id: str) -> AbstractContextManager[SubmitProbe]:
        return _NOTHING

    def observed(self, request_id: str, state: State) -> None:
        pass

    def resulted(self, result: Result) -> None:
        pass

    def batch(self) -> BatchProbe:
        return _NOTHING

    def close(self) -> None:
        pass


def telemetry_of(choice: bool | object | None) -> Telemetry:
    """The Client's telemetry: off (None/False), OpenTelemetry (True), or the one given."""
    if choice is None or choice is False:
        return NoTelemetry()
    if choice is True:
        try:
            from .otel import OpenTelemetry
        except ImportError as exc:
            raise ConfigurationError(
                "telemetry=True needs OpenTelemetry: pip install 'runcomfy-async[otel]'"
            ) from exc
        return OpenTelemetry()
    return choice  # type: ignore[return-value]
