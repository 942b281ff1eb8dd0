"""Every catalog model, fetched over HTTP: its schema's validator passes what the simulator
accepts, and refuses bad inputs before any submit (and the simulator agrees where it checks)."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

import runcomfy_async as rc
from runcomfy_async._schema import SchemaValidator, build_validator
from runcomfy_async.simulator import RUNWAY_IMAGE_TO_VIDEO, WAN_TEXT_TO_IMAGE, Simulator
from runcomfy_async.simulator._catalog_extra import (
    ALEPH_VIDEO,
    CLARITY_UPSCALE,
    EXTRA_MODELS,
    FLUX_DEV,
    FLUX_LORA,
    KLING_VIDEO,
    LIPSYNC_VIDEO,
    SEEDREAM_EDIT,
    catalog_models,
)
from runcomfy_async.simulator._media import png

from .conftest import Start, call

IMAGE = "https://example.com/fox.png"
VIDEO = "https://example.com/clip.mp4"
AUDIO = "https://example.com/voice.wav"
LORA = "https://example.com/style.safetensors"
SMALL_PNG = "data:image/png;base64," + base64.b64encode(png(64, 36, (1, 2, 3))).decode()

VALID: dict[str, list[dict[str, Any]]] = {
    WAN_TEXT_TO_IMAGE: [
        {"prompt": "a fox"},
        {"prompt": "x" * 800, "aspect_ratio": "720:1440 (1:2)", "seed": 3, "prompt_extend": False},
    ],
    RUNWAY_IMAGE_TO_VIDEO: [
        {"promptText": "waves", "promptImage": IMAGE},
        {"promptText": "", "promptImage": SMALL_PNG, "ratio": "768:1280", "duration": 10},
    ],
    FLUX_DEV: [{"prompt": "a", "seed": None, "guidance_scale": 20, "num_images": 4}],
    SEEDREAM_EDIT: [{"prompt": "a", "image_urls": [IMAGE, SMALL_PNG]}],
    FLUX_LORA: [{"prompt": "a", "loras": []}, {"prompt": "a", "loras": [{"path": LORA}] * 3}],
    KLING_VIDEO: [{"prompt": "a", "negative_prompt": None, "cfg_scale": 0}],
    CLARITY_UPSCALE: [{"image_url": SMALL_PNG, "creativity": 1}],
    LIPSYNC_VIDEO: [{"video_url": VIDEO, "audio_url": AUDIO, "sync_mode": "loop"}],
}
for _model_id, _extra in EXTRA_MODELS.items():
    VALID.setdefault(_model_id, []).append(_extra.example)

# (inputs, the field the validator names, whether the simulator's own check refuses them too)
INVALID: dict[str, list[tuple[dict[str, Any], str, bool]]] = {
    WAN_TEXT_TO_IMAGE: [
        ({}, "prompt", True),
        ({"prompt": "x" * 801}, "prompt", True),
        ({"prompt": "a", "aspect_ratio": "16:9"}, "aspect_ratio", True),
        ({"prompt": "a", "seed": 1.5}, "seed", True),
        ({"prompt": "a", "seed": 2.0}, "seed", True),
        ({"prompt": "a", "prompt_extend": "yes"}, "prompt_extend", True),
    ],
    RUNWAY_IMAGE_TO_VIDEO: [
        ({"promptImage": IMAGE}, "promptText", True),
        ({"promptText": "a", "promptImage": IMAGE, "duration": 7}, "duration", True),
        ({"promptText": "a", "promptImage": IMAGE, "seed": -1}, "seed", True),
        ({"promptText": "a", "promptImage": "file:///etc/passwd"}, "promptImage", True),
        ({"promptText": "a", "promptImage": "http://example.com/x.png"}, "promptImage", False),
    ],
    FLUX_DEV: [
        ({"prompt": ""}, "prompt", True),
        ({"prompt": "a", "guidance_scale": 25}, "guidance_scale", True),
        ({"prompt": "a", "guidance_scale": True}, "guidance_scale", True),
        ({"prompt": "a", "num_inference_steps": 2.5}, "num_inference_steps", True),
        ({"prompt": "a", "image_size": "huge"}, "image_size", True),
        ({"prompt": "a", "seed": "1"}, "seed", True),
    ],
    SEEDREAM_EDIT: [
        ({"prompt": "a", "image_urls": []}, "image_urls", True),
        ({"prompt": "a", "image_urls": [IMAGE] * 11}, "image_urls", True),
        ({"prompt": "a", "image_urls": [IMAGE, "ftp://x/y.png"]}, "image_urls[1]", True),
        ({"prompt": "a", "image_urls": IMAGE}, "image_urls", True),
        ({"prompt": "a", "image_urls": [IMAGE], "size": "big"}, "size", False),
    ],
    ALEPH_VIDEO: [
        ({"prompt": "a", "video_url": "clip.mp4"}, "video_url", True),
        ({"prompt": "a", "video_url": VIDEO, "duration": 7}, "duration", True),
        ({"prompt": "a", "video_url": VIDEO, "aspect_ratio": "4:3"}, "aspect_ratio", True),
    ],
    FLUX_LORA: [
        ({"prompt": "a", "loras": [{"path": LORA, "scale": 5}]}, "loras[0].scale", True),
        ({"prompt": "a", "loras": [{"path": LORA}, {"scale": 1}]}, "loras[1].path", True),
        ({"prompt": "a", "loras": [{"path": LORA}] * 4}, "loras", True),
        ({"prompt": "a", "loras": [{"path": "file:///x"}]}, "loras[0].path", True),
        ({"prompt": "a", "loras": [{"path": LORA, "scale": "1"}]}, "loras[0].scale", True),
    ],
    KLING_VIDEO: [
        ({"prompt": "a", "camera_control": {"motion": "spin"}}, "camera_control.motion", True),
        ({"prompt": "a", "camera_control": {"strength": 1}}, "camera_control.motion", True),
        (
            {"prompt": "a", "camera_control": {"motion": "static", "strength": 11}},
            "camera_control.strength",
            True,
        ),
        (
            {"prompt": "a", "camera_control": {"motion": "static", "roll": 1}},
            "camera_control.roll",
            True,
        ),
        ({"prompt": "a", "cfg_scale": 1.5}, "cfg_scale", True),
        ({"prompt": "a", "negative_prompt": 3}, "negative_prompt", True),
    ],
    CLARITY_UPSCALE: [
        ({"image_url": IMAGE, "creativity": 0}, "creativity", True),
        ({"image_url": IMAGE, "scale_factor": 3}, "scale_factor", True),
        ({"image_url": IMAGE, "prompt": "x" * 501}, "prompt", True),
        ({"image_url": "http://example.com/a.png"}, "image_url", False),
    ],
    LIPSYNC_VIDEO: [
        ({"video_url": VIDEO, "audio_url": "voice.wav"}, "audio_url", True),
        ({"video_url": VIDEO, "audio_url": AUDIO, "sync_mode": "stretch"}, "sync_mode", True),
        ({"audio_url": AUDIO}, "video_url", True),
    ],
}


def test_every_catalog_model_has_valid_and_invalid_cases() -> None:
    assert set(VALID) == set(INVALID) == set(catalog_models())
    assert len(EXTRA_MODELS) >= 6


async def submit_checked(
    client: rc.Client, validator: SchemaValidator, inputs: dict[str, Any]
) -> rc.Request:
    """What a careful caller does: check against the catalog schema, then submit."""
    validator.validate(inputs)
    return await client.submit(validator.model_id, inputs)


@pytest.mark.parametrize("model_id", list(catalog_models()))
async def test_a_catalog_model_validates_before_submit_as_the_simulator_does(
    model_id: str, start: Start, session: aiohttp.ClientSession
) -> None:
    sim: Simulator = await start(models=catalog_models())
    async with rc.Client(api_key="k", base_url=sim.url) as client:
        info = await client.model_info(model_id)
        validator = build_validator(model_id, info.input_schema)
        assert validator.notes == ()  # every rule of the catalog's schemas is understood

        for inputs in INVALID[model_id]:
            bad, field, _ = inputs
            with pytest.raises(rc.InvalidInputError) as caught:
                await submit_checked(client, validator, bad)
            assert caught.value.field == field
            assert caught.value.model_id == model_id
        assert sim.ledger.calls["submit"] == 0  # refused before any submit

        for good in VALID[model_id]:
            request = await submit_checked(client, validator, good)
            assert sim.ledger.job(request.request_id).inputs == good
    assert len(sim.ledger.jobs_for_model(model_id)) == len(VALID[model_id])

    for bad, field, server_checks in INVALID[model_id]:  # the simulator agrees, sent raw
        status, body = await call(session, "POST", f"{sim.url}/v1/models/{model_id}", json=bad)
        if server_checks:
            assert status == 422, (bad, body)
            assert body["detail"][0]["field"] == field.split(".")[0].split("[")[0]
        else:  # a rule only the client checks (https only, pattern): the simulator takes it
            assert status == 200, (bad, body)


async def test_extra_models_are_served_with_their_price_unit_and_media(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start(models=catalog_models())
    _, listing = await call(session, "GET", f"{sim.url}/v1/models?limit=100")
    assert listing["total"] == len(catalog_models())
    units = {m["model_id"]: m["price_unit"] for m in listing["models"]}
    assert units[KLING_VIDEO] == units[ALEPH_VIDEO] == units[LIPSYNC_VIDEO] == "second"
    assert units[FLUX_DEV] == units[SEEDREAM_EDIT] == units[CLARITY_UPSCALE] == "output"
    assert sim.catalog[KLING_VIDEO].cost({"duration": 10}) == 2.8
    assert sim.catalog[FLUX_DEV].cost({}) == 0.025
