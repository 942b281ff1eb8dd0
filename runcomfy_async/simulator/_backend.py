"""The API's semantics (answers, errors, quirks, money), free of HTTP plumbing."""

from __future__ import annotations

import contextlib
import contextvars
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from ._catalog import CatalogEntry, build_catalog, validate
from ._config import SimulatorConfig
from ._engine import Engine, Job, JobState
from ._faults import Faults
from ._ledger import Ledger
from ._media import CONTENT_TYPES, output_file

# The arrival time of the call this task is answering (each call has a task of its own).
_ARRIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "runcomfy_simulator_arrived", default=None
)

_decoder = msgspec.json.Decoder()
_UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


class ApiError(Exception):
    """An API error answer: HTTP status, RunComfy `error_code`, message, optional detail."""

    def __init__(
        self,
        status_code: int,
        error_code: int,
        message: str,
        detail: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        """The JSON body RunComfy sends for this error."""
        body: dict[str, Any] = {"error_code": self.error_code, "error_message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class Backend:
    """One simulated account: catalog, job engine, ledger and faults behind the API."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.catalog: dict[str, CatalogEntry] = build_catalog(config.models)
        self._generation = -1
        self.reset()

    def reset(self) -> None:
        """Forget every job, call and runtime fault; keep the configuration.

        Each generation draws from its own seeded stream, so request_ids issued before a
        reset never name a job created after it.
        """
        config = self.config
        self._generation += 1
        seed = config.seed if self._generation == 0 else f"{config.seed}/{self._generation}"
        self.engine = Engine(
            concurrency=config.concurrency,
            queue_delay=config.queue_delay * config.time_scale,
            seed=seed,
        )
        self.ledger = Ledger(self.engine, config.clock)
        self.faults = Faults(config.faults, seed=seed)
        self._anchor = config.wall_clock() - config.clock()

    def now(self) -> float:
        """Simulator-clock seconds; while a call is handled, the moment it arrived (`handling`)."""
        arrived = _ARRIVED.get()
        return self.config.clock() if arrived is None else arrived

    @contextlib.contextmanager
    def handling(self) -> Iterator[float]:
        """Handle one call as of the moment it arrived (yielded): its answer tells the state
        at the time its ledger entry says, so a call logged after a job's finish saw it
        finished, and one logged before did not (reading the clock again while answering
        let a call stamped microseconds before a finish read the finished job)."""
        arrived = self.config.clock()
        token = _ARRIVED.set(arrived)
        try:
            yield arrived
        finally:
            _ARRIVED.reset(token)

    def authorize(self, header: str | None) -> None:
        """Accept `Bearer <token>` (only the configured key, if one is set)."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        expected = self.config.api_key
        if (
            scheme.lower() != "bearer"
            or not token
            or (expected is not None and not hmac.compare_digest(token, expected))
        ):
            raise ApiError(401, 400004, "invalid or missing token")

    def model_of(self, request_id: str | None) -> str | None:
        """The model of a known request_id, for fault filters."""
        job = self.engine.jobs.get(request_id) if request_id else None
        return job.model_id if job else None

    def submit(self, model_id: str, body: bytes, base_url: str) -> tuple[int, dict[str, Any]]:
        """Validate, bill-check and queue one request: (HTTP status, answer)."""
        entry = self._entry(model_id)
        try:
            inputs = _decoder.decode(body)
        except msgspec.DecodeError:
            raise ApiError(422, 422001, "the request body is not valid JSON") from None
        errors = validate(entry.input_schema, inputs)
        if errors:
            detail = [{"field": field, "message": message} for field, message in errors]
            summary = "; ".join(f"{field}: {message}" for field, message in errors)
            raise ApiError(422, 422001, f"invalid inputs: {summary}", detail)
        cost = entry.cost(inputs)
        balance = self.config.balance_usd
        if balance is not None and self.engine.committed_usd + cost > balance + 1e-9:
            raise ApiError(402, 400002, "insufficient balance")
        profile, scale = entry.profile, self.config.time_scale
        rate = profile.failure_rate
        job = self.engine.submit(
            model_id,
            inputs,
            json.dumps(inputs, sort_keys=True),
            now=self.now(),
            run_time=(profile.run_time[0] * scale, profile.run_time[1] * scale),
            failure_rate=self.config.failure_rate if rate is None else rate,
            cost=cost,
            outputs=entry.outputs(inputs),
        )
        if self.config.quirks.submit_style == "minimal":
            return 202, {"request_id": job.request_id, "status": "in_queue"}
        return 200, {"request_id": job.request_id, **_urls(base_url, job.request_id)}

    def status(self, request_id: str, base_url: str) -> dict[str, Any]:
        """The /status answer: finished jobs read `completed` unless quirked."""
        job = self._find(request_id)
        urls = _urls(base_url, request_id)
        body: dict[str, Any] = {"request_id": request_id, **self._current(job)}
        body["status_url"] = urls["status_url"]
        body["result_url"] = urls["result_url"]
        return body

    def _current(self, job: Job) -> dict[str, Any]:
        """The job's state as /status (and cancel) tell it: `status` and what goes with it."""
        quirks = self.config.quirks
        if self._cancelling(job):
            return {"status": quirks.word("in_queue")}
        if job.state is JobState.QUEUED:
            position = self.engine.queue_position(job)
            return {"status": quirks.word("in_queue"), "queue_position": position}
        body: dict[str, Any] = {}
        if job.state is JobState.FAILED and quirks.failed_status == "failed":
            body = {"status": quirks.word("failed"), "error": job.error}
        elif job.state in (JobState.SUCCEEDED, JobState.FAILED):
            body = {"status": quirks.word("completed")}
        else:
            body = {"status": quirks.word(job.state.value)}
        if job.started_at is not None:  # the worker that ran it, as RunComfy may say
            body["instance_id"] = f"sim-instance-{job.ticket % 16:02d}"
        return body

    def _cancelling(self, job: Job) -> bool:
        """True while a cancel asked with `cancel_style="requested"` has not landed yet."""
        return (
            job.state is JobState.CANCELLED
            and job.finished_at is not None
            and self.now() < job.finished_at
        )

    def result(self, request_id: str, base_url: str, *, include_cost: bool) -> dict[str, Any]:
        """The /result answer: outputs, error or (unfinished) the current state."""
        job = self._find(request_id)
        word = self.config.quirks.word
        if job.state in _UNFINISHED or self._cancelling(job):
            if self.config.quirks.not_ready == "400005":
                raise ApiError(400, 400005, "result not ready")
            state = JobState.QUEUED if self._cancelling(job) else job.state
            return {"request_id": request_id, "status": word(state.value)}
        body: dict[str, Any] = {
            "request_id": request_id,
            "model_id": job.model_id,
            "status": word(job.state.value),
        }
        if job.state is JobState.SUCCEEDED:
            body["output"] = self._output(job, base_url)
        elif job.state is JobState.FAILED:
            body["error"] = job.error
        body["created_at"] = self._iso(job.created_at)
        body["finished_at"] = self._iso(job.finished_at)
        if include_cost:
            body["cost"] = job.charged
        return body

    def cancel(self, request_id: str) -> dict[str, Any]:
        """Cancel a queued request (free); running or finished ones are not cancellable.

        The answer carries the request's status after the cancel, as /status would tell
        it (a running request reads `in_progress`, never `completed`), and the outcome.
        """
        job = self._find(request_id)
        quirks = self.config.quirks
        requested = quirks.cancel_style == "requested"
        delay = quirks.cancel_delay * self.config.time_scale if requested else 0.0
        if self._cancelling(job):
            outcome = "cancellation_requested"
        elif job.state is JobState.CANCELLED:
            outcome = "cancelled"
        elif self.engine.cancel(job, self.now(), delay=delay):
            outcome = "cancellation_requested" if requested else "cancelled"
        else:
            outcome = "not_cancellable"
        self.ledger.cancels[outcome] += 1
        current = self._current(job)
        current.pop("queue_position", None)
        return {"request_id": request_id, **current, "outcome": outcome}

    def model(self, model_id: str) -> dict[str, Any]:
        """The catalog entry of one model."""
        return self._entry(model_id).to_json()

    def models(
        self,
        search: str,
        category: str,
        limit: int,
        offset: int,
        *,
        kind: str = "",
        include_schema: bool = True,
    ) -> dict[str, Any]:
        """Catalog entries whose id or name contains `search`, optionally of one category
        and one kind of output (`image`, `video`); `include_schema` False leaves out the
        input and output schemas."""
        needle = search.lower()
        found = [
            entry
            for entry in self.catalog.values()
            if (needle in entry.model_id.lower() or needle in entry.display_name.lower())
            and (not category or category in entry.categories)
            and (not kind or kind.lower() == entry.media)
        ]
        page = found[offset : offset + limit]
        models = [entry.to_json(include_schema=include_schema) for entry in page]
        return {"models": models, "total": len(found)}

    def categories(self) -> dict[str, Any]:
        """The `GET /v1/models/categories` answer: every category with its model count."""
        counts: dict[str, int] = {}
        for entry in self.catalog.values():
            for category in entry.categories:
                counts[category] = counts.get(category, 0) + 1
        found = [{"category": name, "count": counts[name]} for name in sorted(counts)]
        return {"categories": found, "total": len(found)}

    def file(self, request_id: str, name: str) -> tuple[bytes, str] | None:
        """(bytes, content type) of one hosted output, None if absent or expired."""
        job = self.engine.get(request_id, self.now())
        index, _, extension = name.partition(".")
        if job is None or job.state is not JobState.SUCCEEDED or self._expired(job):
            return None
        if not index.isdigit() or int(index) >= job.outputs:
            return None
        if extension != _extension(self.catalog[job.model_id]):
            return None
        text = str(job.inputs.get("prompt", job.inputs.get("promptText", job.key)))
        return output_file(text, int(index), extension), CONTENT_TYPES[extension]

    def _entry(self, model_id: str) -> CatalogEntry:
        entry = self.catalog.get(model_id)
        if entry is None:
            if self.config.quirks.unknown_model == "404":
                raise ApiError(404, 404001, f"model not found: {model_id[:200]!r}")
            raise ApiError(400, 400001, f"invalid model_id: {model_id[:200]!r}")
        return entry

    def _find(self, request_id: str) -> Job:
        now = self.now()
        job = self.engine.get(request_id, now)
        if (
            job is None
            or now - job.created_at < self.config.quirks.fresh_404_seconds
            or self._expired(job)
        ):
            raise ApiError(404, 404001, "request not found or expired")
        return job

    def _expired(self, job: Job) -> bool:
        ttl = self.config.output_ttl
        if ttl is None or job.finished_at is None:
            return False
        return self.now() >= job.finished_at + ttl * self.config.time_scale

    def _output(self, job: Job, base_url: str) -> dict[str, Any]:
        entry = self.catalog[job.model_id]
        files = self.config.files_base_url or base_url
        urls = [
            f"{files.rstrip('/')}/files/{job.request_id}/{n}.{_extension(entry)}"
            for n in range(job.outputs)
        ]
        return {entry.media: urls[0]} if len(urls) == 1 else {f"{entry.media}s": urls}

    def _iso(self, t: float | None) -> str | None:
        if t is None:
            return None
        return datetime.fromtimestamp(self._anchor + t, UTC).isoformat(timespec="milliseconds")


def _urls(base_url: str, request_id: str) -> dict[str, str]:
    root = f"{base_url}/v1/requests/{request_id}"
    return {
        "status_url": f"{root}/status",
        "result_url": f"{root}/result",
        "cancel_url": f"{root}/cancel",
    }


def _extension(entry: CatalogEntry) -> str:
    return "mp4" if entry.media == "video" else "png"
