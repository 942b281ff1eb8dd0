"""Every rule of the seed schemas is checked before any call: nothing is sent, nothing paid."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, get_args

import msgspec
import pytest
from aioresponses import aioresponses
from yarl import URL

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async._inputs import check_model_id
from runcomfy_async.models.wan22_text_to_image import AspectRatio
from tests.conftest import API

Wan = models.Wan22TextToImage
Runway = models.RunwayGen3TurboImageToVideo
WAN_ID = "wan-ai/wan-2-2/text-to-image"
RUNWAY_ID = "runwayml/runway-gen-3-alpha/turbo/image-to-video"
IMAGE = "https://example.com/fox.png"

# The 15 values of the seed schema's aspect_ratio enum, copied from seeds/004_*.txt.
SEED_ASPECT_RATIOS = [
    "1440:720 (2:1)",
    "1440:810 (16:9)",
    "1440:864 (5:3)",
    "1440:960 (3:2)",
    "1440:1024 (7:5)",
    "1360:1020 (4:3)",
    "1280:1024 (5:4)",
    "1024:1024 (1:1)",
    "1024:1280 (4:5)",
    "1024:1365 (3:4)",
    "1024:1434 (5:7)",
    "960:1440 (2:3)",
    "864:1440 (3:5)",
    "810:1440 (9:16)",
    "720:1440 (1:2)",
]


@pytest.fixture
async def client() -> AsyncIterator[rc.Client]:
    async with rc.Client(api_key="test-key", base_url=API) as c:
        yield c


async def rejected(
    client: rc.Client, model: rc.ModelInput | str, inputs: Any = None
) -> rc.InvalidInputError:
    """Submit through a mock with no routes: any call would fail; none may be made."""
    with aioresponses() as m:
        args = (model,) if inputs is None else (model, inputs)
        with pytest.raises(rc.InvalidInputError) as caught:
            await client.submit(*args)  # type: ignore[call-overload]
        assert m.requests == {}, "an invalid input was sent"
    return caught.value


async def sent_body(client: rc.Client, model: rc.ModelInput | str, inputs: Any = None) -> Any:
    """Submit to a mock that accepts, and return the JSON body that went out."""
    model_id = model if isinstance(model, str) else model.model_id
    url = f"{API}/v1/models/{model_id}"
    with aioresponses() as m:
        m.post(url, payload={"request_id": "r1"})
        if inputs is None:
            await client.submit(model)  # type: ignore[arg-type]
        else:
            await client.submit(model, inputs)  # type: ignore[arg-type]
        (call,) = m.requests[("POST", URL(url))]
    return json.loads(call.kwargs["data"])


def field_of(make: Any) -> str | None:
    with pytest.raises(rc.InvalidInputError) as caught:
        make()
    return caught.value.field


# ------------------------------------------------------------------ wan-ai/wan-2-2/text-to-image


def test_wan_prompt_is_required() -> None:
    with pytest.raises(rc.InvalidInputError, match="prompt") as caught:
        Wan.from_dict({})
    assert caught.value.field == "prompt"
    assert caught.value.model_id == WAN_ID
    with pytest.raises(TypeError):
        Wan()  # type: ignore[call-arg]


async def test_wan_prompt_of_801_characters_is_rejected_before_sending(client: rc.Client) -> None:
    error = await rejected(client, Wan(prompt="x" * 801))
    assert error.field == "prompt"
    assert "800" in str(error)
    assert error.model_id == WAN_ID
    assert field_of(lambda: Wan.from_dict({"prompt": "x" * 801})) == "prompt"
    assert field_of(lambda: Wan(prompt="x" * 801).validate()) == "prompt"


@pytest.mark.parametrize("prompt", ["x" * 800, "é" * 800, "🦊" * 800, ""])
async def test_wan_prompt_up_to_800_characters_is_accepted(client: rc.Client, prompt: str) -> None:
    inputs = Wan(prompt=prompt)
    assert inputs.validate() is inputs
    assert await sent_body(client, inputs) == {"prompt": prompt}


def test_wan_aspect_ratio_enum_matches_the_seed_schema() -> None:
    assert list(get_args(AspectRatio)) == SEED_ASPECT_RATIOS


@pytest.mark.parametrize("ratio", SEED_ASPECT_RATIOS)
async def test_wan_every_aspect_ratio_of_the_schema_is_accepted(
    client: rc.Client, ratio: str
) -> None:
    inputs = Wan(prompt="fox", aspect_ratio=ratio)  # type: ignore[arg-type]
    assert inputs.validate() is inputs
    assert Wan.from_dict({"prompt": "fox", "aspect_ratio": ratio}) == inputs
    assert await sent_body(client, inputs) == {"prompt": "fox", "aspect_ratio": ratio}


@pytest.mark.parametrize(
    "ratio", ["16:9", "1440:810", "1440:810 (16:9) ", "1440x810 (16:9)", "", "1:1", 1]
)
async def test_wan_other_aspect_ratios_are_rejected(client: rc.Client, ratio: Any) -> None:
    error = await rejected(client, Wan(prompt="fox", aspect_ratio=ratio))
    assert error.field == "aspect_ratio"


@pytest.mark.parametrize("seed", [1.5, 1.0, "42", True, None, [1]])
async def test_wan_seed_must_be_an_integer(client: rc.Client, seed: Any) -> None:
    error = await rejected(client, Wan(prompt="fox", seed=seed))
    assert error.field == "seed"
    assert field_of(lambda: Wan.from_dict({"prompt": "fox", "seed": seed})) == "seed"


@pytest.mark.parametrize("seed", [0, 42, -1, 2**40])
def test_wan_integer_seeds_are_accepted(seed: int) -> None:
    assert Wan(prompt="fox", seed=seed).validate().seed == seed


@pytest.mark.parametrize("value", ["true", 1, 0, None, "yes"])
async def test_wan_prompt_extend_must_be_a_bool(client: rc.Client, value: Any) -> None:
    error = await rejected(client, Wan(prompt="fox", prompt_extend=value))
    assert error.field == "prompt_extend"


@pytest.mark.parametrize("value", [True, False])
async def test_wan_prompt_extend_bools_are_sent(client: rc.Client, value: bool) -> None:
    body = await sent_body(client, Wan(prompt="fox", prompt_extend=value))
    assert body == {"prompt": "fox", "prompt_extend": value}


async def test_wan_negative_prompt_must_be_a_string(client: rc.Client) -> None:
    error = await rejected(client, Wan(prompt="fox", negative_prompt=5))  # type: ignore[arg-type]
    assert error.field == "negative_prompt"


@pytest.mark.parametrize("name", ["steps", "negativePrompt", "Prompt", "model_id"])
def test_wan_unknown_fields_are_rejected_by_name(name: str) -> None:
    with pytest.raises(rc.InvalidInputError, match=name) as caught:
        Wan.from_dict({"prompt": "fox", name: 1})
    assert caught.value.field == name
    assert caught.value.model_id == WAN_ID


async def test_wan_unknown_keyword_cannot_even_be_constructed() -> None:
    with pytest.raises(TypeError):
        Wan(prompt="fox", steps=4)  # type: ignore[call-arg]


# ------------------------------------------------------------------ runway gen-3 alpha turbo


@pytest.mark.parametrize(
    ("data", "field", "wire"),
    [
        ({"promptImage": IMAGE}, "prompt_text", "promptText"),
        ({"promptText": "fox"}, "prompt_image", "promptImage"),
    ],
)
def test_runway_required_fields(data: dict[str, Any], field: str, wire: str) -> None:
    with pytest.raises(rc.InvalidInputError) as caught:
        Runway.from_dict(data)
    assert caught.value.field == field
    assert wire in str(caught.value)  # the user sees the name they sent
    assert caught.value.model_id == RUNWAY_ID


async def test_runway_prompt_text_max_length_512(client: rc.Client) -> None:
    error = await rejected(client, Runway(prompt_text="x" * 513, prompt_image=IMAGE))
    assert error.field == "prompt_text"
    assert "promptText" in str(error)
    assert "512" in str(error)
    body = await sent_body(client, Runway(prompt_text="x" * 512, prompt_image=IMAGE))
    assert body == {"promptText": "x" * 512, "promptImage": IMAGE}


@pytest.mark.parametrize(
    "image",
    [
        "http://example.com/fox.png",
        "ftp://example.com/fox.png",
        "",
        "https://",
        "https://example.com/a fox.png",
        " https://example.com/fox.png",
        "file:///etc/passwd",
        "example.com/fox.png",
        "data:",
        "HTTP://example.com/fox.png",
    ],
)
async def test_runway_prompt_image_must_be_https_or_data_uri(client: rc.Client, image: str) -> None:
    error = await rejected(client, Runway(prompt_text="fox", prompt_image=image))
    assert error.field == "prompt_image"
    assert "https URL or a data: URI" in str(error)  # the hint, not msgspec's regex
    assert "promptImage" in str(error)


def test_runway_prompt_image_with_a_trailing_newline_is_rejected() -> None:
    # Today it passes validation and "https://…/fox.png\n" is sent to RunComfy.
    with pytest.raises(rc.InvalidInputError) as caught:
        Runway(prompt_text="fox", prompt_image=IMAGE + "\n").validate()
    assert caught.value.field == "prompt_image"


@pytest.mark.parametrize(
    "image",
    [IMAGE, "https://cdn.example.com/a/b.png?sig=abc&x=1", "data:image/png;base64,iVBORw0KGgo="],
)
async def test_runway_https_and_data_images_are_accepted(client: rc.Client, image: str) -> None:
    body = await sent_body(client, Runway(prompt_text="fox", prompt_image=image))
    assert body["promptImage"] == image


@pytest.mark.parametrize("ratio", ["1280:768", "768:1280"])
async def test_runway_ratio_enum_accepted(client: rc.Client, ratio: str) -> None:
    body = await sent_body(client, Runway(prompt_text="fox", prompt_image=IMAGE, ratio=ratio))  # type: ignore[arg-type]
    assert body["ratio"] == ratio


@pytest.mark.parametrize("ratio", ["16:9", "1280x768", "768:1280 ", "", "1024:1024"])
async def test_runway_other_ratios_rejected(client: rc.Client, ratio: str) -> None:
    error = await rejected(client, Runway(prompt_text="fox", prompt_image=IMAGE, ratio=ratio))  # type: ignore[arg-type]
    assert error.field == "ratio"


@pytest.mark.parametrize("duration", [5, 10])
async def test_runway_duration_enum_accepted(client: rc.Client, duration: int) -> None:
    body = await sent_body(
        client,
        Runway(prompt_text="fox", prompt_image=IMAGE, duration=duration),  # type: ignore[arg-type]
    )
    assert body["duration"] == duration


@pytest.mark.parametrize("duration", [7, 0, "5", 5.0, True, None])
async def test_runway_other_durations_rejected(client: rc.Client, duration: Any) -> None:
    error = await rejected(client, Runway(prompt_text="fox", prompt_image=IMAGE, duration=duration))
    assert error.field == "duration"


@pytest.mark.parametrize("seed", [0, 1, 4294967295])
async def test_runway_seed_bounds_accepted(client: rc.Client, seed: int) -> None:
    body = await sent_body(client, Runway(prompt_text="fox", prompt_image=IMAGE, seed=seed))
    assert body["seed"] == seed


@pytest.mark.parametrize("seed", [-1, 4294967296, 2**70, "1", 1.5])
async def test_runway_seed_out_of_range_rejected(client: rc.Client, seed: Any) -> None:
    error = await rejected(client, Runway(prompt_text="fox", prompt_image=IMAGE, seed=seed))
    assert error.field == "seed"


@pytest.mark.parametrize("name", ["prompt_text", "prompt_image", "motion", "seedValue"])
def test_runway_unknown_fields_rejected_including_python_names(name: str) -> None:
    data = {"promptText": "fox", "promptImage": IMAGE, name: "x"}
    with pytest.raises(rc.InvalidInputError) as caught:
        Runway.from_dict(data)
    assert caught.value.field == name


def test_runway_wire_names_are_camel_case_and_python_names_snake_case() -> None:
    fields = {f.name: f.encode_name for f in msgspec.structs.fields(Runway)}
    assert fields == {
        "prompt_text": "promptText",
        "prompt_image": "promptImage",
        "ratio": "ratio",
        "duration": "duration",
        "seed": "seed",
    }
    inputs = Runway.from_dict({"promptText": "fox", "promptImage": IMAGE, "seed": 3})
    assert inputs.prompt_text == "fox"
    assert inputs.prompt_image == IMAGE
    assert inputs.seed == 3


# ------------------------------------------------------------------ what is sent


async def test_unset_fields_are_not_sent_so_server_defaults_apply(client: rc.Client) -> None:
    assert await sent_body(client, Wan(prompt="fox")) == {"prompt": "fox"}
    assert await sent_body(client, Runway(prompt_text="fox", prompt_image=IMAGE)) == {
        "promptText": "fox",
        "promptImage": IMAGE,
    }
    full = Runway(prompt_text="fox", prompt_image=IMAGE, ratio="768:1280", duration=10, seed=0)
    assert await sent_body(client, full) == {
        "promptText": "fox",
        "promptImage": IMAGE,
        "ratio": "768:1280",
        "duration": 10,
        "seed": 0,
    }


async def test_explicit_default_values_are_still_sent(client: rc.Client) -> None:
    body = await sent_body(client, Wan(prompt="fox", prompt_extend=True, seed=0))
    assert body == {"prompt": "fox", "seed": 0, "prompt_extend": True}


async def test_dict_inputs_for_other_models_pass_through_unchecked(client: rc.Client) -> None:
    inputs = {"anything": [1, {"x": None}], "camelCase": True, "prompt": "y" * 5000}
    body = await sent_body(client, "acme/some-model/v1.5", inputs)
    assert body == inputs


@pytest.mark.parametrize(
    "inputs",
    [["prompt", "fox"], "prompt=fox", {1: "fox"}, {"prompt": object()}, {"p": "\ud800"}],
    ids=["list", "string", "int-key", "object-value", "lone-surrogate"],
)
async def test_dict_inputs_that_cannot_be_sent_are_rejected(client: rc.Client, inputs: Any) -> None:
    error = await rejected(client, "acme/some-model", inputs)
    assert error.model_id == "acme/some-model"


async def test_typed_input_with_a_dict_is_a_type_error(client: rc.Client) -> None:
    with aioresponses() as m:
        with pytest.raises(TypeError):
            await client.submit(Wan(prompt="fox"), {"prompt": "fox"})  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            await client.submit(42, {"prompt": "fox"})  # type: ignore[call-overload]
        assert m.requests == {}


@pytest.mark.parametrize(
    "make",
    [
        lambda: Wan(prompt="\ud800"),
        lambda: Wan(prompt="fox", negative_prompt=object()),  # type: ignore[arg-type]
    ],
    ids=["lone-surrogate", "unencodable-object"],
)
async def test_typed_input_that_cannot_be_encoded_is_an_invalid_input(
    client: rc.Client, make: Any
) -> None:
    await rejected(client, make())


# ------------------------------------------------------------------ model ids


BAD_MODEL_IDS = [
    "",
    "wan",
    "/wan-ai/wan-2-2",
    "wan-ai/",
    "wan-ai//text-to-image",
    "wan-ai/../admin",
    "../wan/x",
    "wan-ai/./x",
    "wan ai/x",
    "wan-ai/x?debug=1",
    "wan-ai/x#frag",
    "https://evil.example/x",
    "wan-ai/x/",
    "-wan/x",
    "wan-ai/%2e%2e/x",
    "wan-ai/x\nHost: evil",
]


@pytest.mark.parametrize("model_id", BAD_MODEL_IDS)
async def test_bad_model_ids_are_rejected_before_any_call(client: rc.Client, model_id: str) -> None:
    error = await rejected(client, model_id, {"prompt": "fox"})
    assert error.model_id == model_id
    with aioresponses() as m:
        with pytest.raises(rc.InvalidInputError):
            await client.model_info(model_id)
        assert m.requests == {}


def test_model_id_with_a_trailing_newline_is_rejected() -> None:
    # Today submit() accepts it, sends the call, and returns Request.model_id ending in "\n".
    with pytest.raises(rc.InvalidInputError):
        check_model_id(WAN_ID + "\n")


@pytest.mark.parametrize(
    "model_id",
    ["a/b", "black-forest-labs/flux-1.1/pro_v2", "A1/b.c/D_e-f"],
)
async def test_good_model_ids_are_sent_verbatim(client: rc.Client, model_id: str) -> None:
    assert await sent_body(client, model_id, {"x": 1}) == {"x": 1}


@pytest.mark.parametrize(
    ("model_id", "inputs", "field"),
    [
        (WAN_ID, {"prompt": "x" * 801}, "prompt"),
        (WAN_ID, {"prompt": "fox", "x": 1}, "x"),
        (RUNWAY_ID, {"promptText": "waves"}, "prompt_image"),
        (RUNWAY_ID, {"promptText": "w", "promptImage": "https://a/b.png", "seed": -1}, "seed"),
    ],
)
async def test_dict_inputs_to_a_typed_model_are_checked_by_it(
    client: rc.Client, model_id: str, inputs: dict[str, object], field: str
) -> None:
    with aioresponses() as m:
        with pytest.raises(rc.InvalidInputError) as info:
            await client.submit(model_id, inputs)
        assert m.requests == {}
    assert info.value.field == field


def test_every_typed_input_knows_its_model_id() -> None:
    assert Wan.model_id == WAN_ID
    assert Runway.model_id == RUNWAY_ID
    assert Wan(prompt="fox").model_id == WAN_ID
