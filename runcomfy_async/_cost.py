"""What a batch will cost, estimated from the catalog's price and unit before anything is sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidInputError
from ._inputs import ModelInput
from ._items import BatchInput, Numbered
from ._wire import ModelInfo

__all__ = ["CostEstimate", "estimate_cost"]

PER_OUTPUT_UNITS = frozenset({"image", "images", "output", "outputs", "video", "videos"})
PER_RUN_UNITS = frozenset({"request", "requests", "run", "runs", "generation"})
PER_SECOND_UNITS = frozenset({"second", "seconds", "sec", "s"})
# Inputs that ask for several outputs per run, in the names models use for it.
COUNT_FIELDS = ("num_images", "num_outputs", "num_videos", "batch_size", "n")


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """An estimate from the catalog price: `usd` is None when the price or unit is unknown.

    `units` is how many of `unit` the inputs buy (images, seconds of video, runs);
    `price_usd` is the catalog's price per unit. RunComfy bills what actually ran: read
    `Result.cost` (with `include_cost`) for the real figure.
    """

    usd: float | None
    inputs: int
    units: float
    unit: str | None
    price_usd: float | None


def estimate_cost(
    info: ModelInfo, inputs: Iterable[BatchInput | Numbered | Mapping[str, Any]]
) -> CostEstimate:
    """Estimate what running every input once on `info`'s model would cost, in USD.

    `inputs` are what map() takes (typed inputs, `(model_id, dict)` pairs, rc.Numbered) or
    wire-named dicts; one for another model raises InvalidInputError. Per image or output:
    the outputs each input asks for (`num_images` and the like, else the schema's default,
    else 1). Per second: each input's `duration` (else the schema's default). Per run: one
    each. Inputs are read once, lazily; nothing is kept.
    """
    unit = (info.price_unit or "").strip().lower() or None
    defaults = _defaults(info.input_schema)
    count, units, known = 0, 0.0, True
    for value in inputs:
        one = _wire_dict(value, info.model_id)
        count += 1
        if unit in PER_SECOND_UNITS:
            seconds = _number(one.get("duration", defaults.get("duration")))
            known = known and seconds is not None
            units += seconds or 0.0
        elif unit in PER_OUTPUT_UNITS:
            units += next(
                (n for f in COUNT_FIELDS if (n := _number(one.get(f, defaults.get(f))))), 1.0
            )
        else:
            units += 1.0
    price = info.base_price_usd
    priced = unit in PER_SECOND_UNITS | PER_OUTPUT_UNITS | PER_RUN_UNITS
    usd = price * units if price is not None and priced and known else None
    return CostEstimate(usd=usd, inputs=count, units=units, unit=unit, price_usd=price)


def _wire_dict(value: object, model_id: str) -> Mapping[str, Any]:
    """The wire dict of one input as map() takes it; InvalidInputError for anything else."""
    if isinstance(value, Numbered):
        value = value.input
    if isinstance(value, ModelInput):
        of, data = value.model_id, value.to_dict()
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
        of, data = value
    elif isinstance(value, Mapping):
        return value
    else:
        raise InvalidInputError(
            f"cannot estimate {type(value).__name__!r}: expected a typed input, a "
            "(model_id, dict) pair, rc.Numbered or a dict of inputs",
            model_id=model_id,
        )
    if of != model_id:
        raise InvalidInputError(
            f"an input for {of!r} in an estimate of {model_id!r} (prices differ)", model_id=of
        )
    return data


def _defaults(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        return {}
    return {
        name: spec["default"]
        for name, spec in properties.items()
        if isinstance(spec, Mapping) and "default" in spec
    }


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
