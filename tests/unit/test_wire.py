"""Wire data: State parsing, Output, the lenient field parsers, and decoders that never crash."""

from __future__ import annotations

import math
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import runcomfy_async as rc
from runcomfy_async import _wire
from runcomfy_async._apierror import api_error
from runcomfy_async._fields import parse_float, parse_int, parse_timestamp
from runcomfy_async._wire import (
    CancelBody,
    ErrorBody,
    ModelBody,
    Output,
    ResultBody,
    State,
    StatusBody,
    SubmitBody,
    cancel_from,
    error_code_of,
    error_message_of,
    model_info_from,
    parse_state,
    result_from,
    status_from,
)

# ------------------------------------------------------------------ State


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("in_queue", State.IN_QUEUE),
        ("in_progress", State.IN_PROGRESS),
        ("completed", State.COMPLETED),
        ("succeeded", State.SUCCEEDED),
        ("failed", State.FAILED),
        ("cancelled", State.CANCELLED),
        ("canceled", State.CANCELLED),
        ("queued", State.IN_QUEUE),
        ("running", State.IN_PROGRESS),
        ("COMPLETED", State.COMPLETED),
        ("In_Progress", State.IN_PROGRESS),
        ("Canceled", State.CANCELLED),
        ("QUEUED", State.IN_QUEUE),
        ("  failed\n", State.FAILED),
        ("in-progress", State.IN_PROGRESS),
        ("in queue", State.IN_QUEUE),
    ],
)
def test_state_parses_spellings_aliases_and_case(raw: str, state: State) -> None:
    parsed = parse_state(raw)
    assert parsed is state
    assert parsed.is_known
    assert State(raw) is state


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (State.IN_QUEUE, False),
        (State.IN_PROGRESS, False),
        (State.COMPLETED, True),
        (State.SUCCEEDED, True),
        (State.FAILED, True),
        (State.CANCELLED, True),
    ],
)
def test_terminal_states(state: State, terminal: bool) -> None:
    assert state.is_terminal is terminal


@pytest.mark.parametrize("raw", ["preprocessing", "UPLOADING", "", "  ", "unknown", "UNKNOWN"])
def test_unknown_state_strings_are_carried_and_never_terminal(raw: str) -> None:
    state = parse_state(raw)
    assert isinstance(state, State)
    assert state.value == raw
    assert state == raw
    assert state.name == "UNKNOWN"
    assert not state.is_known
    assert not state.is_terminal
    assert state == parse_state(raw)
    assert raw in repr(state) or raw.strip() == ""


@pytest.mark.parametrize("raw", [None, 3, 2.5, True, ["completed"], {"status": "completed"}])
def test_non_string_states_are_unknown_not_a_crash(raw: object) -> None:
    state = parse_state(raw)
    assert not state.is_known
    assert not state.is_terminal


def test_state_constructor_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="not a state"):
        State(3)  # type: ignore[arg-type]


def test_state_values_are_the_documented_wire_strings() -> None:
    assert {s.value for s in State} == {
        "in_queue",
        "in_progress",
        "completed",
        "succeeded",
        "failed",
        "cancelled",
    }


# ------------------------------------------------------------------ Output and Result


def test_output_known_keys_as_properties() -> None:
    output = Output(
        {
            "image": "https://a/i.png",
            "video": "https://a/v.mp4",
            "images": ["https://a/1.png", "https://a/2.png"],
            "videos": ["https://a/1.mp4"],
        }
    )
    assert output.image == "https://a/i.png"
    assert output.video == "https://a/v.mp4"
    assert output.images == ["https://a/1.png", "https://a/2.png"]
    assert output.videos == ["https://a/1.mp4"]
    assert output.urls == [
        "https://a/i.png",
        "https://a/v.mp4",
        "https://a/1.png",
        "https://a/2.png",
        "https://a/1.mp4",
    ]


def test_output_tolerates_odd_shapes() -> None:
    output = Output(
        {
            "image": ["https://a/first.png", "https://a/second.png"],
            "video": {"url": "https://a/v.mp4"},
            "images": "https://a/only.png",
            "videos": None,
            "audio": "http://a/plain-http.wav",
            "note": "not a url",
            "inline": "data:image/png;base64,AAAA",
        }
    )
    assert output.image == "https://a/first.png"
    assert output.video == "https://a/v.mp4"
    assert output.images == ["https://a/only.png"]
    assert output.videos == []
    assert "http://a/plain-http.wav" in output.urls
    assert "not a url" not in output.urls
    assert output["note"] == "not a url"
    with pytest.raises(KeyError):
        output["absent"]


def test_output_urls_keeps_first_occurrence_order_without_repeats() -> None:
    output = Output({"a": "https://x/1", "b": ["https://x/2", "https://x/1"], "c": "https://x/3"})
    assert output.urls == ["https://x/1", "https://x/2", "https://x/3"]


def test_empty_output() -> None:
    output = Output({})
    assert output.image is None
    assert output.video is None
    assert output.images == []
    assert output.videos == []
    assert output.urls == []


@pytest.mark.parametrize(
    ("status", "output", "succeeded", "has_output"),
    [
        ("succeeded", {"image": "https://a/i.png"}, True, True),
        ("completed", {"image": "https://a/i.png"}, True, True),
        ("succeeded", None, False, False),
        ("failed", {"image": "https://a/i.png"}, False, False),  # never output on failure
        ("cancelled", {"image": "https://a/i.png"}, False, False),
        ("in_progress", None, False, False),
        ("succeeded", ["https://a/i.png"], False, False),  # not an object: ignored
    ],
)
def test_result_from_keeps_output_only_for_success(
    status: str, output: Any, succeeded: bool, has_output: bool
) -> None:
    result = result_from(ResultBody(status=status, output=output), "r1")
    assert result.succeeded is succeeded
    assert (result.output is not None) is has_output
    assert result.request_id == "r1"


def test_builders_prefer_the_answers_request_id_and_fall_back_to_ours() -> None:
    assert status_from(StatusBody(request_id="theirs"), "ours").request_id == "theirs"
    assert status_from(StatusBody(request_id=7), "ours").request_id == "ours"
    assert result_from(ResultBody(), "ours").request_id == "ours"
    assert cancel_from(CancelBody(), "ours").request_id == "ours"


def test_an_empty_request_id_in_an_answer_is_not_taken_for_the_requests() -> None:
    assert status_from(StatusBody(request_id=""), "ours").request_id == "ours"
    assert result_from(ResultBody(request_id=""), "ours").request_id == "ours"
    assert cancel_from(CancelBody(request_id=""), "ours").request_id == "ours"


@pytest.mark.parametrize(
    ("body", "cancelled", "outcome"),
    [
        (CancelBody(status="completed", outcome="cancelled"), True, "cancelled"),
        (CancelBody(outcome="canceled"), True, "canceled"),
        (CancelBody(outcome="not_cancellable"), False, "not_cancellable"),
        (CancelBody(outcome="cancellation_requested"), False, "cancellation_requested"),
        (CancelBody(status="cancelled"), True, "cancelled"),
        (CancelBody(status="in_progress"), False, "unknown"),
        (CancelBody(), False, "unknown"),
        (CancelBody(outcome=5, status="cancelled"), True, "cancelled"),
    ],
)
def test_cancel_from(body: CancelBody, cancelled: bool, outcome: str) -> None:
    result = cancel_from(body, "r1")
    assert result.cancelled is cancelled
    assert result.outcome == outcome


def test_model_info_from_reads_id_or_model_id_and_drops_wrong_types() -> None:
    info = model_info_from(
        ModelBody(id="a/b", name=3, input_schema=[], base_price_usd="0.5", price_unit=None), "x/y"
    )
    assert info == rc.ModelInfo(model_id="a/b", base_price_usd=0.5)
    assert model_info_from(ModelBody(), "x/y").model_id == "x/y"


# ------------------------------------------------------------------ lenient parsers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (0.25, 0.25),
        ("0.035", 0.035),
        (" 2 ", 2.0),
        ("-1.5", -1.5),
        (True, None),
        (False, None),
        (None, None),
        ("", None),
        ("abc", None),
        ("nan", None),
        ("inf", None),
        ("-Infinity", None),
        (math.nan, None),
        (math.inf, None),
        ("1e400", None),
        ([1], None),
        ({"usd": 1}, None),
    ],
)
def test_parse_float(value: Any, expected: float | None) -> None:
    assert parse_float(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (3.0, 3),
        ("12", 12),
        ("12.0", 12),
        (-2, -2),
        (3.5, None),
        ("3.5", None),
        (True, None),
        (None, None),
        ("three", None),
        (math.inf, None),
    ],
)
def test_parse_int(value: Any, expected: int | None) -> None:
    result = parse_int(value)
    assert result == expected
    assert result is None or type(result) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-06-01T12:00:00Z", datetime(2025, 6, 1, 12, tzinfo=UTC)),
        ("2025-06-01T12:00:00z", datetime(2025, 6, 1, 12, tzinfo=UTC)),
        ("2025-06-01T12:00:00.250Z", datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        (
            "2025-06-01T14:00:00+02:00",
            datetime(2025, 6, 1, 14, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2025-06-01T12:00:00", datetime(2025, 6, 1, 12, tzinfo=UTC)),
        ("2025-06-01 12:00:00", datetime(2025, 6, 1, 12, tzinfo=UTC)),
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC)),
        (" 2025-06-01T12:00:00Z ", datetime(2025, 6, 1, 12, tzinfo=UTC)),
        (1748779200, datetime(2025, 6, 1, 12, tzinfo=UTC)),
        (1748779200.5, datetime(2025, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        ("   ", None),
        ("Z", None),
        ("2025-13-01T00:00:00Z", None),
        (None, None),
        (True, None),
        ({"seconds": 3}, None),
        (1e300, None),
        (-1e300, None),
        (math.nan, None),
    ],
)
def test_parse_timestamp(value: Any, expected: datetime | None) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


@given(
    st.from_regex(
        r"\A\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?\Z"
    )
    | st.text(max_size=40)
    | st.floats()
    | st.integers(min_value=-(2**1100), max_value=2**1100)
)
def test_parse_timestamp_never_raises_and_is_always_aware(value: Any) -> None:
    parsed = parse_timestamp(value)
    assert parsed is None or parsed.tzinfo is not None


@given(st.text(max_size=30) | st.floats() | st.integers(-(2**1100), 2**1100) | st.booleans())
def test_parse_float_and_int_are_finite_or_none(value: Any) -> None:
    number = parse_float(value)
    assert number is None or math.isfinite(number)
    integer = parse_int(value)
    assert integer is None or (type(integer) is int and integer == number)


def test_parse_float_of_a_huge_json_integer_is_none() -> None:
    # msgspec decodes `1000…0` (400 digits) as a Python int; float() of it overflows.
    assert parse_float(10**400) is None


def test_result_from_survives_a_huge_integer_cost() -> None:
    body = msgspec.json.Decoder(ResultBody).decode(
        b'{"status":"succeeded","cost":1' + b"0" * 400 + b"}"
    )
    assert result_from(body, "r1").cost is None


# ------------------------------------------------------------------ error code and message


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (ErrorBody(error_code=400001), 400001),
        (ErrorBody(error_code="400001"), 400001),
        (ErrorBody(error_code=" 400001 "), 400001),
        (ErrorBody(code=404001), 404001),
        (ErrorBody(error_code=400002, code=404001), 400002),
        (ErrorBody(error_code="RATE_LIMITED"), "RATE_LIMITED"),
        (ErrorBody(error_code=""), None),
        (ErrorBody(error_code="  "), None),
        (ErrorBody(error_code=True), None),
        (ErrorBody(error_code=1.5), None),
        (ErrorBody(error_code={"x": 1}), None),
        (ErrorBody(), None),
        (StatusBody(error_code=0), 0),
    ],
)
def test_error_code_of(body: Any, code: int | str | None) -> None:
    assert error_code_of(body) == code


@pytest.mark.parametrize(
    "value",
    ["²", "٣²", "9" * 5000],
    ids=["superscript-two", "arabic-indic-and-superscript", "5000-digits"],
)
def test_error_code_of_never_raises_on_digit_like_strings(value: str) -> None:
    code = error_code_of(ErrorBody(error_code=value))
    assert code is None or isinstance(code, int | str)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (ErrorBody(error_message="a", message="b", error="c", detail="d"), "a"),
        (ErrorBody(message="b", error="c", detail="d"), "b"),
        (ErrorBody(error="c", detail="d"), "c"),
        (ErrorBody(detail="d"), "d"),
        (ErrorBody(error_message="", message="b"), "b"),
        (ErrorBody(detail=[{"msg": "field required"}]), '[{"msg":"field required"}]'),
        (ErrorBody(error={"reason": "x"}), '{"reason":"x"}'),
        (ErrorBody(), None),
        (StatusBody(error_message="from a 2xx"), "from a 2xx"),
    ],
)
def test_error_message_of(body: Any, message: str | None) -> None:
    assert error_message_of(body) == message


# ------------------------------------------------------------------ decoders never crash

DECODERS: list[tuple[msgspec.json.Decoder[Any], Any]] = [
    (msgspec.json.Decoder(SubmitBody), None),
    (msgspec.json.Decoder(StatusBody), status_from),
    (msgspec.json.Decoder(ResultBody), result_from),
    (msgspec.json.Decoder(CancelBody), cancel_from),
    (msgspec.json.Decoder(ModelBody), model_info_from),
    (msgspec.json.Decoder(ErrorBody), None),
]
FIELDS = sorted(
    {
        f.encode_name
        for cls in (SubmitBody, StatusBody, ResultBody, CancelBody, ModelBody, ErrorBody)
        for f in msgspec.structs.fields(cls)
    }
)


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**1100), max_value=2**1100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
    | st.sampled_from(
        [s.value for s in State]
        + ["canceled", "https://x/a.png", "2025-06-01T00:00:00Z", "400005", "1e400"]
    )
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=16,
)
_bodies = st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, _json)) | _json


def _exercise(decoded: Any, build: Any) -> None:
    """Run a builder and touch every public property a user would read."""
    if isinstance(decoded, (ErrorBody, msgspec.Struct)):
        error_code_of(decoded)
        error_message_of(decoded)
        api_error(400, decoded, b"{}")
    if build is None:
        return
    built = build(decoded, "r1")
    if isinstance(built, rc.Result):
        assert built.request_id
        _ = (built.state.is_terminal, built.state.is_known, built.succeeded)
        assert built.cost is None or math.isfinite(built.cost)
        if built.output is not None:
            output = built.output
            _ = (output.image, output.video, output.images, output.videos, output.urls)
    elif isinstance(built, rc.Status):
        _ = (built.state.is_terminal, built.state.is_known)
        assert built.queue_position is None or isinstance(built.queue_position, int)
    elif isinstance(built, rc.CancelOutcome):
        assert isinstance(built.cancelled, bool)
        assert isinstance(built.outcome, str)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies)
@example({"status": "failed", "error": ["x", {"y": 1}]})
@example({"error_code": "400005", "output": {"a": [{"url": "https://x/1"}]}})
@example({"cost": "NaN", "queue_position": 1e308, "created_at": -1e20})
def test_any_json_value_decodes_or_fails_cleanly_and_builders_never_raise(value: Any) -> None:
    raw = msgspec.json.encode(value)
    for decoder, build in DECODERS:
        try:
            decoded = decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        _exercise(decoded, build)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64) | _json.map(msgspec.json.encode).map(lambda b: b[: len(b) // 2]))
@example(b"")
@example(b"\xff\xfe")
@example(b'{"request_id": "r1"')
def test_any_bytes_decode_or_fail_with_a_msgspec_error(raw: bytes) -> None:
    for decoder, build in DECODERS:
        try:
            decoded = decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        _exercise(decoded, build)


@given(st.text(string.printable, max_size=20))
def test_state_parsing_never_raises(raw: str) -> None:
    state = parse_state(raw)
    assert state.is_known or not state.is_terminal


def test_wire_structs_ignore_unknown_fields() -> None:
    body = msgspec.json.Decoder(StatusBody).decode(b'{"status":"in_queue","eta":12,"x":{}}')
    assert status_from(body, "r1").state is State.IN_QUEUE


def test_submit_body_needs_a_request_id() -> None:
    decoder = msgspec.json.Decoder(SubmitBody)
    for raw in (b"{}", b'{"request_id": ""}', b'{"request_id": 5}'):
        with pytest.raises(msgspec.ValidationError):
            decoder.decode(raw)
    assert decoder.decode(b'{"request_id": "r1"}').request_id == "r1"


def test_every_answer_struct_carries_the_error_fields() -> None:
    for cls in (SubmitBody, StatusBody, ResultBody, CancelBody, ModelBody, ErrorBody):
        assert issubclass(cls, _wire.Body)
        names = {f.name for f in msgspec.structs.fields(cls)}
        assert {"error_code", "error_message", "message", "detail"} <= names
