"""Wire data: the State enum, msgspec Structs for every answer, and their lenient parsers."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import msgspec

from ._fields import parse_float, parse_int, parse_timestamp

__all__ = [
    "CancelOutcome",
    "ModelInfo",
    "Output",
    "Result",
    "State",
    "Status",
]


class State(enum.StrEnum):
    """Where a request stands. Unknown strings parse to a pseudo-member named UNKNOWN."""

    IN_QUEUE = "in_queue"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"  # finished, success or not: /result says which
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def _missing_(cls, value: object) -> State:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a state")
        normal = value.strip().lower().replace("-", "_").replace(" ", "_")
        alias = _ALIASES.get(normal, normal)
        for member in cls:
            if member.value == alias:
                return member
        # Carry the server's string without crashing: not terminal, keep polling.
        pseudo = str.__new__(cls, value)
        pseudo._name_ = "UNKNOWN"
        pseudo._value_ = value
        return pseudo

    @property
    def is_terminal(self) -> bool:
        """True when the request will not change state any more."""
        return self in _TERMINAL

    @property
    def is_known(self) -> bool:
        """False for a state string this SDK does not know."""
        return self._name_ != "UNKNOWN"


# Words RunComfy's own clients accept besides the documented ones (runcomfy-api.md).
_ALIASES = {
    "canceled": "cancelled",
    "queued": "in_queue",
    "pending": "in_queue",
    "waiting": "in_queue",
    "starting": "in_queue",
    "running": "in_progress",
    "processing": "in_progress",
}
_TERMINAL = frozenset({State.COMPLETED, State.SUCCEEDED, State.FAILED, State.CANCELLED})


def parse_state(raw: object) -> State:
    """The one place a state string becomes a State; anything unreadable is UNKNOWN."""
    return State(raw if isinstance(raw, str) else repr(raw))


# ---------------------------------------------------------------- answers as received


class Body(msgspec.Struct, kw_only=True):
    """Fields every answer may carry: a 2xx body with a non-null error_code is an error."""

    error_code: Any = None
    error_message: Any = None
    message: Any = None
    detail: Any = None


class SubmitBody(Body, kw_only=True):
    request_id: Annotated[str, msgspec.Meta(min_length=1)]
    status: Any = None
    status_url: Any = None
    result_url: Any = None
    cancel_url: Any = None


class StatusBody(Body, kw_only=True):
    request_id: Any = None
    status: Any = None
    queue_position: Any = None
    instance_id: Any = None
    error: Any = None


class ResultBody(Body, kw_only=True):
    request_id: Any = None
    model_id: Any = None
    status: Any = None
    output: Any = None
    error: Any = None
    cost: Any = None
    created_at: Any = None
    finished_at: Any = None


class CancelBody(Body, kw_only=True):
    request_id: Any = None
    status: Any = None
    outcome: Any = None


class ModelBody(Body, kw_only=True):
    model_id: Any = None
    id: Any = None
    name: Any = None
    display_name: Any = None
    category: Any = None
    categories: Any = None
    pricing_note: Any = None
    input_schema: Any = None
    output_schema: Any = None
    base_price_usd: Any = None
    price_unit: Any = None


class ErrorBody(Body, kw_only=True):
    code: Any = None
    error: Any = None


# ---------------------------------------------------------------- public, typed values


class Output(msgspec.Struct, frozen=True):
    """A request's outputs: the known keys as properties, every key in `data`."""

    data: dict[str, Any]

    @property
    def image(self) -> str | None:
        """URL of the single image, if the model gives one."""
        return _url_or_none(self.data.get("image"))

    @property
    def video(self) -> str | None:
        """URL of the single video, if the model gives one."""
        return _url_or_none(self.data.get("video"))

    @property
    def images(self) -> list[str]:
        """URLs of the images, if the model gives a list."""
        return list(_walk_urls(self.data.get("images")))

    @property
    def videos(self) -> list[str]:
        """URLs of the videos, if the model gives a list."""
        return list(_walk_urls(self.data.get("videos")))

    @property
    def urls(self) -> list[str]:
        """Every output URL, in the order the answer lists them, without repeats."""
        return list(dict.fromkeys(_walk_urls(self.data)))

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The raw value of any output key, known to this SDK or not."""
        return self.data.get(key, default)


def _url_or_none(value: Any) -> str | None:
    urls = list(_walk_urls(value))
    return urls[0] if urls else None


def _walk_urls(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith(("https://", "http://")):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_urls(item)


class Status(msgspec.Struct, frozen=True):
    """A request's state as /status tells it; `instance_id` names the worker, if RunComfy
    says which."""

    request_id: str
    state: State
    queue_position: int | None = None
    error: Any = None
    instance_id: str | None = None


class Result(msgspec.Struct, frozen=True):
    """A request's outcome as /result tells it; `output` is set only on success.

    `model_id` is the model RunComfy says ran (when it says); `submitted_model_id` the one
    this SDK submitted to, when it knows (a handle, a wait, a batch). `model_mismatch` is
    True when the two differ: the output is not of the model asked for.
    """

    request_id: str
    state: State
    output: Output | None = None
    error: Any = None
    cost: float | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    model_id: str | None = None
    submitted_model_id: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when the request finished with output."""
        return self.state in (State.SUCCEEDED, State.COMPLETED) and self.output is not None

    @property
    def ok(self) -> bool:
        """True when the request succeeded with output of the model submitted to (as `Item.ok`:
        a result of another model is no success of the input)."""
        return self.succeeded and not self.model_mismatch

    @property
    def model_mismatch(self) -> bool:
        """True when RunComfy's `model_id` is not the model that was submitted."""
        return (
            self.model_id is not None
            and self.submitted_model_id is not None
            and self.model_id != self.submitted_model_id
        )


class CancelOutcome(msgspec.Struct, frozen=True):
    """What a cancel achieved: `cancelled` is True only if the request will not run.

    `outcome` is RunComfy's word: `cancelled`, `not_cancellable` (running or finished: it
    is billed), `cancellation_requested` (asked, not yet done: it may still run; see
    `requested`), or `unknown`. `state` is the request's status the answer gave, if any.
    """

    request_id: str
    cancelled: bool
    outcome: str
    state: State | None = None

    @property
    def requested(self) -> bool:
        """True when RunComfy took the cancel but has not done it yet: keep tracking."""
        return self.outcome == "cancellation_requested"


class ModelInfo(msgspec.Struct, frozen=True):
    """A catalog entry: the input schema and the base price (USD per `price_unit`).

    `name` is the display name (`display_name`, or `name`); `categories` every category the
    entry lists (`categories`, or its one `category`), `category` the first of them.
    `pricing_note` is RunComfy's own words on how the price applies, when it gives any.
    """

    model_id: str
    name: str | None = None
    category: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    base_price_usd: float | None = None
    price_unit: str | None = None
    categories: tuple[str, ...] = ()
    pricing_note: str | None = None


# ---------------------------------------------------------------- lenient field parsers


def error_code_of(body: Body | ErrorBody) -> int | str | None:
    """RunComfy's error code, from `error_code` or `code`; digit strings become ints."""
    raw = body.error_code
    if raw is None and isinstance(body, ErrorBody):
        raw = body.code
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.isascii() and text.isdigit() and len(text) <= 18:
            return int(text)
        return text[:100] or None
    return None


def error_message_of(body: Body | ErrorBody) -> str | None:
    """RunComfy's error message, from whichever field the answer used."""
    candidates = [body.error_message, body.message, body.detail]
    if isinstance(body, ErrorBody):
        candidates.insert(2, body.error)
    for value in candidates:
        if value is None or value == "":
            continue
        if isinstance(value, str):
            return value
        return msgspec.json.encode(value).decode()
    return None


def _known_id(answered: Any, asked: str) -> str:
    """The request_id the server answered with, or the one asked about when it gave none."""
    return answered if isinstance(answered, str) and answered else asked


def status_from(body: StatusBody, request_id: str) -> Status:
    return Status(
        request_id=_known_id(body.request_id, request_id),
        state=parse_state(body.status),
        queue_position=parse_int(body.queue_position),
        error=body.error,
        instance_id=_text(body.instance_id),
    )


def result_from(body: ResultBody, request_id: str, submitted_model_id: str | None = None) -> Result:
    state = parse_state(body.status)
    output = Output(body.output) if isinstance(body.output, dict) else None
    if output is not None and state in (State.FAILED, State.CANCELLED):
        output = None
    return Result(
        request_id=_known_id(body.request_id, request_id),
        state=state,
        output=output,
        error=body.error,
        cost=parse_float(body.cost),
        created_at=parse_timestamp(body.created_at),
        finished_at=parse_timestamp(body.finished_at),
        model_id=_text(body.model_id),
        submitted_model_id=submitted_model_id,
    )


def cancel_from(body: CancelBody, request_id: str) -> CancelOutcome:
    outcome = body.outcome if isinstance(body.outcome, str) else None
    state = parse_state(body.status) if body.status is not None else None
    if outcome is None:
        outcome = "cancelled" if state is State.CANCELLED else "unknown"
    return CancelOutcome(
        request_id=_known_id(body.request_id, request_id),
        cancelled=parse_state(outcome) is State.CANCELLED,
        outcome=outcome,
        state=state,
    )


def model_info_from(body: ModelBody, model_id: str) -> ModelInfo:
    found = body.model_id if isinstance(body.model_id, str) else body.id
    categories = body.categories if isinstance(body.categories, list) else [body.category]
    listed = tuple(dict.fromkeys(c.strip() for c in categories if isinstance(c, str) and c.strip()))
    return ModelInfo(
        model_id=found if isinstance(found, str) else model_id,
        name=_text(body.display_name) or _text(body.name),
        category=listed[0] if listed else None,
        categories=listed,
        pricing_note=_text(body.pricing_note),
        input_schema=body.input_schema if isinstance(body.input_schema, dict) else None,
        output_schema=body.output_schema if isinstance(body.output_schema, dict) else None,
        base_price_usd=parse_float(body.base_price_usd),
        price_unit=body.price_unit if isinstance(body.price_unit, str) else None,
    )


def _text(value: Any) -> str | None:
    """A non-empty string field, else None."""
    return value if isinstance(value, str) and value.strip() else None
