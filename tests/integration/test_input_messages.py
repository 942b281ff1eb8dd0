"""One message per broken rule, whichever checker found it: the typed input or the catalog."""

from __future__ import annotations

from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig, default_models
from runcomfy_async.simulator._seeds import WAN_INPUT_SCHEMA

WAN = models.Wan22TextToImage.model_id
COPY = "acme/wan-copy/text-to-image"  # WAN's schema, no typed input: the catalog checks it


def catalog() -> SimulatorConfig:
    copy = ModelProfile(input_schema=WAN_INPUT_SCHEMA)
    return SimulatorConfig(time_scale=0.01, models={**default_models(), COPY: copy})


@pytest.mark.parametrize(
    ("inputs", "rule"),
    [
        ({"prompt": "x", "aspect_ratio": "16:9"}, 'aspect_ratio: "16:9" is not one of "1440:720'),
        ({"prompt": 1984}, "prompt: must be a string, got an integer"),
        ({"prompt": "x", "seed": "7"}, "seed: must be an integer, got a string"),
        ({"prompt": "x" * 801}, "prompt: must be at most 800 characters long"),
        ({}, "prompt: is required"),
        ({"prompt": "x", "Prompt": "y"}, "unknown field Prompt (did you mean prompt?)"),
    ],
)
async def test_the_typed_input_and_the_catalog_schema_say_the_same(
    inputs: dict[str, Any], rule: str
) -> None:
    async with Simulator(catalog()) as sim, rc.Client("k", base_url=sim.url) as client:
        said = []
        for model_id in (WAN, COPY):
            with pytest.raises(rc.InvalidInputError) as caught:
                await client.submit(model_id, inputs)
            said.append(str(caught.value).removeprefix(f"{model_id}: "))
        assert sim.ledger.calls.get("submit", 0) == 0
    assert said[0] == said[1]
    assert said[0].startswith(rule)


async def test_unknown_top_level_fields_are_refused_by_the_catalog_unless_validate_is_off() -> None:
    async with Simulator(catalog()) as sim, rc.Client("k", base_url=sim.url) as client:
        with pytest.raises(rc.InvalidInputError) as caught:
            await client.submit(COPY, {"prompt": "x", "negative_promt": "blur"})
        assert sim.ledger.calls.get("submit", 0) == 0
        with pytest.raises(rc.BadRequestError):  # unchecked: the simulator refuses it itself
            await client.submit(COPY, {"prompt": "x", "negative_promt": "blur"}, validate=False)
    assert str(caught.value) == (
        f"{COPY}: unknown field negative_promt (did you mean negative_prompt?)"
    )
    assert caught.value.field == "negative_promt"


def test_from_dict_names_the_field_it_meant() -> None:
    with pytest.raises(rc.InvalidInputError) as caught:
        models.RunwayGen3TurboImageToVideo.from_dict({"prompt_text": "waves"})
    assert str(caught.value) == (
        f"{models.RunwayGen3TurboImageToVideo.model_id}: unknown field prompt_text "
        "(did you mean promptText?)"
    )
