"""Checks before a paid submit, against the simulator: catalog schemas and media pre-flight."""

from __future__ import annotations

import base64
import logging
import struct
import zlib
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import (
    FaultRule,
    ModelProfile,
    Simulator,
    SimulatorConfig,
    default_models,
)
from runcomfy_async.simulator._seeds import RUNWAY_INPUT_SCHEMA

UPSCALER = "acme/upscaler"
SCHEMA = {
    "type": "object",
    "required": ["image_url"],
    "properties": {
        "image_url": {"type": "string", "format": "image_uri"},
        "scale": {"type": "integer", "enum": [2, 4], "default": 2},
        "strength": {"type": "float", "minimum": 0, "maximum": 1},
    },
}
RUNWAY = models.RunwayGen3TurboImageToVideo
WAN = models.Wan22TextToImage
IMAGE = "https://example.com/cat.png"
RUNWAY_RULES = RUNWAY_INPUT_SCHEMA["properties"]["promptImage"]["validations"]


ANIMATE = "acme/animate"  # no typed input: it takes an http URL of the simulator's own files
ANIMATE_SCHEMA = {
    "type": "object",
    "required": ["prompt", "image"],
    "properties": {
        "prompt": {"type": "string"},
        "image": {"type": "string", "format": "image_uri", "validations": RUNWAY_RULES},
    },
}


def config(**kwargs: Any) -> SimulatorConfig:
    profiles = {
        **default_models(),
        UPSCALER: ModelProfile(input_schema=SCHEMA, price=0.02),
        ANIMATE: ModelProfile(input_schema=ANIMATE_SCHEMA, price=0.05),
    }
    return SimulatorConfig(models=profiles, time_scale=0.01, queue_delay=0.0, **kwargs)


def calls(sim: Simulator, endpoint: str) -> list[Any]:
    return [call for call in sim.ledger.call_log if call.endpoint == endpoint]


def png_data_uri(width: int, height: int) -> str:
    """A PNG header of the given size (the pre-flight reads no further than IHDR)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


async def test_dict_inputs_are_checked_against_the_catalog_once_per_model() -> None:
    async with Simulator(config()) as sim, rc.Client("k", base_url=sim.url) as client:
        for scale in (2, 4, 2):
            await client.submit(UPSCALER, {"image_url": IMAGE, "scale": scale})
        bad = [
            {"image_url": IMAGE, "scale": 3},
            {"scale": 2},
            {"image_url": IMAGE, "strength": 2.5},
        ]
        refused = []
        for inputs in bad:
            with pytest.raises(rc.InvalidInputError) as info:
                await client.submit(UPSCALER, inputs)
            refused.append(info.value.field)
    assert refused == ["scale", "image_url", "strength"]
    assert len(calls(sim, "submit")) == 3  # nothing refused was sent, nothing paid for
    assert len(calls(sim, "catalog")) == 1  # one catalog call for six submits


async def test_validate_false_sends_the_inputs_as_they_are() -> None:
    async with Simulator(config()) as sim, rc.Client("k", base_url=sim.url) as client:
        with pytest.raises(rc.BadRequestError):  # RunComfy's own check refuses it
            await client.submit(UPSCALER, {"image_url": IMAGE, "scale": 3}, validate=False)
    assert len(calls(sim, "submit")) == 1
    assert calls(sim, "catalog") == []


async def test_typed_inputs_need_no_catalog_call() -> None:
    async with Simulator(config()) as sim, rc.Client("k", base_url=sim.url) as client:
        await client.submit(WAN(prompt="a fox"))
        await client.submit(WAN.model_id, {"prompt": "a fox"})
    assert calls(sim, "catalog") == []


async def test_a_catalog_outage_does_not_block_submits(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="runcomfy_async")
    outage = FaultRule(action="status", endpoint="catalog", status_code=503)
    once = rc.RetryPolicy(max_attempts=1)
    async with (
        Simulator(config(faults=[outage])) as sim,
        rc.Client("k", base_url=sim.url, retry=once) as client,
    ):
        await client.submit(UPSCALER, {"image_url": IMAGE})
        await client.submit(UPSCALER, {"image_url": IMAGE, "scale": 4})
    assert len(calls(sim, "submit")) == 2
    assert len(calls(sim, "catalog")) == 1  # not asked again at once: after a minute
    assert "could not be read" in caplog.text


async def test_a_model_the_catalog_does_not_list_is_refused_unless_validate_is_off() -> None:
    async with Simulator(config()) as sim, rc.Client("k", base_url=sim.url) as client:
        for _ in range(2):
            with pytest.raises(rc.UnknownModelError) as caught:
                await client.submit("acme/no-such-model", {"anything": 1})
        assert len(calls(sim, "submit")) == 0
        with pytest.raises(rc.BadRequestError):  # unchecked: the submit itself says so
            await client.submit("acme/no-such-model", {"anything": 1}, validate=False)
    assert len(calls(sim, "submit")) == 1
    assert len([c for c in calls(sim, "catalog") if c.subject == "acme/no-such-model"]) == 1
    assert caught.value.model_id == "acme/no-such-model"


async def test_preflight_refuses_an_image_that_breaks_the_models_rules() -> None:
    async with Simulator(config()) as sim, rc.Client("k", base_url=sim.url) as client:
        too_wide = RUNWAY(prompt_text="x", prompt_image=png_data_uri(9000, 5000))
        with pytest.raises(rc.PreflightError) as info:
            await client.submit(too_wide, preflight=True)
        await client.submit(
            RUNWAY(prompt_text="x", prompt_image=png_data_uri(1280, 768)), preflight=True
        )
        with pytest.raises(rc.BadRequestError):  # opt-in: without it, RunComfy refuses it
            await client.submit(too_wide)
    message = str(info.value)
    assert info.value.field == "promptImage"
    assert "9000 px wide" in message
    assert "The uploaded image width and height must not exceed 8000 pixels." in message
    assert [call.status_code == 422 for call in calls(sim, "submit")] == [False, True]
    assert len(calls(sim, "catalog")) == 1  # the media rules come from the catalog, once


async def test_a_batch_checks_each_image_url_once_and_refused_inputs_cost_nothing(
    tmp_path: Any,
) -> None:
    async with Simulator(config()) as sim, rc.Client("k", base_url=sim.url) as client:
        made = await client.run(WAN(prompt="a picture to animate"), timeout=30)
        hosted = made.output.urls[0]  # a PNG the simulator serves
        inputs = [(ANIMATE, {"prompt": f"take {n}", "image": hosted}) for n in range(20)]
        inputs.append((ANIMATE, {"prompt": "too tall", "image": png_data_uri(100, 9000)}))
        items = [item async for item in client.map(inputs, preflight=True, journal=tmp_path / "j")]
    refused = [item for item in items if isinstance(item.error, rc.PreflightError)]
    assert [item.index for item in refused] == [20]
    assert "image: image is 9000 px tall" in str(refused[0].error)
    assert [item.error for item in items if not item.ok and item.index != 20] == []
    file_calls = [call for call in calls(sim, "files") if call.subject == made.request_id]
    assert len(file_calls) == 1  # twenty inputs, one measurement of their image
    assert len(calls(sim, "submit")) == 21  # the wan run, then the 20 accepted


async def test_a_catalog_entry_read_by_the_caller_serves_the_checks_too() -> None:
    async with Simulator(config()) as sim, rc.Client("k", base_url=sim.url) as client:
        info = await client.model_info(UPSCALER)  # as runcomfy batch does, for its estimate
        with pytest.raises(rc.InvalidInputError):
            await client.submit(UPSCALER, {"image_url": IMAGE, "scale": 3})
        await client.submit(UPSCALER, {"image_url": IMAGE})
    assert info.model_id == UPSCALER
    assert len(calls(sim, "catalog")) == 1
