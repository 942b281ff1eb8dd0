"""A model with no typed input in the package: dict inputs, checked against its catalog schema.

    python examples/custom_model.py [MODEL_ID GOOD_INPUTS_JSON BAD_INPUTS_JSON]

Without RUNCOMFY_API_KEY the simulator serves a made-up "acme/upscaler" (image_url required,
scale 2 or 4); with a key, name a model of RunComfy's catalog and inputs for it.
"""

import json
import sys
from typing import Any

import anyio
from _backend import connect

import runcomfy_async as rc
from runcomfy_async.simulator import ModelProfile, default_models

IMAGE = "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"
UPSCALER = {  # the simulator's catalog entry for acme/upscaler (RunComfy serves its own)
    "type": "object",
    "required": ["image_url"],
    "properties": {
        "image_url": {"type": "string", "format": "image_uri"},
        "scale": {"type": "integer", "enum": [2, 4], "default": 2},
    },
}
SIMULATED = {**default_models(), "acme/upscaler": ModelProfile(input_schema=UPSCALER, price=0.02)}
GOOD: dict[str, Any] = {"image_url": IMAGE, "scale": 4}
BAD: dict[str, Any] = {"image_url": IMAGE, "scale": 3}  # the schema says 2 or 4


async def main(model_id: str, good: dict[str, Any], bad: dict[str, Any]) -> None:
    async with connect(models=SIMULATED) as client:
        info = await client.model_info(model_id)
        required = (info.input_schema or {}).get("required", [])
        print(f"{model_id}: requires {required}; {info.base_price_usd} USD per {info.price_unit}")
        print(f"10 runs would cost about {rc.estimate_cost(info, [good] * 10).usd:.2f} USD")
        result = await client.run(model_id, good, timeout=900)
        print(f"ran: {result.output.urls if result.output else result.error}")
        changed = {name: value for name, value in bad.items() if good.get(name) != value}
        try:  # dict inputs are checked against the catalog's input_schema before sending
            await client.submit(model_id, bad)
        except rc.InvalidInputError as exc:
            print(f"{changed} refused before sending: {exc}")
        try:  # validate=False leaves the checking to RunComfy, which refuses it too
            request = await client.submit(model_id, bad, validate=False)
        except rc.BadRequestError as exc:
            print(f"{changed} refused by RunComfy: HTTP {exc.status_code}: {exc.message}")
        else:
            print(f"{changed} accepted as {request.request_id}; cancelling it")
            await request.cancel()


if __name__ == "__main__":
    if len(sys.argv) == 4:
        anyio.run(main, sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]))
    else:
        anyio.run(main, "acme/upscaler", GOOD, BAD)
