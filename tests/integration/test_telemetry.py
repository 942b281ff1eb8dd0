"""OpenTelemetry (the [otel] extra) against the simulator, read from the SDK's in-memory
exporter and metric reader: spans per request, API call and batch; metrics; nothing secret
in them; structured log fields; and nothing imported or changed without it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import runcomfy_async as rc
from runcomfy_async.otel import OpenTelemetry
from runcomfy_async.simulator import RUNWAY_IMAGE_TO_VIDEO, FaultRule
from runcomfy_async.testing import ThreadedSimulator, runcomfy_simulator, runcomfy_simulator_config

__all__ = ["runcomfy_simulator", "runcomfy_simulator_config"]  # fixtures used below

WAN = "wan-ai/wan-2-2/text-to-image"
RUNWAY = RUNWAY_IMAGE_TO_VIDEO


class Otel:
    """An in-memory exporter and metric reader, and the telemetry wired to them."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = OpenTelemetry(
            tracer_provider=tracer_provider, meter_provider=meter_provider
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Each metric's points: (attributes, value: a sum, or a histogram's (count, sum))."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = (point.count, point.sum)  # type: ignore[union-attr]
                        found.setdefault(metric.name, []).append((dict(point.attributes), value))
        return found

    def dump(self) -> str:
        """Every span and metric point, as exported."""
        data = self.reader.get_metrics_data()
        return "\n".join(span.to_json() for span in self.spans()) + (
            data.to_json() if data is not None else ""
        )


@pytest.fixture
def otel() -> Otel:
    return Otel()


def by_kind(otel: Otel, metric: str) -> dict[str, Any]:
    return {a["runcomfy.call_kind"]: v for a, v in otel.metrics().get(metric, [])}


async def test_a_run_is_a_request_span_with_a_child_span_per_call_and_metrics(
    runcomfy_simulator: ThreadedSimulator, otel: Otel
) -> None:
    async with rc.Client("k", base_url=runcomfy_simulator.url, telemetry=otel.telemetry) as c:
        result = await c.run(rc.models.Wan22TextToImage(prompt="a red fox"))
    rid = result.request_id
    [request] = otel.spans("runcomfy.request")
    attrs = dict(request.attributes or {})
    assert attrs["runcomfy.model_id"] == WAN
    assert attrs["runcomfy.request_id"] == rid
    assert attrs["runcomfy.state"] == "succeeded"
    assert attrs["runcomfy.cost"] == pytest.approx(0.04)
    assert attrs["runcomfy.queue_duration"] >= 0
    states = [dict(e.attributes or {})["runcomfy.state"] for e in request.events]
    assert states[-1] == "succeeded"
    assert len(states) == len(set(states))  # an event per change
    assert request.status.status_code is not StatusCode.ERROR

    calls = [s for s in otel.spans() if s.name.split()[0] in ("GET", "POST")]
    names = {s.name for s in calls}
    assert names >= {
        "POST /v1/models/{model_id}",
        "GET /v1/requests/{request_id}/status",
        "GET /v1/requests/{request_id}/result",
    }
    assert not any(rid in s.name for s in calls)  # ids are attributes, not names
    for span in calls:  # every call of this request is a child of its span
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id
        assert span.attributes is not None
        assert span.attributes["http.response.status_code"] == 200
        if "requests" in span.name:
            assert span.attributes["runcomfy.request_id"] == rid
            assert span.attributes["url.template"] == span.name.split()[1]

    calls_by_kind = by_kind(otel, "runcomfy.http.calls")
    assert calls_by_kind["submit"] == 1
    assert calls_by_kind["status"] >= 1
    assert calls_by_kind["result"] >= 1
    assert [v for _, v in otel.metrics()["runcomfy.cost"]] == [pytest.approx(0.04)]
    [(finished_attrs, finished)] = otel.metrics()["runcomfy.requests.finished"]
    assert (finished_attrs, finished) == (
        {"runcomfy.model_id": WAN, "runcomfy.state": "succeeded"},
        1,
    )
    assert all(v == 0 for _, v in otel.metrics()["runcomfy.requests.in_flight"])
    [(_, (detections, _))] = otel.metrics()["runcomfy.request.detection_latency"]
    assert detections == 1


async def test_retries_and_429_pauses_are_counted_on_their_call(
    runcomfy_simulator: ThreadedSimulator, otel: Otel
) -> None:
    runcomfy_simulator.faults.add(
        FaultRule(action="status", endpoint="submit", status_code=429, retry_after=0, times=1),
        FaultRule(action="status", endpoint="status", status_code=503, times=1),
    )
    async with rc.Client("k", base_url=runcomfy_simulator.url, telemetry=otel.telemetry) as c:
        await c.run(rc.models.Wan22TextToImage(prompt="a red fox"))
    submit = next(s for s in otel.spans() if s.name.startswith("POST"))
    assert submit.attributes is not None
    assert submit.attributes["runcomfy.rate_limit_waits"] == 1
    assert [e.name for e in submit.events] == ["retry"]
    retried = [
        s for s in otel.spans() if s.attributes and s.attributes.get("runcomfy.retries") == 1
    ]
    assert [s.name for s in retried] == ["GET /v1/requests/{request_id}/status"]
    assert by_kind(otel, "runcomfy.http.retries") == {"status": 1}
    assert by_kind(otel, "runcomfy.rate_limit.pauses") == {"submit": 1}


@pytest.mark.parametrize("runcomfy_simulator", [{"failure_rate": 1.0}], indirect=True)
async def test_a_failed_request_has_error_status(
    runcomfy_simulator: ThreadedSimulator, otel: Otel
) -> None:
    async with rc.Client("k", base_url=runcomfy_simulator.url, telemetry=otel.telemetry) as c:
        with pytest.raises(rc.RequestFailedError):
            await c.run(WAN, {"prompt": "a red fox"})
    [request] = otel.spans("runcomfy.request")
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes is not None
    assert request.attributes["runcomfy.state"] == "failed"


async def test_a_batch_is_a_span_over_its_requests(
    runcomfy_simulator: ThreadedSimulator, otel: Otel
) -> None:
    async with rc.Client("k", base_url=runcomfy_simulator.url, telemetry=otel.telemetry) as c:
        inputs = [rc.models.Wan22TextToImage(prompt=f"fox {n}") for n in range(3)]
        async with c.map(inputs) as batch:
            items = [item async for item in batch]
    assert all(item.ok for item in items)
    [span] = otel.spans("runcomfy.batch")
    assert span.attributes is not None
    assert span.attributes["runcomfy.batch.succeeded"] == 3
    requests = otel.spans("runcomfy.request")
    assert len(requests) == 3
    assert {r.parent.span_id for r in requests if r.parent} == {span.context.span_id}


CANARY_KEY = "rc-canary-key-0f9e8d7c6b5a"
CANARY_PROMPT = "canary-prompt-private-3c2b1a"
CANARY_SIGNATURE = "canary-signature-77aa55"


async def test_no_key_input_value_or_query_string_reaches_spans_metrics_or_logs(
    runcomfy_simulator: ThreadedSimulator,
    otel: Otel,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG, logger="runcomfy_async")
    runcomfy_simulator.faults.add(
        FaultRule(action="status", endpoint="status", status_code=503, times=2),
        FaultRule(action="reset_after_read", endpoint="submit", model_id=RUNWAY, times=1),
    )
    presigned = f"https://example.com/in.png?X-Amz-Signature={CANARY_SIGNATURE}"
    async with rc.Client(
        CANARY_KEY, base_url=runcomfy_simulator.url, telemetry=otel.telemetry
    ) as client:
        result = await client.run(WAN, {"prompt": CANARY_PROMPT})
        with pytest.raises(rc.SubmissionUnknownError):  # an error that carries the inputs
            await client.run(RUNWAY, {"promptText": CANARY_PROMPT, "promptImage": presigned})
        with pytest.raises(rc.InvalidInputError):
            await client.submit(WAN, {"prompt": CANARY_PROMPT, "seed": CANARY_SIGNATURE})
        await client.download(result, tmp_path)
    telemetry = otel.dump()
    assert len(otel.spans("runcomfy.request")) == 2
    unknown = otel.spans("runcomfy.request")[-1]
    assert unknown.status.status_code is StatusCode.ERROR
    assert unknown.attributes is not None
    assert unknown.attributes["error.type"] == "SubmissionUnknownError"
    for canary in (CANARY_KEY, CANARY_PROMPT, CANARY_SIGNATURE, "X-Amz-Signature"):
        assert canary not in telemetry, canary
    assert "include_cost" not in telemetry  # no query string at all, not even the SDK's
    logged = json.dumps([vars(record) for record in caplog.records], default=str)
    assert CANARY_KEY not in logged
    assert CANARY_SIGNATURE not in logged


async def test_every_log_record_about_a_request_names_it_and_its_model(
    runcomfy_simulator: ThreadedSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="runcomfy_async")
    runcomfy_simulator.faults.add(
        FaultRule(action="status", endpoint="status", status_code=503, times=1)
    )
    async with rc.Client("k", base_url=runcomfy_simulator.url) as client:
        request = await client.submit(rc.models.Wan22TextToImage(prompt="a red fox"))
        await client.wait(request)
        await client.cancel(request)
    rid = request.request_id
    about = [r for r in caplog.records if rid in r.getMessage()]
    assert len(about) >= 5  # the calls' answers, the retry, the state change, the cancel
    assert {r.levelname for r in about} == {"DEBUG", "INFO"}
    assert {getattr(r, "request_id", None) for r in about} == {rid}
    polled = [r for r in about if "cancel" not in r.getMessage()]  # polls know the model
    assert f"request {rid} is completed" in [r.getMessage() for r in polled]
    assert {getattr(r, "model_id", None) for r in polled} == {WAN}
    submit = [r for r in caplog.records if r.getMessage().startswith("POST /v1/models/")]
    assert [getattr(r, "model_id", None) for r in submit] == [WAN]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


RUN_ONE = """
    import anyio, sys
    import runcomfy_async as rc
    from runcomfy_async.simulator import Simulator, SimulatorConfig

    async def main(telemetry):
        async with Simulator(SimulatorConfig(time_scale=0.01)) as sim:
            async with rc.Client("k", base_url=sim.url, telemetry=telemetry) as client:
                result = await client.run("wan-ai/wan-2-2/text-to-image", {"prompt": "a fox"})
        print(result.state.value)
"""


def test_without_telemetry_nothing_of_opentelemetry_is_imported() -> None:
    done = run_python(
        RUN_ONE
        + """
    anyio.run(main, False)
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["succeeded", "[]"]


def test_telemetry_without_the_extra_raises_configuration_error_naming_it() -> None:
    done = run_python(
        """
    import sys
    sys.modules["opentelemetry"] = None  # as if the [otel] extra were not installed
    import runcomfy_async as rc
    try:
        rc.Client("k", telemetry=True)
    except rc.ConfigurationError as exc:
        print(exc)
    """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'runcomfy-async[otel]'" in done.stdout


def test_telemetry_true_uses_the_global_providers() -> None:
    done = run_python(
        RUN_ONE
        + """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    anyio.run(main, True)
    print(sorted({span.name for span in exporter.get_finished_spans()}))
    """
    )
    assert done.returncode == 0, done.stderr
    state, names = done.stdout.split("\n", 1)
    assert state == "succeeded"
    assert "'runcomfy.request'" in names
    assert "'POST /v1/models/{model_id}'" in names
