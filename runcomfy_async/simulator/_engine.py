"""The account's job queue as a lazy discrete-event simulation: no task per job, exact times.

Nothing runs in the background. Each job gets, at submission, a seeded run time and
outcome; `Engine.advance(now)` then replays every start and finish event up to `now` in
time order, so start/finish times are exact however rarely it is called. A job becomes
eligible `queue_delay` after submission and starts at max(eligible time, time a slot
frees); queued jobs start FIFO. Cost per event: O(log n).
"""

from __future__ import annotations

import enum
import heapq
import random
import uuid
from collections import deque
from typing import Any

_FAILURES = (
    "simulated failure: CUDA out of memory",
    "simulated failure: workflow node raised an exception",
    "simulated failure: output rejected by the safety checker",
)


class JobState(enum.StrEnum):
    """Where a job stands; the values are RunComfy's words."""

    QUEUED = "in_queue"
    RUNNING = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job:
    """One submitted request. Read-only for callers; times are simulator-clock seconds."""

    __slots__ = (
        "cost",
        "created_at",
        "eligible_at",
        "error",
        "finished_at",
        "inputs",
        "key",
        "model_id",
        "outputs",
        "request_id",
        "run_time",
        "started_at",
        "state",
        "ticket",
    )

    def __init__(
        self,
        request_id: str,
        model_id: str,
        inputs: dict[str, Any],
        key: str,
        *,
        created_at: float,
        eligible_at: float,
        run_time: float,
        error: str | None,
        cost: float,
        outputs: int,
        ticket: int,
    ) -> None:
        self.request_id = request_id
        self.model_id = model_id
        self.inputs = inputs
        self.key = key
        self.created_at = created_at
        self.eligible_at = eligible_at
        self.run_time = run_time
        self.error = error  # decided at submission, revealed only once FAILED
        self.cost = cost
        self.outputs = outputs
        self.ticket = ticket
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.state = JobState.QUEUED

    @property
    def charged(self) -> float:
        """USD billed: the full cost once the job started, nothing if it never ran."""
        return self.cost if self.started_at is not None else 0.0

    def __repr__(self) -> str:
        return f"Job({self.request_id!r}, {self.model_id!r}, state={self.state.value!r})"


class _Tickets:
    """A growable Fenwick tree counting queued jobs by queue ticket: rank in O(log n)."""

    def __init__(self) -> None:
        self._tree = [0]  # 1-based

    def append(self) -> int:
        """Mark a new ticket as queued and return it (1-based)."""
        i = len(self._tree)
        low = i & -i
        self._tree.append(1 + self.rank(i - 1) - self.rank(i - low))
        return i

    def remove(self, i: int) -> None:
        while i < len(self._tree):
            self._tree[i] -= 1
            i += i & -i

    def rank(self, i: int) -> int:
        """How many tickets <= i are still queued."""
        total = 0
        while i > 0:
            total += self._tree[i]
            i -= i & -i
        return total


class Engine:
    """All jobs of one account. Pure: every method takes the current time `now`."""

    def __init__(self, *, concurrency: int | None, queue_delay: float, seed: int | str) -> None:
        self.jobs: dict[str, Job] = {}
        self.peak_running = 0
        self.peak_queued = 0
        self.queued = 0
        self.committed_usd = 0.0  # cost of every job not cancelled
        self._limit = concurrency
        self._queue_delay = queue_delay
        self._rng = random.Random(seed)
        self._queue: deque[Job] = deque()  # FIFO by ticket; cancelled jobs skipped lazily
        self._running: list[tuple[float, int, Job]] = []  # heap of (finish time, ticket, job)
        self._tickets = _Tickets()
        self._t = float("-inf")  # time of the last processed event

    @property
    def running(self) -> int:
        """Jobs in progress at the last `advance`."""
        return len(self._running)

    def submit(
        self,
        model_id: str,
        inputs: dict[str, Any],
        key: str,
        *,
        now: float,
        run_time: tuple[float, float],
        failure_rate: float,
        cost: float,
        outputs: int,
    ) -> Job:
        """Queue a job; `run_time` is the (min, max) range already scaled to seconds."""
        self.advance(now)
        request_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        duration = self._rng.uniform(*run_time)
        error = self._rng.choice(_FAILURES) if self._rng.random() < failure_rate else None
        job = Job(
            request_id,
            model_id,
            inputs,
            key,
            created_at=now,
            eligible_at=now + self._queue_delay,
            run_time=duration,
            error=error,
            cost=cost,
            outputs=outputs,
            ticket=self._tickets.append(),
        )
        self.jobs[request_id] = job
        self._queue.append(job)
        self.queued += 1
        self.peak_queued = max(self.peak_queued, self.queued)
        self.committed_usd += cost
        self.advance(now)
        return job

    def get(self, request_id: str, now: float) -> Job | None:
        """The job brought up to `now`, or None if the id is unknown."""
        self.advance(now)
        return self.jobs.get(request_id)

    def queue_position(self, job: Job) -> int | None:
        """1-based place among queued jobs, None once it left the queue."""
        if job.state is not JobState.QUEUED:
            return None
        return self._tickets.rank(job.ticket)

    def cancel(self, job: Job, now: float, *, delay: float = 0.0) -> bool:
        """Cancel a queued job (free); True if it is cancelled now or was already.

        It leaves the queue at once and never runs; `finished_at` is `now + delay`, when
        the cancellation is to be seen as done (a requested, not yet landed, cancel).
        """
        self.advance(now)
        if job.state is JobState.CANCELLED:
            return True
        if job.state is not JobState.QUEUED:
            return False
        job.state = JobState.CANCELLED
        job.finished_at = now + delay
        self._tickets.remove(job.ticket)
        self.queued -= 1
        self.committed_usd -= job.cost
        return True

    def advance(self, now: float) -> None:
        """Replay every start and finish event up to `now`, in time order."""
        queue, running, limit = self._queue, self._running, self._limit
        while True:
            while queue and queue[0].state is not JobState.QUEUED:
                queue.popleft()
            start_at = float("inf")
            if queue and (limit is None or len(running) < limit):
                start_at = max(queue[0].eligible_at, self._t)
            finish_at = running[0][0] if running else float("inf")
            if finish_at <= start_at:  # on a tie the slot frees before the next start
                if finish_at > now:
                    return
                _, _, job = heapq.heappop(running)
                self._t = finish_at
                job.finished_at = finish_at
                job.state = JobState.FAILED if job.error is not None else JobState.SUCCEEDED
            else:
                if start_at > now:
                    return
                job = queue.popleft()
                self._t = start_at
                job.started_at = start_at
                job.state = JobState.RUNNING
                self._tickets.remove(job.ticket)
                self.queued -= 1
                heapq.heappush(running, (start_at + job.run_time, job.ticket, job))
                self.peak_running = max(self.peak_running, len(running))
