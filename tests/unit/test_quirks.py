"""Every recorded RunComfy answer (tests/payloads) served to a real Client: what a user sees."""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aioresponses import aioresponses
from yarl import URL

import runcomfy_async as rc
from runcomfy_async import _wire, models
from tests.conftest import API, VirtualTime

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"
RID = "3f9e2b1c-7a4d-4e8b-9c2a-1d5e6f7a8b9c"
STATUS = f"{API}/v1/requests/{RID}/status"
RESULT = f"{API}/v1/requests/{RID}/result?include_cost=true"
RESULT_NO_COST = f"{API}/v1/requests/{RID}/result"
CANCEL = f"{API}/v1/requests/{RID}/cancel"
WAN = "wan-ai/wan-2-2/text-to-image"
RUNWAY = "runwayml/runway-gen-3-alpha/turbo/image-to-video"
CDN = "https://cdn.runcomfy.net/outputs/3f9e"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def body_of(name: str) -> Any:
    return payload(name)["body"]


def serve(m: aioresponses, method: str, url: str, name: str, *, repeat: bool = False) -> None:
    """Register the recorded answer `name` for one call (or every call, with `repeat`)."""
    recorded = payload(name)
    kwargs: dict[str, Any] = {
        "status": recorded["http_status"],
        "headers": recorded.get("headers"),
        "repeat": repeat,
    }
    if "body_text" in recorded:
        kwargs["body"] = recorded["body_text"]
    else:
        kwargs["body"] = json.dumps(recorded["body"])
    m.add(url, method, **kwargs)


def calls(m: aioresponses, method: str, url: str) -> int:
    return sum(len(v) for (meth, u), v in m.requests.items() if meth == method and str(u) == url)


@pytest.fixture
async def client(vt: VirtualTime) -> AsyncIterator[rc.Client]:
    async with rc.Client(
        api_key="test-key",
        base_url="https://model-api.runcomfy.net",
        sleep=vt.sleep,
        clock=vt.clock,
        rng=random.Random(3),
    ) as c:
        yield c


# ------------------------------------------------------------------ the payload files


def test_every_payload_file_is_well_formed_and_listed_in_the_readme() -> None:
    readme = (PAYLOADS / "README.md").read_text()
    listed = set(
        re.findall(
            r"^\| `([a-z0-9_]+\.json)` \| \[(?:doc|official|community|inferred)\]", readme, re.M
        )
    )
    files = {p.name for p in PAYLOADS.glob("*.json")}
    assert files == listed
    for name in files:
        recorded = json.loads((PAYLOADS / name).read_text())
        assert isinstance(recorded["http_status"], int), name
        assert ("body" in recorded) != ("body_text" in recorded), name
        assert set(recorded) <= {"http_status", "headers", "body", "body_text"}, name


# ------------------------------------------------------------------ submit


@pytest.mark.parametrize("name", ["submit_200_full", "submit_202_minimal"])
async def test_submit_accepts_any_2xx_with_or_without_urls(client: rc.Client, name: str) -> None:
    with aioresponses() as m:
        serve(m, "POST", f"{API}/v1/models/{WAN}", name)
        request = await client.submit(WAN, {"prompt": "a red fox"})
        assert calls(m, "POST", f"{API}/v1/models/{WAN}") == 1
    assert request.request_id == RID
    assert request.model_id == WAN


async def test_submit_sends_the_inputs_unwrapped_with_bearer_auth(client: rc.Client) -> None:
    inputs = models.RunwayGen3TurboImageToVideo(
        prompt_text="fox", prompt_image="https://x.test/a.png"
    )
    with aioresponses() as m:
        serve(m, "POST", f"{API}/v1/models/{RUNWAY}", "submit_200_full")
        request = await client.submit(inputs)
        (call,) = m.requests[("POST", URL(f"{API}/v1/models/{RUNWAY}"))]
    assert request.model_id == RUNWAY
    assert json.loads(call.kwargs["data"]) == {
        "promptText": "fox",
        "promptImage": "https://x.test/a.png",
    }
    assert call.kwargs["headers"]["Authorization"] == "Bearer test-key"
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


# ------------------------------------------------------------------ status


@pytest.mark.parametrize(
    ("name", "state", "terminal", "queue_position"),
    [
        ("status_in_queue", rc.State.IN_QUEUE, False, 3),
        ("status_queue_position_string", rc.State.IN_QUEUE, False, 12),
        ("status_in_progress", rc.State.IN_PROGRESS, False, None),
        ("status_completed", rc.State.COMPLETED, True, None),
        ("status_cancelled", rc.State.CANCELLED, True, None),
        ("status_succeeded", rc.State.SUCCEEDED, True, None),
        ("status_canceled_us_spelling", rc.State.CANCELLED, True, None),
        ("status_failed_with_error", rc.State.FAILED, True, None),
    ],
)
async def test_status_reads_every_documented_state(
    client: rc.Client, name: str, state: rc.State, terminal: bool, queue_position: int | None
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, name)
        status = await client.status(RID)
    assert status.state is state
    assert status.state.is_terminal is terminal
    assert status.state.is_known
    assert status.queue_position == queue_position
    assert status.request_id == RID


async def test_status_failed_is_a_state_with_its_error_not_an_exception(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_failed_with_error")
        status = await client.status(RID)
    assert status.state is rc.State.FAILED
    assert status.error == "Workflow execution failed: CUDA out of memory"
    assert status.request_id == RID  # the mock's answer has no request_id: ours is kept


async def test_status_unknown_state_is_carried_and_not_terminal(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_unknown_state")
        status = await client.status(RID)
    assert status.state.value == "preprocessing"
    assert status.state == "preprocessing"
    assert not status.state.is_terminal
    assert not status.state.is_known


# ------------------------------------------------------------------ result


async def test_result_succeeded_gives_outputs_and_timestamps(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, "result_succeeded")
        result = await client.result(RID)
    assert result.state is rc.State.SUCCEEDED
    assert result.succeeded
    assert result.output is not None
    assert result.output.image == f"{CDN}/a.png"
    assert result.output.videos == [f"{CDN}/a.mp4", f"{CDN}/b.mp4"]
    assert result.output.video is None  # `videos` is a list; `video` is the single-URL key
    assert result.output.images == []
    assert result.output.urls == [f"{CDN}/a.png", f"{CDN}/a.mp4", f"{CDN}/b.mp4"]
    assert result.created_at == datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert result.finished_at == datetime(2025, 6, 1, 12, 0, 42, tzinfo=UTC)
    assert result.error is None


async def test_result_asks_for_the_cost_and_parses_it_in_usd(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, "result_succeeded_with_cost")
        result = await client.result(RID)
        assert calls(m, "GET", RESULT) == 1
    assert result.cost == pytest.approx(0.035)
    assert result.output is not None
    assert result.output.images == [f"{CDN}/0.png", f"{CDN}/1.png"]


async def test_result_without_include_cost_sends_no_query(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT_NO_COST, "result_succeeded")
        result = await client.result(RID, include_cost=False)
        assert calls(m, "GET", RESULT_NO_COST) == 1
    assert result.cost is None


async def test_a_base_url_with_a_path_keeps_it_in_every_call(vt: VirtualTime) -> None:
    # A gateway in front of RunComfy: its path prefix stays, the ids stay quoted.
    gateway = "https://gateway.example.com/runcomfy/"
    rid = "r/1 x"
    submit = f"{gateway}v1/models/wan-ai/wan-2-2/text-to-image"
    status = f"{gateway}v1/requests/r%2F1%20x/status"
    result = f"{gateway}v1/requests/r%2F1%20x/result?include_cost=true"
    async with rc.Client(
        api_key="test-key", base_url=gateway, sleep=vt.sleep, clock=vt.clock
    ) as client:
        with aioresponses() as m:
            m.post(submit, payload={"request_id": rid})
            serve(m, "GET", status, "status_in_progress")
            serve(m, "GET", result, "result_succeeded")
            request = await client.submit(models.Wan22TextToImage(prompt="a fox"))
            assert (await client.status(request)).state is rc.State.IN_PROGRESS
            assert (await client.result(request)).succeeded
            seen = [str(url) for (_, url) in m.requests]
    assert seen == [submit, status, result]


async def test_result_completed_with_output_is_a_success(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, "result_completed_as_success")
        result = await client.result(RID)
    assert result.state is rc.State.COMPLETED
    assert result.succeeded
    assert result.output is not None
    assert result.output.video == f"{CDN}/clip.mp4"
    assert result.output.urls == [f"{CDN}/clip.mp4"]


@pytest.mark.parametrize(
    "name",
    ["result_failed_string_error", "result_failed_object_error", "result_failed_list_error"],
)
async def test_result_failed_is_returned_with_the_servers_error_untouched(
    client: rc.Client, name: str
) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, name)
        result = await client.result(RID)  # reading a state never raises
    assert result.state is rc.State.FAILED
    assert result.state.is_terminal
    assert result.error == body_of(name)["error"]
    assert result.output is None
    assert not result.succeeded


async def test_result_cancelled_is_a_state(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, "result_cancelled")
        result = await client.result(RID)
    assert result.state is rc.State.CANCELLED
    assert not result.succeeded


@pytest.mark.parametrize(
    ("name", "state"),
    [("result_in_progress_200", rc.State.IN_PROGRESS), ("result_in_queue_200", rc.State.IN_QUEUE)],
)
async def test_result_of_an_unfinished_request_is_its_current_state(
    client: rc.Client, name: str, state: rc.State
) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, name)
        result = await client.result(RID)
    assert result.state is state
    assert not result.state.is_terminal
    assert result.output is None
    assert not result.succeeded


async def test_result_not_ready_400005_reports_the_state_from_status(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, "result_not_ready_400005")
        serve(m, "GET", STATUS, "status_in_queue")
        result = await client.result(RID)
        assert calls(m, "GET", RESULT) == 1  # a 400 is not retried
        assert calls(m, "GET", STATUS) == 1
    assert result.state is rc.State.IN_QUEUE
    assert result.request_id == RID
    assert result.output is None


async def test_result_nested_outputs_lists_every_url_in_order_and_keeps_unknown_keys(
    client: rc.Client,
) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, "result_nested_outputs")
        result = await client.result(RID)
    output = result.output
    assert output is not None
    assert output.urls == [
        f"{CDN}/track.wav",
        f"{CDN}/cover.png",
        f"{CDN}/f0.png",
        f"{CDN}/f1.png",
        f"{CDN}/mask.png",
    ]
    assert output.image == f"{CDN}/cover.png"
    assert output["audio"] == f"{CDN}/track.wav"
    assert output.get("mask") == {"url": f"{CDN}/mask.png", "width": 1024, "height": 1024}
    assert output.get("seed") == 42
    assert output.get("caption") == "a red fox in snow"
    assert output.get("missing", "default") == "default"
    assert output.data == body_of("result_nested_outputs")["output"]
    assert output.images == []
    assert output.videos == []
    assert output.video is None


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    ("name", "created", "finished"),
    [
        (
            "timestamps_z",
            datetime(2025, 6, 1, 12, 0, tzinfo=UTC),
            datetime(2025, 6, 1, 12, 0, 42, 500000, tzinfo=UTC),
        ),
        (
            "timestamps_offset",
            datetime(2025, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2025, 6, 1, 12, 0, 42, tzinfo=UTC),
        ),
        (
            "timestamps_no_zone",
            datetime(2025, 6, 1, 12, 0, tzinfo=UTC),
            datetime(2025, 6, 1, 12, 0, 42, 123456, tzinfo=UTC),
        ),
        (
            "timestamps_epoch",
            datetime(2025, 6, 1, 12, 0, tzinfo=UTC),
            datetime(2025, 6, 1, 12, 0, 42, 500000, tzinfo=UTC),
        ),
        ("timestamps_garbage", None, None),
        ("timestamps_absent", None, None),
    ],
)
async def test_timestamps_are_parsed_leniently_into_aware_datetimes(
    client: rc.Client, name: str, created: datetime | None, finished: datetime | None
) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, name)
        result = await client.result(RID)
    assert result.created_at == created
    assert result.finished_at == finished
    for stamp in (result.created_at, result.finished_at):
        assert stamp is None or stamp.tzinfo is not None
    assert result.succeeded  # an unreadable timestamp never costs the output


# ------------------------------------------------------------------ errors in answers


@pytest.mark.parametrize(
    ("name", "cls", "status_code", "error_code", "message"),
    [
        (
            "error_200_with_error_code",
            rc.AuthenticationError,
            200,
            400004,
            "Invalid or expired token",
        ),
        ("error_400001_invalid_model", rc.BadRequestError, 400, 400001, "Invalid model id"),
        ("error_400002_insufficient_balance", rc.InsufficientBalanceError, 400, 400002, "balance"),
        ("error_400004_bad_token", rc.AuthenticationError, 400, 400004, "expired token"),
        ("error_403001_permission_denied", rc.PermissionDeniedError, 403, 403001, "Permission"),
        ("error_404001_not_found", rc.NotFoundError, 404, 404001, "not found or expired"),
        ("error_code_field", rc.NotFoundError, 404, 404001, "Request not found"),
        ("error_message_field", rc.BadRequestError, 400, 400001, "Unknown model"),
        ("error_error_field", rc.PermissionDeniedError, 403, None, "Forbidden"),
        ("error_detail_field", rc.BadRequestError, 422, None, "field required"),
        ("error_code_digit_string", rc.InsufficientBalanceError, 400, 400002, "balance"),
        ("error_401_plain_text", rc.AuthenticationError, 401, None, "HTTP 401"),
        ("error_402_balance", rc.InsufficientBalanceError, 402, None, "top up"),
    ],
)
async def test_error_answers_raise_the_mapped_class_with_code_and_message(
    client: rc.Client,
    name: str,
    cls: type[rc.APIError],
    status_code: int,
    error_code: int | None,
    message: str,
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, name)
        with pytest.raises(cls) as caught:
            await client.status(RID)
        assert calls(m, "GET", STATUS) == 1  # none of these is worth a retry
    exc = caught.value
    assert type(exc) is cls
    assert exc.status_code == status_code
    assert exc.error_code == error_code
    assert message in exc.message
    assert message in str(exc)
    assert f"HTTP {status_code}" in str(exc)
    recorded = payload(name)  # the raw answer is kept for the user to inspect
    if "body_text" in recorded:
        assert exc.body == recorded["body_text"]
    else:
        assert json.loads(exc.body) == recorded["body"]
    assert "test-key" not in str(exc) + repr(exc) + exc.body


async def test_http_200_with_error_code_on_submit_raises_not_submission_unknown(
    client: rc.Client,
) -> None:
    with aioresponses() as m:
        serve(m, "POST", f"{API}/v1/models/{WAN}", "error_400002_insufficient_balance")
        with pytest.raises(rc.InsufficientBalanceError):
            await client.submit(WAN, {"prompt": "fox"})
        serve(m, "POST", f"{API}/v1/models/{WAN}", "error_200_with_error_code")
        with pytest.raises(rc.AuthenticationError) as caught:
            await client.submit(WAN, {"prompt": "fox"})
    assert caught.value.status_code == 200


async def test_rate_limit_is_retried_after_retry_after_then_raised(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "error_429_retry_after", repeat=True)
        with pytest.raises(rc.RateLimitError) as caught:
            await client.status(RID)
        attempts = calls(m, "GET", STATUS)
    assert caught.value.retry_after == 7.0
    assert caught.value.status_code == 429
    # 429s are not failures: they are waited out for the policy's patience, then raised.
    patience = rc.RetryPolicy().rate_limit_patience
    assert attempts > rc.RetryPolicy().max_attempts
    assert vt.now >= 7.0 * (attempts - 1)  # every retry waited at least Retry-After
    assert patience - 2 * 7.0 <= vt.now <= patience


async def test_server_error_with_an_html_page_is_retried_then_raised_readably(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "error_500_html")
        serve(m, "GET", STATUS, "status_in_progress")
        status = await client.status(RID)  # a GET is safe to retry after a 5xx
        assert calls(m, "GET", STATUS) == 2
    assert status.state is rc.State.IN_PROGRESS
    with aioresponses() as m:
        serve(m, "GET", STATUS, "error_500_html", repeat=True)
        with pytest.raises(rc.ServerError) as caught:
            await client.status(RID)
    assert caught.value.status_code == 500
    assert "HTTP 500" in str(caught.value)
    assert "Internal Server Error" in caught.value.body


# ------------------------------------------------------------------ wait()


async def test_wait_polls_status_through_the_queue_then_result_once_running(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_in_queue")
        serve(m, "GET", STATUS, "status_in_progress")
        serve(m, "GET", RESULT, "result_succeeded")  # its end and its output in one call
        result = await client.wait(RID, timeout=300)
        assert calls(m, "GET", STATUS) == 2
        assert calls(m, "GET", RESULT) == 1
    assert result.succeeded
    assert result.output is not None
    assert result.output.image == f"{CDN}/a.png"
    assert len(vt.sleeps) == 2
    assert all(0 < d <= 300 for d in vt.sleeps)


async def test_a_running_request_answered_400005_on_result_is_polled_there_until_done(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_in_progress")
        serve(m, "GET", RESULT, "result_not_ready_400005")
        serve(m, "GET", RESULT, "result_not_ready_400005")
        serve(m, "GET", RESULT, "result_succeeded")
        result = await client.wait(RID, timeout=300)
        assert calls(m, "GET", STATUS) == 1  # 400005 is "still running": no /status to ask
        assert calls(m, "GET", RESULT) == 3
    assert result.succeeded
    assert len(vt.sleeps) == 3  # four polls, the first at once


OTHER = "9a8b7c6d-0000-4e8b-9c2a-1d5e6f7a8b9c"
OTHER_STATUS = f"{API}/v1/requests/{OTHER}/status"
OTHER_RESULT = f"{API}/v1/requests/{OTHER}/result?include_cost=true"


async def told_states_on_result(m: aioresponses, client: rc.Client) -> None:
    """Wait for RID, whose /result says `in_progress` (200) while it runs, as documented."""
    serve(m, "GET", STATUS, "status_in_progress")
    serve(m, "GET", RESULT, "result_in_progress_200")
    serve(m, "GET", RESULT, "result_succeeded")
    assert (await client.wait(RID, timeout=300)).succeeded


async def test_once_result_told_an_unfinished_state_a_first_poll_reads_result(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        await told_states_on_result(m, client)
        m.add(OTHER_RESULT, "GET", payload={"status": "succeeded", "output": {"image": "x"}})
        assert (await client.wait(OTHER, timeout=300)).succeeded
        assert calls(m, "GET", OTHER_STATUS) == 0  # finished by its first poll: one call
        assert calls(m, "GET", OTHER_RESULT) == 1


async def test_a_first_poll_on_result_that_finds_it_queued_goes_on_with_status(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        await told_states_on_result(m, client)
        serve(m, "GET", OTHER_RESULT, "result_in_queue_200")
        m.add(OTHER_STATUS, "GET", payload={"status": "in_queue", "queue_position": 3})
        m.add(OTHER_STATUS, "GET", payload={"status": "in_progress"})
        m.add(OTHER_RESULT, "GET", payload={"status": "succeeded", "output": {"image": "x"}})
        assert (await client.wait(OTHER, timeout=300)).succeeded
        # queued: its queue position is read on /status; running: /result again
        assert calls(m, "GET", OTHER_STATUS) == 2
        assert calls(m, "GET", OTHER_RESULT) == 2


async def test_wait_on_completed_then_failed_raises_with_the_servers_error(
    client: rc.Client,
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_completed")
        serve(m, "GET", RESULT, "result_failed_object_error")
        with pytest.raises(rc.RequestFailedError) as caught:
            await client.wait(RID, timeout=60)
    exc = caught.value
    assert type(exc) is rc.RequestFailedError
    assert exc.request_id == RID
    assert exc.error == body_of("result_failed_object_error")["error"]
    assert RID in str(exc)


async def test_wait_on_the_mocks_failed_status_reads_result_and_raises(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_failed_with_error")
        serve(m, "GET", RESULT, "result_failed_string_error")
        with pytest.raises(rc.RequestFailedError) as caught:
            await client.wait(RID)
        assert calls(m, "GET", RESULT) == 1
    assert caught.value.error == "Image could not be downloaded from promptImage"


async def test_wait_on_cancelled_raises_request_cancelled(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_canceled_us_spelling")
        serve(m, "GET", RESULT, "result_cancelled")
        with pytest.raises(rc.RequestCancelledError) as caught:
            await client.wait(RID)
    assert caught.value.request_id == RID
    assert isinstance(caught.value, rc.RequestFailedError)


async def test_wait_keeps_polling_through_an_unknown_state(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_unknown_state")
        serve(m, "GET", STATUS, "status_unknown_state")
        serve(m, "GET", STATUS, "status_succeeded")
        serve(m, "GET", RESULT, "result_succeeded")
        result = await client.wait(RID)
        assert calls(m, "GET", STATUS) == 3
    assert result.succeeded
    assert len(vt.sleeps) == 2


async def test_wait_takes_400005_after_completed_as_not_ready_yet(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_completed")
        serve(m, "GET", RESULT, "result_not_ready_400005")
        serve(m, "GET", STATUS, "status_completed")  # result() asks /status on 400005
        serve(m, "GET", RESULT, "result_completed_as_success")
        result = await client.wait(RID)
        assert calls(m, "GET", RESULT) == 2
    assert result.succeeded
    assert result.output is not None
    assert result.output.video == f"{CDN}/clip.mp4"


async def test_wait_times_out_in_virtual_time_and_the_request_lives_on(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_in_queue", repeat=True)
        with pytest.raises(rc.WaitTimeoutError) as caught:
            await client.wait(RID, timeout=30)
        assert calls(m, "POST", CANCEL) == 0  # cancel_on_timeout defaults to False
    exc = caught.value
    assert isinstance(exc, TimeoutError)
    assert exc.request_id == RID
    assert exc.timeout == 30
    assert exc.cancel_outcome is None
    assert 30 <= vt.now <= 31
    assert sum(vt.sleeps) == pytest.approx(vt.now)


async def test_wait_cancel_on_timeout_reports_the_cancel_outcome(
    client: rc.Client, vt: VirtualTime
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_in_queue", repeat=True)
        serve(m, "POST", CANCEL, "cancel_cancelled_202")
        with pytest.raises(rc.WaitTimeoutError) as caught:
            await client.wait(RID, timeout=10, cancel_on_timeout=True)
        assert calls(m, "POST", CANCEL) == 1
    assert caught.value.cancel_outcome is not None
    assert caught.value.cancel_outcome.cancelled


# ------------------------------------------------------------------ cancel


@pytest.mark.parametrize(
    ("name", "cancelled", "outcome"),
    [
        ("cancel_cancelled_202", True, "cancelled"),
        ("cancel_not_cancellable", False, "not_cancellable"),
        ("cancel_cancellation_requested", False, "cancellation_requested"),
        ("cancel_status_only", True, "cancelled"),
    ],
)
async def test_cancel_reports_the_outcome_and_never_raises_for_it(
    client: rc.Client, name: str, cancelled: bool, outcome: str
) -> None:
    with aioresponses() as m:
        serve(m, "POST", CANCEL, name)
        result = await client.cancel(RID)
    assert result.cancelled is cancelled
    assert result.outcome == outcome
    assert result.request_id == RID


# ------------------------------------------------------------------ catalog


async def test_model_info_reads_the_catalog_entry_with_its_schema_quirks(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", f"{API}/v1/models/{RUNWAY}", "catalog_entry")
        info = await client.model_info(RUNWAY)
    assert info.model_id == RUNWAY
    assert info.name == "Runway Gen-3 Alpha Turbo"
    assert info.category == "image-to-video"
    assert info.base_price_usd == pytest.approx(0.25)
    assert info.price_unit == "video"
    assert info.input_schema is not None
    props = info.input_schema["properties"]
    assert props["guidance"]["type"] == "float"
    assert props["promptImage"]["validations"][0]["validation_rule"] == "width_pixels<"


def test_catalog_list_entries_read_as_model_infos() -> None:
    # The client has no list call yet; its entries must still read as catalog entries.
    listing = body_of("catalog_list")
    assert listing["total"] == len(listing["models"])
    decoder = msgspec.json.Decoder(_wire.ModelBody)
    infos = [
        _wire.model_info_from(decoder.decode(json.dumps(entry)), "?") for entry in listing["models"]
    ]
    assert [i.model_id for i in infos] == [RUNWAY, WAN]
    assert infos[1].base_price_usd == pytest.approx(0.03)  # price sent as a string
    assert all(i.input_schema for i in infos)


# ------------------------------------------------------------------ answers no user should crash on


async def test_an_error_code_of_unicode_digits_is_still_an_api_error(client: rc.Client) -> None:
    with aioresponses() as m:
        m.get(STATUS, status=400, body=json.dumps({"error_code": "²", "error_message": "x"}))
        with pytest.raises(rc.BadRequestError):
            await client.status(RID)


async def test_a_huge_integer_cost_does_not_crash_result(client: rc.Client) -> None:
    huge = '{"status": "succeeded", "output": {"image": "https://x/a.png"}, "cost": 1' + "0" * 400
    with aioresponses() as m:
        m.get(RESULT, body=huge + "}")
        result = await client.result(RID)
    assert result.succeeded
    assert result.cost is None


async def test_a_deeply_nested_answer_is_an_unexpected_response(client: rc.Client) -> None:
    deep = '{"request_id": "r", "status": ' + "[" * 5000 + "]" * 5000 + "}"
    with aioresponses() as m:
        m.get(STATUS, body=deep, repeat=True)
        with pytest.raises(rc.RunComfyError):
            await client.status(RID)
