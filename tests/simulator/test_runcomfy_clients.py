"""What RunComfy's own clients expect of the API (issue 19), served by the simulator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runcomfy_async.simulator import (
    ALTERNATIVE_STATE_WORDS,
    RUNWAY_IMAGE_TO_VIDEO,
    WAN_TEXT_TO_IMAGE,
    FaultRule,
    ModelProfile,
    Quirks,
    add_arguments,
    config_from_args,
)
from runcomfy_async.simulator._catalog_extra import FLUX_DEV, KLING_VIDEO

from .conftest import FakeClock, Start, call

WAN = WAN_TEXT_TO_IMAGE
RUNWAY = RUNWAY_IMAGE_TO_VIDEO
RUNWAY_INPUTS = {"promptText": "waves", "promptImage": "https://example.com/a.png"}


async def test_catalog_entries_use_runcomfys_field_names_and_price_images_per_output(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    _, wan = await call(session, "GET", f"{sim.url}/v1/models/{WAN}")
    assert (wan["display_name"], wan["categories"]) == ("Wan 2.2 Text to Image", ["text-to-image"])
    assert (wan["base_price_usd"], wan["price_unit"]) == (0.04, "output")
    assert not {"name", "category", "pricing_note"} & set(wan)
    _, kling = await call(session, "GET", f"{sim.url}/v1/models/{KLING_VIDEO}")
    assert kling["price_unit"] == "second"
    assert "per second" in kling["pricing_note"]
    _, listing = await call(session, "GET", f"{sim.url}/v1/models?limit=100")
    units = {m["model_id"]: m["price_unit"] for m in listing["models"]}
    assert set(units.values()) == {"output", "second"}  # no model is priced per "image"


async def test_a_custom_catalog_entry_shows_its_own_name_categories_and_pricing_note(
    start: Start, session: aiohttp.ClientSession
) -> None:
    profile = ModelProfile(
        display_name="Acme Upscaler",
        categories=("upscale", "image-to-image"),
        pricing_note="Billed per run, whatever the size.",
        price_unit="request",
        price=0.01,
    )
    sim = await start(models={"acme/up/image-upscale": profile})
    _, entry = await call(session, "GET", f"{sim.url}/v1/models/acme/up/image-upscale")
    assert (entry["display_name"], entry["categories"]) == (
        "Acme Upscaler",
        ["upscale", "image-to-image"],
    )
    assert (entry["price_unit"], entry["pricing_note"]) == (
        "request",
        "Billed per run, whatever the size.",
    )
    _, found = await call(session, "GET", f"{sim.url}/v1/models?category=image-to-image")
    assert [m["model_id"] for m in found["models"]] == ["acme/up/image-upscale"]


async def test_an_image_run_is_billed_per_output_it_made(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start()
    url = f"{sim.url}/v1/models/{FLUX_DEV}"
    _, three = await call(session, "POST", url, json={"prompt": "a fox", "num_images": 3})
    _, default = await call(session, "POST", url, json={"prompt": "a fox"})
    clock.advance(60)
    _, result = await call(session, "GET", three["result_url"] + "?include_cost=true")
    assert len(result["output"]["images"]) == 3
    assert result["cost"] == pytest.approx(3 * 0.025)
    _, result = await call(session, "GET", default["result_url"] + "?include_cost=true")
    assert result["cost"] == pytest.approx(0.025)  # the schema's default: one image


async def test_the_categories_endpoint_lists_every_category_with_its_count(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    status, body = await call(session, "GET", f"{sim.url}/v1/models/categories")
    assert status == 200
    counts = {c["category"]: c["count"] for c in body["categories"]}
    assert counts["text-to-image"] == 3  # wan, flux dev, flux with LoRAs
    assert counts["image-to-video"] == 1
    assert sum(counts.values()) == len(sim.catalog)
    assert body["total"] == len(counts)
    assert sim.ledger.calls["catalog"] == 1


async def test_the_list_call_takes_kind_and_include_schema(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    _, videos = await call(session, "GET", f"{sim.url}/v1/models?kind=video&limit=100")
    assert {m["model_id"] for m in videos["models"]} == {
        mid for mid, entry in sim.catalog.items() if entry.media == "video"
    }
    assert RUNWAY in {m["model_id"] for m in videos["models"]}
    assert videos["total"] == 4
    _, images = await call(session, "GET", f"{sim.url}/v1/models?kind=image&limit=100")
    assert images["total"] == len(sim.catalog) - 4
    _, bare = await call(session, "GET", f"{sim.url}/v1/models?include_schema=false")
    assert all("input_schema" not in m and "output_schema" not in m for m in bare["models"])
    assert all(m["price_unit"] for m in bare["models"])
    _, full = await call(session, "GET", f"{sim.url}/v1/models?include_schema=true")
    assert all("input_schema" in m for m in full["models"])


async def test_status_carries_an_instance_id_once_running_and_results_their_model_id(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(models={WAN: ModelProfile(run_time=(3.0, 3.0))}, queue_delay=1.0)
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    _, queued = await call(session, "GET", sub["status_url"])
    assert "instance_id" not in queued
    clock.advance(2)
    _, running = await call(session, "GET", sub["status_url"])
    assert running["status"] == "in_progress"
    assert running["instance_id"].startswith("sim-instance-")
    clock.advance(5)
    _, result = await call(session, "GET", sub["result_url"])
    assert (result["status"], result["model_id"]) == ("succeeded", WAN)


async def test_cancel_answers_the_current_status_with_its_outcome(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(models={WAN: ModelProfile(run_time=(5.0, 5.0))}, concurrency=1)
    url = f"{sim.url}/v1/models/{WAN}"
    _, first = await call(session, "POST", url, json={"prompt": "a"})
    _, second = await call(session, "POST", url, json={"prompt": "b"})
    clock.advance(1)
    _, running = await call(session, "POST", first["cancel_url"])
    assert (running["status"], running["outcome"]) == ("in_progress", "not_cancellable")
    _, queued = await call(session, "POST", second["cancel_url"])
    assert (queued["status"], queued["outcome"]) == ("cancelled", "cancelled")
    clock.advance(10)
    _, finished = await call(session, "POST", first["cancel_url"])
    assert (finished["status"], finished["outcome"]) == ("completed", "not_cancellable")
    assert dict(sim.ledger.cancels) == {"not_cancellable": 2, "cancelled": 1}


async def test_a_requested_cancel_reads_queued_then_cancelled_and_never_runs(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    quirks = Quirks(cancel_style="requested", cancel_delay=2.0)
    sim = await start(quirks=quirks, concurrency=1, queue_delay=0.0)
    url = f"{sim.url}/v1/models/{WAN}"
    _, first = await call(session, "POST", url, json={"prompt": "a"})
    _, second = await call(session, "POST", url, json={"prompt": "b"})
    status, body = await call(session, "POST", second["cancel_url"])
    assert (status, body["status"], body["outcome"]) == (202, "in_queue", "cancellation_requested")
    _, again = await call(session, "POST", second["cancel_url"])
    assert again["outcome"] == "cancellation_requested"
    _, state = await call(session, "GET", second["status_url"])
    assert state["status"] == "in_queue"
    _, result = await call(session, "GET", second["result_url"])
    assert result["status"] == "in_queue"
    clock.advance(2.0)
    _, state = await call(session, "GET", second["status_url"])
    assert state["status"] == "cancelled"
    _, landed = await call(session, "POST", second["cancel_url"])
    assert (landed["status"], landed["outcome"]) == ("cancelled", "cancelled")
    _, running = await call(session, "POST", first["cancel_url"])
    assert running["outcome"] == "not_cancellable"
    clock.advance(60)
    job = sim.ledger.job(second["request_id"])
    assert (job.state.value, job.started_at, job.charged) == ("cancelled", None, 0.0)


async def test_a_requested_cancel_without_delay_reads_cancelled_as_runcomfys_mock_does(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start(quirks=Quirks(cancel_style="requested", cancel_delay=0.0), concurrency=1)
    url = f"{sim.url}/v1/models/{WAN}"
    await call(session, "POST", url, json={"prompt": "a"})
    _, queued = await call(session, "POST", url, json={"prompt": "b"})
    _, body = await call(session, "POST", queued["cancel_url"])
    assert (body["status"], body["outcome"]) == ("cancelled", "cancellation_requested")


@pytest.mark.parametrize(
    ("style", "status_code", "error_code"), [("400001", 400, 400001), ("404", 404, 404001)]
)
async def test_an_unknown_model_answers_as_configured(
    start: Start, session: aiohttp.ClientSession, style: str, status_code: int, error_code: int
) -> None:
    sim = await start(quirks=Quirks(unknown_model=style))  # type: ignore[arg-type]
    url = f"{sim.url}/v1/models/acme/nothing"
    for method in ("GET", "POST"):
        status, body = await call(session, method, url, json={"prompt": "a"})
        assert (status, body["error_code"]) == (status_code, error_code)
        assert "acme/nothing" in body["error_message"]
    assert sim.ledger.jobs == []


async def test_alternative_state_words_are_answered_on_demand(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    words = {**ALTERNATIVE_STATE_WORDS, "completed": "succeeded"}
    sim = await start(
        models={WAN: ModelProfile(run_time=(3.0, 3.0))},
        quirks=Quirks(state_words=words),
        concurrency=1,
        queue_delay=0.0,
    )
    url = f"{sim.url}/v1/models/{WAN}"
    _, first = await call(session, "POST", url, json={"prompt": "a"})
    _, second = await call(session, "POST", url, json={"prompt": "b"})
    _, third = await call(session, "POST", url, json={"prompt": "c"})
    _, body = await call(session, "GET", first["status_url"])
    assert body["status"] == "processing"
    _, body = await call(session, "GET", second["status_url"])
    assert (body["status"], body["queue_position"]) == ("pending", 1)
    _, body = await call(session, "GET", second["result_url"])
    assert body["status"] == "pending"
    _, body = await call(session, "POST", third["cancel_url"])
    assert (body["status"], body["outcome"]) == ("canceled", "cancelled")
    clock.advance(4)
    _, body = await call(session, "GET", first["status_url"])
    assert body["status"] == "succeeded"
    _, body = await call(session, "GET", first["result_url"])
    assert body["status"] == "succeeded"


@pytest.mark.parametrize("word", ["waiting", "starting"])
async def test_any_waiting_word_can_be_answered(
    start: Start, session: aiohttp.ClientSession, word: str
) -> None:
    sim = await start(quirks=Quirks(state_words={"in_queue": word}))
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    _, body = await call(session, "GET", sub["status_url"])
    assert body["status"] == word


def test_state_words_refuse_words_the_simulator_does_not_answer() -> None:
    with pytest.raises(ValueError, match="queued"):
        Quirks(state_words={"queued": "pending"})
    with pytest.raises(ValueError, match="non-empty"):
        Quirks(state_words={"in_queue": ""})


async def test_a_fault_makes_a_result_name_another_model(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    rule = FaultRule(action="other_model_id", endpoint="result", other_model_id="x/y/z")
    sim = await start(faults=(rule,))
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    clock.advance(60)
    _, body = await call(session, "GET", sub["result_url"])
    assert (body["status"], body["model_id"]) == ("succeeded", "x/y/z")
    assert [c.fault for c in sim.ledger.call_log] == [None, "other_model_id"]


def test_the_command_line_sets_the_new_quirks() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--unknown-model",
            "404",
            "--cancel-style",
            "requested",
            "--cancel-delay",
            "3",
            "--alternative-state-words",
            "--state-word",
            "in_queue=waiting",
        ]
    )
    quirks = config_from_args(args).quirks
    assert (quirks.unknown_model, quirks.cancel_style, quirks.cancel_delay) == (
        "404",
        "requested",
        3.0,
    )
    assert dict(quirks.state_words) == {
        "in_queue": "waiting",
        "in_progress": "processing",
        "cancelled": "canceled",
    }
    with pytest.raises(ValueError, match="WORD=OTHER"):
        config_from_args(parser.parse_args(["--state-word", "pending"]))


async def test_the_simulator_answers_in_the_shapes_of_the_recorded_payloads(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    _, categories = await call(session, "GET", f"{sim.url}/v1/models/categories")
    recorded = _payload("catalog_categories")
    assert set(categories) == set(recorded)
    assert {frozenset(c) for c in categories["categories"]} == {
        frozenset(c) for c in recorded["categories"]
    }
    _, kling = await call(session, "GET", f"{sim.url}/v1/models/{KLING_VIDEO}")
    assert set(kling) == set(_payload("catalog_entry_display_name")) | {"output_schema"}
    _, bare = await call(session, "GET", f"{sim.url}/v1/models?include_schema=false&kind=video")
    recorded_keys = {frozenset(m) for m in _payload("catalog_list_without_schema")["models"]}
    assert {frozenset(m) for m in bare["models"]} <= recorded_keys


def _payload(name: str) -> dict[str, Any]:
    path = Path(__file__).resolve().parent.parent / "payloads" / f"{name}.json"
    body: dict[str, Any] = json.loads(path.read_text())["body"]
    return body
