"""The one table from (HTTP status, RunComfy error_code) to exception class, row by row."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioresponses import aioresponses

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async._apierror import api_error
from runcomfy_async._errors import ResultNotReadyError, error_class
from runcomfy_async._wire import ErrorBody
from tests.conftest import API, VirtualTime

KEY = "sk-canary-error-table-3c1f"
STATUS = f"{API}/v1/requests/r1/status"

# (HTTP status, error_code as received, class a user catches)
TABLE: list[tuple[int, int | str | None, type[rc.APIError]]] = [
    # every documented RunComfy error_code, on the status it usually comes with
    (400, 400001, rc.BadRequestError),
    (400, 400002, rc.InsufficientBalanceError),
    (400, 400004, rc.AuthenticationError),
    (400, 400005, ResultNotReadyError),
    (403, 403001, rc.PermissionDeniedError),
    (404, 404001, rc.NotFoundError),
    # every mapped HTTP status, no error_code
    (400, None, rc.BadRequestError),
    (401, None, rc.AuthenticationError),
    (402, None, rc.InsufficientBalanceError),
    (403, None, rc.PermissionDeniedError),
    (404, None, rc.NotFoundError),
    (408, None, rc.ServerError),
    (422, None, rc.BadRequestError),
    (429, None, rc.RateLimitError),
    # 5xx
    (500, None, rc.ServerError),
    (502, None, rc.ServerError),
    (503, None, rc.ServerError),
    (504, None, rc.ServerError),
    (599, None, rc.ServerError),
    # other 4xx
    (405, None, rc.BadRequestError),
    (409, None, rc.BadRequestError),
    (410, None, rc.BadRequestError),
    (413, None, rc.BadRequestError),
    (451, None, rc.BadRequestError),
    # an unknown code falls back to the status
    (400, 999999, rc.BadRequestError),
    (404, "E_GONE", rc.NotFoundError),
    (500, 123, rc.ServerError),
    # error_code wins over the status
    (200, 400004, rc.AuthenticationError),
    (200, 404001, rc.NotFoundError),
    (500, 400002, rc.InsufficientBalanceError),
    (401, 404001, rc.NotFoundError),
    (404, 403001, rc.PermissionDeniedError),
    (429, 400001, rc.BadRequestError),
    # a 2xx with an unknown code is still an error, of the base class
    (200, None, rc.APIError),
    (200, 777, rc.APIError),
]


@pytest.mark.parametrize(
    ("status_code", "error_code", "cls"),
    TABLE,
    ids=[f"{s}-{c}" for s, c, _ in TABLE],
)
def test_error_class_row(status_code: int, error_code: int | str | None, cls: type) -> None:
    assert error_class(status_code, error_code) is cls


@pytest.mark.parametrize(
    ("status_code", "error_code", "cls"),
    TABLE,
    ids=[f"{s}-{c}" for s, c, _ in TABLE],
)
def test_api_error_builds_the_row_from_an_answer_body(
    status_code: int, error_code: int | str | None, cls: type
) -> None:
    raw = json.dumps({"error_code": error_code, "error_message": "nope"}).encode()
    exc = api_error(status_code, ErrorBody(error_code=error_code, error_message="nope"), raw)
    assert type(exc) is cls
    assert exc.status_code == status_code
    assert exc.error_code == error_code
    assert exc.message == "nope"
    assert json.loads(exc.body) == {"error_code": error_code, "error_message": "nope"}


@pytest.mark.parametrize(
    ("body", "cls", "code"),
    [
        (ErrorBody(error_code="400002"), rc.InsufficientBalanceError, 400002),
        (ErrorBody(error_code=" 404001 "), rc.NotFoundError, 404001),
        (ErrorBody(code=403001), rc.PermissionDeniedError, 403001),
        (ErrorBody(code="400004"), rc.AuthenticationError, 400004),
        (ErrorBody(error_code=True), rc.BadRequestError, None),
        (ErrorBody(error_code=""), rc.BadRequestError, None),
        (ErrorBody(error_code=[400002]), rc.BadRequestError, None),
    ],
)
def test_error_code_is_read_from_either_field_and_digit_strings(
    body: ErrorBody, cls: type, code: int | None
) -> None:
    exc = api_error(400, body, b"{}")
    assert type(exc) is cls
    assert exc.error_code == code


def test_result_not_ready_is_a_bad_request_for_whoever_catches_it() -> None:
    assert issubclass(ResultNotReadyError, rc.BadRequestError)


def test_the_tree_matches_the_documented_hierarchy() -> None:
    assert issubclass(rc.PermissionDeniedError, rc.AuthenticationError)
    assert issubclass(rc.RequestCancelledError, rc.RequestFailedError)
    assert issubclass(rc.TransportTimeoutError, rc.TransportError)
    for _, _, cls in TABLE:
        assert issubclass(cls, rc.APIError)
        assert issubclass(cls, rc.RunComfyError)
    for cls, builtin in [
        (rc.NotFoundError, LookupError),
        (rc.WaitTimeoutError, TimeoutError),
        (rc.TransportTimeoutError, TimeoutError),
        (rc.InvalidInputError, ValueError),
        (rc.ConfigurationError, ValueError),
    ]:
        assert issubclass(cls, builtin)
        assert issubclass(cls, rc.RunComfyError)


def test_message_falls_back_to_the_status_and_the_body_is_truncated() -> None:
    raw = b"<html>" + b"x" * 10_000 + b"</html>"
    exc = api_error(502, None, raw)
    assert type(exc) is rc.ServerError
    assert exc.message == "RunComfy answered HTTP 502"
    assert str(exc) == "RunComfy answered HTTP 502 (HTTP 502)"
    assert len(exc.body) < 2_100
    assert exc.body.startswith("<html>xxx")


# ------------------------------------------------------------------ through the client


@pytest.fixture
async def client(vt: VirtualTime) -> AsyncIterator[rc.Client]:
    async with rc.Client(
        api_key=KEY, base_url=API, sleep=vt.sleep, clock=vt.clock, rng=random.Random(5)
    ) as c:
        yield c


@pytest.mark.parametrize(
    ("status_code", "body", "cls", "error_code", "message", "builtin"),
    [
        (
            404,
            {"error_code": 404001, "error_message": "Request not found or expired"},
            rc.NotFoundError,
            404001,
            "Request not found or expired",
            LookupError,
        ),
        (
            400,
            {"code": "400002", "message": "Insufficient balance"},
            rc.InsufficientBalanceError,
            400002,
            "Insufficient balance",
            Exception,
        ),
        (
            200,
            {"error_code": 400004, "error_message": "Token expired"},
            rc.AuthenticationError,
            400004,
            "Token expired",
            Exception,
        ),
        (
            403,
            {"detail": "This key may not use this model"},
            rc.PermissionDeniedError,
            None,
            "This key may not use this model",
            Exception,
        ),
        (
            418,
            {"error": {"reason": "teapot"}},
            rc.BadRequestError,
            None,
            '{"reason":"teapot"}',
            Exception,
        ),
    ],
)
async def test_client_raises_the_tables_class_with_readable_details(
    client: rc.Client,
    status_code: int,
    body: dict[str, Any],
    cls: type[rc.APIError],
    error_code: int | None,
    message: str,
    builtin: type[BaseException],
) -> None:
    with aioresponses() as m:
        m.get(STATUS, status=status_code, body=json.dumps(body))
        with pytest.raises(cls) as caught:
            await client.status("r1")
    exc = caught.value
    assert type(exc) is cls
    assert isinstance(exc, rc.RunComfyError)
    assert isinstance(exc, builtin)
    assert exc.status_code == status_code
    assert exc.error_code == error_code
    assert exc.message == message
    code = f", error_code {error_code}" if error_code is not None else ""
    about = (rc.NotFoundError, rc.PermissionDeniedError, rc.BadRequestError)
    if isinstance(exc, about):  # an error about the one request names it
        assert exc.request_id == "r1"
        assert str(exc) == f"request r1: {message} (HTTP {status_code}{code})"
    else:  # about the key or the service
        assert exc.request_id is None
        assert str(exc) == f"{message} (HTTP {status_code}{code})"
    assert KEY not in str(exc) + repr(exc) + exc.body


async def test_client_rate_limit_error_carries_retry_after(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        m.get(STATUS, status=429, headers={"Retry-After": "2"}, body="{}", repeat=True)
        with pytest.raises(rc.RateLimitError) as caught:
            await client.status("r1")
    assert caught.value.retry_after == 2.0
    assert caught.value.status_code == 429
    assert str(caught.value) == "RunComfy answered HTTP 429 Too Many Requests (HTTP 429)"


async def test_invalid_input_error_is_a_value_error_raised_before_any_call(
    client: rc.Client,
) -> None:
    with aioresponses() as m:
        with pytest.raises(ValueError, match="prompt") as caught:
            await client.submit(models.Wan22TextToImage(prompt="x" * 801))
        assert not m.requests
    assert isinstance(caught.value, rc.InvalidInputError)
    assert isinstance(caught.value, rc.RunComfyError)
    assert caught.value.field == "prompt"


async def test_wait_timeout_error_is_a_timeout_error(client: rc.Client, vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, body=json.dumps({"status": "in_progress"}), repeat=True)
        result = f"{STATUS.removesuffix('status')}result?include_cost=true"
        m.get(result, body=json.dumps({"status": "in_progress"}), repeat=True)
        with pytest.raises(TimeoutError) as caught:
            await client.wait("r1", timeout=5)
    assert isinstance(caught.value, rc.WaitTimeoutError)
    assert isinstance(caught.value, rc.RunComfyError)
    assert caught.value.request_id == "r1"
    assert "r1" in str(caught.value)


async def test_not_found_error_is_a_lookup_error(client: rc.Client) -> None:
    with aioresponses() as m:
        m.get(STATUS, status=404, body="not here", content_type="text/plain")
        with pytest.raises(LookupError) as caught:
            await client.status("r1")
    assert isinstance(caught.value, rc.NotFoundError)
    assert caught.value.error_code is None
    assert caught.value.body == "not here"
