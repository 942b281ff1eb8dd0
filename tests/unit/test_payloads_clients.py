"""The answers RunComfy's own clients showed (issue 19), as recorded payloads, read by a Client."""

from __future__ import annotations

import json
import logging
import re

import msgspec
import pytest
from aioresponses import aioresponses

import runcomfy_async as rc
from runcomfy_async import _wire, models
from tests.conftest import API
from tests.unit.test_quirks import (
    CANCEL,
    CDN,
    RESULT,
    RID,
    STATUS,
    WAN,
    body_of,
    calls,
    client,
    serve,
)

__all__ = ["client"]  # the fixture, shared with test_quirks

FLUX = "blackforestlabs/flux-1-dev/text-to-image"
UNKNOWN = "acme/nothing/text-to-image"


@pytest.mark.parametrize(
    ("name", "state", "queue_position", "instance_id"),
    [
        ("status_pending", rc.State.IN_QUEUE, None, None),
        ("status_waiting", rc.State.IN_QUEUE, 2, None),
        ("status_starting", rc.State.IN_QUEUE, None, "i-0a1b2c3d"),
        ("status_processing_instance_id", rc.State.IN_PROGRESS, None, "i-0a1b2c3d"),
        ("status_in_progress_instance_id", rc.State.IN_PROGRESS, None, "gpu-worker-17"),
    ],
)
async def test_the_waiting_and_running_words_of_runcomfys_clients_are_known_states(
    client: rc.Client,
    name: str,
    state: rc.State,
    queue_position: int | None,
    instance_id: str | None,
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, name)
        status = await client.status(RID)
    assert status.state is state
    assert status.state.is_known
    assert not status.state.is_terminal
    assert (status.queue_position, status.instance_id) == (queue_position, instance_id)


async def test_watch_shows_pending_and_processing_as_queued_and_running(
    client: rc.Client,
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_pending")
        serve(m, "GET", STATUS, "status_processing_instance_id")
        serve(m, "GET", STATUS, "status_succeeded")
        serve(m, "GET", RESULT, "result_with_model_id")
        seen = [state async for state in client.watch(RID)]
    assert seen == [rc.State.IN_QUEUE, rc.State.IN_PROGRESS, rc.State.SUCCEEDED]


async def test_a_result_of_the_submitted_model_is_no_mismatch(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "GET", RESULT, "result_with_model_id")
        result = await client.result(rc.Request(RID, WAN, client))
    assert (result.model_id, result.submitted_model_id) == (WAN, WAN)
    assert not result.model_mismatch
    assert result.succeeded


async def test_a_result_of_another_model_is_flagged_and_logged(
    client: rc.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with aioresponses() as m, caplog.at_level(logging.WARNING, "runcomfy_async"):
        serve(m, "GET", RESULT, "result_other_model_id")
        result = await client.result(rc.Request(RID, WAN, client))
    assert result.model_id == FLUX
    assert result.submitted_model_id == WAN
    assert result.model_mismatch
    assert f"submitted to {WAN} but its result is of {FLUX}" in caplog.text
    with aioresponses() as m:  # by request_id alone the SDK cannot know what was submitted
        serve(m, "GET", RESULT, "result_other_model_id")
        bare = await client.result(RID)
    assert (bare.model_id, bare.submitted_model_id, bare.model_mismatch) == (FLUX, None, False)


async def test_wait_returns_a_result_of_another_model_flagged(
    client: rc.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with aioresponses() as m, caplog.at_level(logging.WARNING, "runcomfy_async"):
        serve(m, "GET", STATUS, "status_succeeded")
        serve(m, "GET", RESULT, "result_other_model_id")
        result = await client.wait(rc.Request(RID, WAN, client))
    assert result.model_mismatch
    assert result.output is not None
    assert result.output.image == f"{CDN}/b.png"
    assert "its result is of" in caplog.text


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("cancel_cancellation_requested", rc.State.IN_QUEUE),
        ("cancel_requested_reads_cancelled", rc.State.CANCELLED),
    ],
)
async def test_a_requested_cancel_is_reported_as_requested_not_as_cancelled(
    client: rc.Client, name: str, state: rc.State
) -> None:
    with aioresponses() as m:
        serve(m, "POST", CANCEL, name)
        outcome = await client.cancel(RID)
    assert outcome.outcome == "cancellation_requested"
    assert outcome.requested
    assert not outcome.cancelled
    assert outcome.state is state
    assert outcome.request_id == RID


async def test_a_running_request_answers_its_own_status_to_a_cancel(client: rc.Client) -> None:
    with aioresponses() as m:
        serve(m, "POST", CANCEL, "cancel_running_not_cancellable")
        outcome = await client.cancel(RID)
    assert (outcome.outcome, outcome.cancelled, outcome.requested) == (
        "not_cancellable",
        False,
        False,
    )
    assert outcome.state is rc.State.IN_PROGRESS


async def test_wait_with_cancel_on_timeout_says_a_cancel_was_only_requested(
    client: rc.Client,
) -> None:
    with aioresponses() as m:
        serve(m, "GET", STATUS, "status_in_queue", repeat=True)
        serve(m, "POST", CANCEL, "cancel_requested_reads_cancelled")
        with pytest.raises(rc.WaitTimeoutError) as caught:
            await client.wait(RID, timeout=5.0, cancel_on_timeout=True)
    assert caught.value.cancel_outcome.requested
    assert "cancellation requested" in str(caught.value)
    assert "was cancelled" not in str(caught.value)


async def test_model_info_reads_display_name_categories_and_pricing_note(
    client: rc.Client,
) -> None:
    with aioresponses() as m:
        serve(m, "GET", f"{API}/v1/models/{FLUX}", "catalog_entry_display_name")
        info = await client.model_info(FLUX)
    assert info.name == "FLUX.1 [dev] Text to Image"
    assert (info.category, info.categories) == ("text-to-image", ("text-to-image", "flux"))
    assert info.pricing_note == "Each generated image is billed as one output."
    assert (info.base_price_usd, info.price_unit) == (0.044, "output")
    estimate = rc.estimate_cost(info, [{"prompt": "a"}, {"prompt": "b", "num_images": 3}])
    assert estimate.usd == pytest.approx(4 * 0.044)
    assert (estimate.units, estimate.unit) == (4, "output")


def test_catalog_list_entries_without_schema_read_as_model_infos() -> None:
    decoder = msgspec.json.Decoder(_wire.ModelBody)
    entries = body_of("catalog_list_without_schema")["models"]
    infos = [_wire.model_info_from(decoder.decode(json.dumps(e)), "?") for e in entries]
    assert [(i.name, i.categories, i.input_schema) for i in infos] == [
        ("Wan 2.2 Text to Image", ("text-to-image",), None),
        ("Kling 2.1 Master", ("text-to-video",), None),
    ]
    assert [i.pricing_note for i in infos] == [None, "Billed per second of generated video."]


def test_name_and_category_are_read_too_and_odd_categories_are_dropped() -> None:
    body = _wire.ModelBody(name="Old", category="text-to-image", categories="not a list")
    info = _wire.model_info_from(body, "a/b")
    assert (info.name, info.category, info.categories) == (
        "Old",
        "text-to-image",
        ("text-to-image",),
    )
    body = _wire.ModelBody(display_name="New", name="Old", categories=["", 3, "x", "x", " y "])
    info = _wire.model_info_from(body, "a/b")
    assert (info.name, info.category, info.categories) == ("New", "x", ("x", "y"))


@pytest.mark.parametrize("name", ["error_404_unknown_model", "error_400001_invalid_model"])
async def test_an_unknown_model_is_refused_before_any_submit_either_way(
    client: rc.Client, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{API}/v1/models/{UNKNOWN}"
    listing = re.compile(re.escape(f"{API}/v1/models?") + ".*")
    catalog = {"models": [{"model_id": "acme/nothing/text-to-video"}, {"id": WAN}], "total": 2}
    with aioresponses() as m, caplog.at_level(logging.INFO, "runcomfy_async"):
        serve(m, "GET", url, name)
        m.get(listing, payload=catalog)
        for _ in range(2):
            with pytest.raises(rc.UnknownModelError) as caught:
                await client.submit(UNKNOWN, {"prompt": "a"})
        assert calls(m, "POST", url) == 0  # refused before the submit
        assert calls(m, "GET", url) == 1  # "unknown model" is learnt once, not an outage
    assert caught.value.status_code in (400, 404)
    assert caught.value.suggestions == ("acme/nothing/text-to-video",)
    assert str(caught.value).startswith(
        f"unknown model {UNKNOWN}: not in RunComfy's catalog "
        "(did you mean acme/nothing/text-to-video?)"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with aioresponses() as m:  # a catalog that cannot be listed: no suggestion, same error
        serve(m, "GET", url, name)
        with pytest.raises(rc.NotFoundError) as unlisted:
            await client.model_info(UNKNOWN)
    assert isinstance(unlisted.value, rc.UnknownModelError)
    assert unlisted.value.suggestions == ()


# ------------------------------------------------------------------ RunComfy's 64 MiB limit


def _data_uri(size: int) -> str:
    return "data:image/png;base64," + "A" * size


async def test_a_submit_over_64_mib_is_refused_before_anything_is_sent(client: rc.Client) -> None:
    big = _data_uri(64 * 1024 * 1024)
    url = f"{API}/v1/models/{WAN}"
    with aioresponses() as m:
        serve(m, "POST", url, "submit_200_full")
        with pytest.raises(rc.InvalidInputError) as caught:
            await client.submit(WAN, {"prompt": "a", "image": big})
        assert calls(m, "POST", url) == 0
        assert not m.requests  # not even the catalog was asked
    message = str(caught.value)
    assert "64.0 MiB" in message
    body = json.dumps({"prompt": "a", "image": big}, separators=(",", ":"))
    assert f"({len(body):,} bytes)" in message  # the whole body's size
    assert "64 MiB (67,108,864 bytes)" in message
    assert "largest input is image" in message
    assert "data: URI" in message
    assert caught.value.field == "image"


async def test_a_typed_input_over_64_mib_is_refused_naming_its_field(client: rc.Client) -> None:
    inputs = models.RunwayGen3TurboImageToVideo(
        prompt_text="waves", prompt_image=_data_uri(70 * 1024 * 1024)
    )
    with aioresponses() as m, pytest.raises(rc.InvalidInputError) as caught:
        await client.submit(inputs)
    assert not m.requests
    assert "70.0 MiB" in str(caught.value)
    assert "promptImage" in str(caught.value)
    assert caught.value.field == "prompt_image"


async def test_a_submit_just_under_64_mib_is_sent(client: rc.Client) -> None:
    url = f"{API}/v1/models/acme/any"
    inputs = {"image": _data_uri(64 * 1024 * 1024 - 100)}
    with aioresponses() as m:
        serve(m, "POST", url, "submit_200_full")
        request = await client.submit("acme/any", inputs, validate=False)
        assert calls(m, "POST", url) == 1
    assert request.request_id == RID
