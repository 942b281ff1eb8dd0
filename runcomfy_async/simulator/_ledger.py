"""The ledger tests read: every job, every call, cancels, peaks and money, cheap at 10k jobs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

from ._engine import Engine, Job
from ._fetch import Fetched


class Call(NamedTuple):
    """One HTTP call the simulator received.

    `at` is when it arrived, in simulator-clock seconds; `endpoint` is one of submit, status,
    result, cancel, catalog, files; `subject` the request_id or model_id in the path;
    `status_code` the HTTP status answered (None when the connection was dropped); `fault`
    the fault action applied, if any;
    `authorized` whether an Authorization header was present (its value is never kept).
    """

    at: float
    endpoint: str
    subject: str | None
    status_code: int | None
    fault: str | None
    authorized: bool


class Ledger:
    """What happened on the simulated account, for assertions."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self.calls: Counter[str] = Counter()
        self.call_log: list[Call] = []
        self.cancels: Counter[str] = Counter()
        self.fetched: list[Fetched] = []  # file inputs read (SimulatorConfig.fetch_inputs)

    def record(self, call: Call) -> None:
        """Count and log one call."""
        self.calls[call.endpoint] += 1
        self.call_log.append(call)

    @property
    def jobs(self) -> list[Job]:
        """Every job ever submitted, in submission order, brought up to now."""
        self._engine.advance(self._clock())
        return list(self._engine.jobs.values())

    def job(self, request_id: str) -> Job:
        """One job by request_id; KeyError if the simulator never created it."""
        self._engine.advance(self._clock())
        return self._engine.jobs[request_id]

    def jobs_per_input(self) -> dict[str, int]:
        """Canonical input key (`json.dumps(inputs, sort_keys=True)`) -> jobs created."""
        return dict(Counter(job.key for job in self._engine.jobs.values()))

    def jobs_for_model(self, model_id: str) -> list[Job]:
        """The jobs of one model, in submission order."""
        return [job for job in self.jobs if job.model_id == model_id]

    @property
    def peak_running(self) -> int:
        """Most jobs in progress at the same simulated instant."""
        self._engine.advance(self._clock())
        return self._engine.peak_running

    @property
    def peak_queued(self) -> int:
        """Most jobs waiting in the queue at the same simulated instant."""
        return self._engine.peak_queued

    @property
    def total_charged(self) -> float:
        """USD billed for every job that started (cancelled-in-queue jobs are free)."""
        return round(sum(job.charged for job in self.jobs), 6)

    def to_json(self) -> dict[str, Any]:
        """The ledger as the `GET /_sim/ledger` answer."""
        jobs = self.jobs
        return {
            "jobs": [_job_json(job) for job in jobs],
            "jobs_per_input": self.jobs_per_input(),
            "calls": dict(self.calls),
            "call_log": [call._asdict() for call in self.call_log],
            "cancels": dict(self.cancels),
            "fetched": [fetched._asdict() for fetched in self.fetched],
            "peak_running": self.peak_running,
            "peak_queued": self.peak_queued,
            "total_charged": round(sum(job.charged for job in jobs), 6),
        }


def _job_json(job: Job) -> dict[str, Any]:
    return {
        "request_id": job.request_id,
        "model_id": job.model_id,
        "inputs": job.inputs,
        "key": job.key,
        "state": job.state.value,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "cost": job.cost,
        "charged": job.charged,
    }
