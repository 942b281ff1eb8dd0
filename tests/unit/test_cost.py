"""estimate_cost: the catalog price times what the inputs ask for, before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

import runcomfy_async as rc

VIDEO_SCHEMA = {"properties": {"duration": {"type": "integer", "enum": [5, 10], "default": 5}}}
IMAGES_SCHEMA = {"properties": {"num_images": {"type": "integer", "default": 2}}}


def info(unit: str | None, price: float | None = 0.04, schema: Any = None) -> rc.ModelInfo:
    return rc.ModelInfo(model_id="a/b", base_price_usd=price, price_unit=unit, input_schema=schema)


@pytest.mark.parametrize(
    ("model", "inputs", "usd", "units"),
    [
        # per second of video: each input's duration, else the schema's default
        (info("second", 0.05, VIDEO_SCHEMA), [{"duration": 10}, {}, {"duration": 5}], 1.0, 20),
        # per image: the outputs each input asks for, else the default, else one
        (info("image", 0.04, IMAGES_SCHEMA), [{"num_images": 4}, {}], 0.24, 6),
        (info("image", 0.04), [{"prompt": "a"}] * 10, 0.4, 10),
        (info("Images ", 0.04), [{"batch_size": 3}], 0.12, 3),
        # per run
        (info("request", 0.5), [{}] * 3, 1.5, 3),
        # unknown: a unit we cannot count, no price, or seconds nobody states
        (info("per-token"), [{}] * 2, None, 2),
        (info("image", None), [{}], None, 1),
        (info("second", 0.05), [{"prompt": "no duration and no default"}], None, 0),
    ],
)
def test_estimate_by_price_unit(
    model: rc.ModelInfo, inputs: list[dict[str, Any]], usd: float | None, units: float
) -> None:
    found = rc.estimate_cost(model, inputs)
    assert found.inputs == len(inputs)
    assert found.units == units
    assert found.usd == (None if usd is None else pytest.approx(usd))
    assert found.price_usd == model.base_price_usd


def test_inputs_are_read_once_and_lazily() -> None:
    read = []

    def source() -> Any:
        for n in range(1000):
            read.append(n)
            yield {"duration": 10}

    found = rc.estimate_cost(info("second", 0.01, VIDEO_SCHEMA), source())
    assert found.usd == pytest.approx(100.0)
    assert read == list(range(1000))
