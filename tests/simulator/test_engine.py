"""The job engine in virtual time: exact start/finish times, FIFO, concurrency, cancels."""

from __future__ import annotations

import random
import time

from runcomfy_async.simulator import Engine, Job, JobState


def submit(engine: Engine, now: float, *, run: float = 5.0, fail: float = 0.0, n: int = 0) -> Job:
    return engine.submit(
        "m/x/text-to-image",
        {"n": n},
        f'{{"n": {n}}}',
        now=now,
        run_time=(run, run),
        failure_rate=fail,
        cost=0.04,
        outputs=1,
    )


def test_start_and_finish_times_are_exact_with_a_concurrency_cap() -> None:
    engine = Engine(concurrency=2, queue_delay=1.0, seed=0)
    jobs = [submit(engine, 0.0, n=i) for i in range(5)]
    engine.advance(100.0)  # one call replays every event
    assert [(j.started_at, j.finished_at) for j in jobs] == [
        (1.0, 6.0),
        (1.0, 6.0),
        (6.0, 11.0),
        (6.0, 11.0),
        (11.0, 16.0),
    ]
    assert all(j.state is JobState.SUCCEEDED for j in jobs)
    assert engine.peak_running == 2
    assert engine.peak_queued == 5


def test_times_do_not_depend_on_how_often_advance_is_called() -> None:
    def run(ticks: list[float]) -> list[tuple[float | None, float | None]]:
        engine = Engine(concurrency=3, queue_delay=0.5, seed=7)
        rng = random.Random(1)
        jobs, now, pending = [], 0.0, iter(ticks)
        tick = next(pending, None)
        for i in range(200):
            now += rng.uniform(0, 0.3)
            jobs.append(
                engine.submit(
                    "m",
                    {},
                    str(i),
                    now=now,
                    run_time=(0.5, 4.0),
                    failure_rate=0.1,
                    cost=1,
                    outputs=1,
                )
            )
            while tick is not None and tick <= now:
                engine.advance(tick)
                tick = next(pending, None)
        engine.advance(10_000.0)
        return [(j.started_at, j.finished_at) for j in jobs]

    rarely = run([])
    often = run([i * 0.01 for i in range(10_000)])
    assert rarely == often


def test_a_job_starts_when_eligible_if_a_slot_is_free() -> None:
    engine = Engine(concurrency=1, queue_delay=2.0, seed=0)
    first = submit(engine, 0.0, run=1.0)
    later = submit(engine, 10.0, run=1.0)
    engine.advance(50.0)
    assert (first.started_at, first.finished_at) == (2.0, 3.0)
    assert (later.started_at, later.finished_at) == (12.0, 13.0)


def test_queue_positions_are_one_based_fifo_and_close_up_after_a_cancel() -> None:
    engine = Engine(concurrency=1, queue_delay=0.0, seed=0)
    a, b, c, d = (submit(engine, 0.0, n=i) for i in range(4))
    assert a.state is JobState.RUNNING
    assert (engine.running, engine.queued) == (1, 3)
    assert [engine.queue_position(j) for j in (a, b, c, d)] == [None, 1, 2, 3]
    assert engine.cancel(c, 1.0)
    assert [engine.queue_position(j) for j in (b, d)] == [1, 2]
    engine.advance(5.0)  # a finishes, b starts
    assert engine.queue_position(d) == 1
    assert d.started_at is None


def test_cancel_is_free_while_queued_and_refused_once_running() -> None:
    engine = Engine(concurrency=1, queue_delay=0.0, seed=0)
    running, queued = submit(engine, 0.0), submit(engine, 0.0)
    assert engine.committed_usd == 0.08
    assert engine.cancel(queued, 1.0) is True
    assert engine.cancel(queued, 2.0) is True  # idempotent
    assert engine.cancel(running, 1.0) is False
    engine.advance(10.0)
    assert queued.state is JobState.CANCELLED
    assert (queued.finished_at, queued.charged) == (1.0, 0.0)
    assert running.state is JobState.SUCCEEDED
    assert running.charged == 0.04
    assert round(engine.committed_usd, 6) == 0.04
    assert engine.cancel(running, 11.0) is False


def test_outcomes_follow_the_failure_rate_and_the_seed() -> None:
    def outcomes(seed: int, rate: float) -> list[JobState]:
        engine = Engine(concurrency=None, queue_delay=0.0, seed=seed)
        jobs = [submit(engine, 0.0, fail=rate, n=i) for i in range(400)]
        engine.advance(10.0)
        return [j.state for j in jobs]

    half = outcomes(3, 0.5)
    assert half == outcomes(3, 0.5)
    assert 150 < half.count(JobState.FAILED) < 250
    assert set(outcomes(3, 0.0)) == {JobState.SUCCEEDED}
    assert set(outcomes(3, 1.0)) == {JobState.FAILED}


def test_a_failed_job_reveals_its_error_only_when_it_finishes() -> None:
    engine = Engine(concurrency=None, queue_delay=0.0, seed=0)
    job = submit(engine, 0.0, fail=1.0)
    assert job.state.value == "in_progress"
    engine.advance(5.0)
    assert job.state.value == "failed"
    assert job.error
    assert job.charged == 0.04  # it ran, so it is billed


def test_request_ids_are_unique_and_reproducible() -> None:
    def ids(seed: int) -> list[str]:
        engine = Engine(concurrency=None, queue_delay=0.0, seed=seed)
        return [submit(engine, 0.0, n=i).request_id for i in range(1000)]

    assert len(set(ids(0))) == 1000
    assert ids(0) == ids(0)
    assert ids(0) != ids(1)


def test_ten_thousand_jobs_are_cheap_and_never_exceed_the_cap() -> None:
    engine = Engine(concurrency=50, queue_delay=0.1, seed=0)
    began = time.perf_counter()
    jobs = [
        engine.submit(
            "m", {}, str(i), now=i * 0.001, run_time=(1.0, 3.0), failure_rate=0, cost=1, outputs=1
        )
        for i in range(10_000)
    ]
    for job in jobs[::100]:  # status polls in between
        engine.queue_position(job)
        engine.advance(job.created_at + 0.5)
    engine.advance(1e9)
    elapsed = time.perf_counter() - began
    assert elapsed < 2.0
    assert engine.peak_running == 50
    events = sorted(
        [(j.started_at or 0.0, 1) for j in jobs] + [(j.finished_at or 0.0, -1) for j in jobs],
        key=lambda e: (e[0], e[1]),  # a finish and a start at one instant do not overlap
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 50
    starts = [j.started_at or 0.0 for j in jobs]
    assert starts == sorted(starts)  # FIFO
