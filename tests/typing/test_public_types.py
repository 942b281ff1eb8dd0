"""The public types, locked: `mypy --strict` must accept every line (tests/unit/test_typing.py).

Nothing here runs. pytest may import this file but finds no tests in it: the checks live in
`check_*` functions that are only type-checked, never called, so no call is ever made. Each
`# type: ignore[code]` is a misuse that must stay an error: with `warn_unused_ignores` (part of
--strict), mypy reports any that stops being one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, assert_type

import runcomfy_async as rc
from runcomfy_async import models


async def check_client_methods(client: rc.Client) -> None:
    request = await client.submit(models.Wan22TextToImage(prompt="a red fox"))
    assert_type(request, rc.Request)
    assert_type(await client.submit("acme/some-model", {"x": 1}), rc.Request)
    assert_type(request.request_id, str)
    assert_type(request.model_id, str | None)

    assert_type(await client.status(request), rc.Status)
    assert_type(await client.status("request-id"), rc.Status)
    assert_type(await client.result(request), rc.Result)
    assert_type(await client.result("request-id", include_cost=False), rc.Result)
    assert_type(await client.wait(request, timeout=30.0, cancel_on_timeout=True), rc.Result)
    assert_type(await client.run(models.Wan22TextToImage(prompt="fox"), timeout=60.0), rc.Result)
    assert_type(await client.run("acme/some-model", {"x": 1}), rc.Result)
    assert_type(await client.cancel(request), rc.CancelOutcome)
    assert_type(await client.model_info("acme/some-model"), rc.ModelInfo)
    assert_type([i async for i in client.models(search="fox", category="x")], list[rc.ModelInfo])
    assert_type(client.models(include_schema=False), AsyncIterator[rc.ModelInfo])
    assert_type(await client.aclose(), None)

    assert_type(await request.status(), rc.Status)
    assert_type(await request.result(), rc.Result)
    assert_type(await request.wait(timeout=5.0), rc.Result)
    assert_type(await request.cancel(), rc.CancelOutcome)


async def check_client_misuse(client: rc.Client) -> None:
    typed = models.Wan22TextToImage(prompt="fox")
    await client.submit(typed, {"prompt": "fox"})  # type: ignore[call-overload]
    await client.submit("acme/some-model")  # type: ignore[call-overload]
    await client.run(typed, {"prompt": "fox"})  # type: ignore[call-overload]
    await client.wait()  # type: ignore[call-arg]
    await client.wait("request-id", 30.0)  # type: ignore[call-arg]
    await client.result(3)  # type: ignore[arg-type]


async def check_context_manager() -> None:
    async with rc.Client(api_key="key", base_url=rc.DEFAULT_BASE_URL) as client:
        assert_type(client, rc.Client)
    rc.Client(
        timeout=rc.Timeouts(total=30.0, connect=5.0),
        retry=rc.RetryPolicy(max_attempts=3),
        poll=rc.PollPolicy(max_interval=10.0),
    )
    rc.Client("key", "https://example.com")  # type: ignore[call-arg]


def check_values(status: rc.Status, result: rc.Result, outcome: rc.CancelOutcome) -> None:
    assert_type(status.request_id, str)
    assert_type(status.state, rc.State)
    assert_type(status.queue_position, int | None)
    assert_type(status.instance_id, str | None)
    assert_type(result.model_id, str | None)
    assert_type(result.submitted_model_id, str | None)
    assert_type(result.model_mismatch, bool)
    assert_type(result.ok, bool)
    assert_type(status.error, Any)

    assert_type(result.request_id, str)
    assert_type(result.state, rc.State)
    assert_type(result.output, rc.Output | None)
    assert_type(result.error, Any)
    assert_type(result.cost, float | None)
    assert_type(result.created_at, datetime | None)
    assert_type(result.finished_at, datetime | None)
    assert_type(result.succeeded, bool)

    assert_type(outcome.request_id, str)
    assert_type(outcome.cancelled, bool)
    assert_type(outcome.outcome, str)
    assert_type(outcome.requested, bool)
    assert_type(outcome.state, rc.State | None)


def check_state(state: rc.State) -> None:
    assert_type(state.is_terminal, bool)
    assert_type(state.is_known, bool)
    assert_type(state.value, str)
    assert_type(rc.State("in_queue"), rc.State)
    completed: rc.State = rc.State.COMPLETED
    del completed
    text: str = state  # a State is a str
    del text


def check_output(output: rc.Output) -> None:
    assert_type(output.image, str | None)
    assert_type(output.video, str | None)
    assert_type(output.images, list[str])
    assert_type(output.videos, list[str])
    assert_type(output.urls, list[str])
    assert_type(output.data, dict[str, Any])
    assert_type(output["audio"], Any)
    assert_type(output.get("audio"), Any)


def check_model_info(info: rc.ModelInfo) -> None:
    assert_type(info.model_id, str)
    assert_type(info.name, str | None)
    assert_type(info.input_schema, dict[str, Any] | None)
    assert_type(info.base_price_usd, float | None)
    assert_type(info.price_unit, str | None)
    assert_type(info.categories, tuple[str, ...])
    assert_type(info.pricing_note, str | None)


def check_model_mismatch(error: rc.ModelMismatchError) -> None:
    assert_type(error.model_id, str)
    assert_type(error.submitted_model_id, str)
    assert_type(error.request_id, str)


def check_unknown_model(error: rc.UnknownModelError) -> None:
    assert_type(error.model_id, str)
    assert_type(error.suggestions, tuple[str, ...])
    assert_type(error.status_code, int)
    found: rc.NotFoundError = error
    del found


def check_errors(
    api: rc.APIError,
    limited: rc.RateLimitError,
    failed: rc.RequestFailedError,
    timed_out: rc.WaitTimeoutError,
    invalid: rc.InvalidInputError,
    unknown: rc.SubmissionUnknownError,
    unreadable: rc.UnexpectedResponseError,
) -> None:
    assert_type(api.status_code, int)
    assert_type(api.error_code, int | str | None)
    assert_type(api.message, str)
    assert_type(api.body, str)
    assert_type(api.retry_after, float | None)
    assert_type(limited.retry_after, float | None)
    assert_type(failed.request_id, str)
    assert_type(failed.error, Any)
    assert_type(timed_out.request_id, str)
    assert_type(timed_out.timeout, float)
    assert_type(timed_out.cancel_outcome, Any)
    assert_type(invalid.field, str | None)
    assert_type(invalid.model_id, str | None)
    assert_type(unknown.model_id, str)
    assert_type(unknown.inputs, Any)
    assert_type(unreadable.status_code, int | None)
    assert_type(unreadable.body, str)
    base: rc.RunComfyError = api
    lookup: LookupError = rc.NotFoundError("gone", status_code=404)
    timeout: TimeoutError = timed_out
    value: ValueError = invalid
    del base, lookup, timeout, value


def check_inputs(data: Mapping[str, Any]) -> None:
    wan = models.Wan22TextToImage(prompt="fox", aspect_ratio="1024:1024 (1:1)", seed=1)
    assert_type(wan.validate(), models.Wan22TextToImage)
    assert_type(models.Wan22TextToImage.from_dict(data), models.Wan22TextToImage)
    assert_type(
        models.RunwayGen3TurboImageToVideo.from_dict(data), models.RunwayGen3TurboImageToVideo
    )
    assert_type(wan.model_id, str)
    assert_type(wan.prompt, str)
    assert_type(wan.to_dict(), dict[str, Any])
    runway = models.RunwayGen3TurboImageToVideo(
        prompt_text="fox", prompt_image="https://example.com/fox.png", ratio="768:1280", duration=10
    )
    typed: rc.ModelInput = runway
    del typed
    models.Wan22TextToImage(prompt=1)  # type: ignore[arg-type]
    models.Wan22TextToImage(prompt="fox", aspect_ratio="16:9")  # type: ignore[arg-type]
    models.Wan22TextToImage(prompt="fox", steps=4)  # type: ignore[call-arg]
    models.RunwayGen3TurboImageToVideo(
        prompt_text="fox",
        prompt_image="https://example.com/fox.png",
        duration=7,  # type: ignore[arg-type]
    )
    models.RunwayGen3TurboImageToVideo(promptText="fox")  # type: ignore[call-arg]


async def check_as_completed_and_estimates(client: rc.Client, info: rc.ModelInfo) -> None:
    async for result in client.as_completed(["a", "b"], timeout=10.0):
        assert_type(result, rc.Result)
    async for one in client.as_completed(["a"], return_exceptions=True):
        assert_type(one, rc.Result | rc.RunComfyError)
    wan = models.Wan22TextToImage(prompt="fox")
    pair = ("acme/model", {"x": 1})
    estimate = rc.estimate_cost(info, [wan, pair, rc.Numbered(wan, 3, line=4), {"x": 1}])
    assert_type(estimate, rc.CostEstimate)


def check_configuration() -> None:
    assert_type(rc.DEFAULT_BASE_URL, str)
    assert_type(rc.__version__, str)
    assert_type(rc.Timeouts().total, float)
    assert_type(rc.RetryPolicy().max_attempts, int)
    assert_type(rc.PollPolicy().max_interval, float)


def check_journal_and_numbered(path: str) -> None:
    rows = rc.read_journal(path)
    assert_type(rows, list[rc.JournalRow])
    assert_type(rows[0].spent, float)
    assert_type(rows[0].line, int | None)
    numbered = rc.Numbered(("m/x", {"prompt": "fox"}), 7, line=9)
    assert_type(numbered.index, int)
    busy: rc.ConfigurationError = rc.JournalBusyError("busy", holder={})
    del busy


def check_sync_client(client: rc.SyncClient) -> None:
    request = client.submit(models.Wan22TextToImage(prompt="a red fox"))
    assert_type(request, rc.Request)
    assert_type(client.submit("acme/some-model", {"x": 1}), rc.Request)
    assert_type(client.status(request), rc.Status)
    assert_type(client.result(request), rc.Result)
    assert_type(client.wait(request, timeout=30.0), rc.Result)
    assert_type(client.run(models.Wan22TextToImage(prompt="a fox")), rc.Result)
    assert_type(client.run("acme/some-model", {"x": 1}, timeout=5.0), rc.Result)
    assert_type(client.cancel(request), rc.CancelOutcome)
    batch = client.map([models.Wan22TextToImage(prompt="a fox")])
    assert_type(batch, rc.BlockingBatch)
    assert_type(next(batch), rc.Item)
    assert_type(batch.progress, rc.Progress)
    for state in client.watch(request):
        assert_type(state, rc.State)
    for result in client.as_completed([request]):
        assert_type(result, rc.Result)
    for outcome in client.as_completed([request], return_exceptions=True):
        assert_type(outcome, rc.Result | rc.RunComfyError)
    assert_type(client.model_info("acme/some-model"), rc.ModelInfo)
    client.run(models.Wan22TextToImage(prompt="a fox"), {"x": 1})  # type: ignore[call-overload]
    with rc.SyncClient("key") as entered:
        assert_type(entered, rc.SyncClient)
