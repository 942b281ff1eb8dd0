"""Run times kept between processes (the cache file), in virtual time: written, read,
corrupt, stale, disabled."""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import runcomfy_async as rc
from runcomfy_async._poll import Scheduler
from runcomfy_async._runtimes import RunTimesFile, cache_path, run_times_file
from runcomfy_async._track import Tracker, TrackSettings
from runcomfy_async._wire import CancelOutcome, Output, Result, State, Status

MODEL = "wan-ai/wan-2-2/text-to-image"


class Time:
    """A clock that moves only when the poller pool's one sleeper (its dispatcher) naps,
    after letting the polls it handed out finish (the fake API answers in a checkpoint)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        for _ in range(8):
            await anyio.lowlevel.checkpoint()
        self.now += max(0.0, seconds)


class FakeRunComfy:
    """RunComfy's status and result in virtual time: each request runs its run time from
    submit. Counts the status calls."""

    def __init__(self, time: Time) -> None:
        self.time = time
        self.ends: dict[str, float] = {}
        self.status_calls = 0

    def submit(self, run_time: float) -> str:
        rid = f"r{len(self.ends)}"
        self.ends[rid] = self.time.now + run_time
        return rid

    async def status(self, rid: str, /) -> Status:
        await anyio.lowlevel.checkpoint()
        self.status_calls += 1
        done = self.time.now >= self.ends[rid]
        return Status(rid, State.COMPLETED if done else State.IN_PROGRESS)

    async def result(self, rid: str, /) -> Result:
        await anyio.lowlevel.checkpoint()
        return Result(rid, State.SUCCEEDED, output=Output({"image": "https://x/y.png"}))

    async def cancel(self, rid: str, /) -> CancelOutcome:
        raise AssertionError("nothing is cancelled here")


async def run_batch(
    cache: RunTimesFile | None, run_times: list[float], *, seed: int = 0
) -> tuple[float, float]:
    """One new "process" (a poller pool) that starts from `cache`, runs the requests
    (submitted together) and saves what it learnt: (status calls per request, p95 latency)."""
    time = Time()
    api = FakeRunComfy(time)
    scheduler = Scheduler(
        api,
        policy=rc.PollPolicy(),
        settings=TrackSettings(not_found_grace=15.0, cancel_grace=5.0),
        workers=50,
        clock=time.clock,
        sleep=time.sleep,
        rng=random.Random(seed),
    )
    if cache is not None:
        scheduler.seed(cache.load())
    latencies: list[float] = []

    def done(tracker: Tracker) -> None:
        latencies.append(time.now - api.ends[tracker.request_id])

    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        trackers = []
        for seconds in run_times:
            tracker = Tracker(api.submit(seconds), model_id=MODEL, submitted_at=time.now)
            tracker.on_done = done
            scheduler.track(tracker)
            trackers.append(tracker)
        for tracker in trackers:
            assert isinstance(await tracker.wait(), Result)
        group.cancel_scope.cancel()
    if cache is not None:
        cache.save(scheduler.learnt())
    return api.status_calls / len(run_times), statistics.quantiles(latencies, n=20)[-1]


def runs(low: float, high: float, n: int = 100, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def fixed_poll(run_times: list[float], interval: float = 2.0) -> tuple[float, float]:
    """(status calls per request, p95 latency) of a poll every `interval` s from submit."""
    polls = [math.floor(t / interval) + 1 for t in run_times]
    waits = [(math.floor(t / interval) + 1) * interval - t for t in run_times]
    return statistics.fmean(polls), statistics.quantiles(waits, n=20)[-1]


async def test_a_new_process_polls_warm_from_the_cache_an_earlier_one_wrote(
    tmp_path: Path,
) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    images = runs(10.0, 30.0)
    cold_calls, _ = await run_batch(cache, images)
    saved = json.loads(cache.path.read_text())
    assert len(saved["models"][MODEL]["samples"]) == 64  # the newest are kept
    assert all(5.0 <= s <= 31.0 for s in saved["models"][MODEL]["samples"])

    warm_calls, warm_p95 = await run_batch(cache, runs(10.0, 30.0, seed=2), seed=1)
    fixed_calls, fixed_p95 = fixed_poll(runs(10.0, 30.0, seed=2))
    assert warm_calls <= 0.75 * cold_calls  # the polls before the shortest runs are saved
    assert warm_calls <= 0.8 * fixed_calls
    assert warm_p95 <= fixed_p95 * 1.05


async def test_stale_run_times_are_corrected_without_costing_latency(tmp_path: Path) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    cache.save({MODEL: runs(10.0, 30.0, n=64)})  # learnt when the model took 10-30 s
    now = runs(2.0, 5.0, seed=3)  # ... and now it takes 2-5 s
    _calls, p95 = await run_batch(cache, now)
    _, fixed_p95 = fixed_poll(now)
    assert p95 <= fixed_p95  # the fixed 2 s poll's latency, despite the stale knowledge
    samples = cache.load()[MODEL]
    assert max(samples) < 6.0  # what was saved is what runs take now, the old is gone


async def test_runs_longer_than_remembered_are_relearnt(tmp_path: Path) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    cache.save({MODEL: runs(2.0, 5.0, n=64)})
    now = runs(10.0, 30.0, seed=4)
    _, p95 = await run_batch(cache, now)
    _, fixed_p95 = fixed_poll(now)
    assert p95 <= fixed_p95
    assert min(cache.load()[MODEL]) > 8.0


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\x00\xff\xfe binary",
        b'{"format": "someone-else", "version": 1, "models": {}}',
        b'{"format": "runcomfy_async/run-times", "version": 99, "models": {}}',
        b'{"format": "runcomfy_async/run-times", "version": 1, "models": []}',
        b"[1, 2, 3]",
    ],
)
async def test_a_corrupt_or_foreign_cache_is_ignored_with_a_log_line_and_replaced(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    cache.path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="runcomfy_async"):
        calls, _ = await run_batch(cache, runs(10.0, 30.0))
    assert any("run times not read from" in r.getMessage() for r in caplog.records)
    cold_calls, _ = await run_batch(None, runs(10.0, 30.0))
    # Polled as a new client would (nothing was taken from it), not ~0.75x as a warm one.
    assert calls >= 0.97 * cold_calls
    assert MODEL in cache.load()  # and the file now holds what was learnt


async def test_odd_entries_in_the_cache_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "run_times.json"
    models = {
        MODEL: {"samples": [1.0, "x", -2.0, None, True, 3.0, 1e999]},
        "other/model": {"samples": "nope"},
        "third/model": [],
    }
    path.write_text(
        json.dumps({"format": "runcomfy_async/run-times", "version": 1, "models": models})
    )
    assert RunTimesFile(path).load() == {MODEL: [1.0, 3.0]}


async def test_saving_keeps_other_models_and_writes_atomically(tmp_path: Path) -> None:
    cache = RunTimesFile(tmp_path / "deep" / "run_times.json")
    cache.save({"a/model": [1.0, 2.0]})
    cache.save({"b/model": [3.0]})
    assert cache.load() == {"a/model": [1.0, 2.0], "b/model": [3.0]}
    assert sorted(p.name for p in cache.path.parent.iterdir()) == ["run_times.json"]


async def test_an_unwritable_cache_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = RunTimesFile(blocker / "run_times.json")  # its folder is a file
    with caplog.at_level(logging.WARNING, logger="runcomfy_async"):
        cache.save({MODEL: [1.0]})
    assert any("run times not saved" in r.getMessage() for r in caplog.records)


def test_the_cache_lives_in_the_platform_cache_folder() -> None:
    home = {"HOME": "/home/u"}
    assert cache_path(home, "linux") == Path("/home/u/.cache/runcomfy_async/run_times.json")
    assert cache_path({**home, "XDG_CACHE_HOME": "/xdg"}, "linux") == Path(
        "/xdg/runcomfy_async/run_times.json"
    )
    assert cache_path({**home, "XDG_CACHE_HOME": "relative"}, "linux").is_relative_to("/home/u")
    assert cache_path(home, "darwin") == Path(
        "/home/u/Library/Caches/runcomfy_async/run_times.json"
    )
    windows = cache_path({"USERPROFILE": "C:/Users/u", "LOCALAPPDATA": "C:/Local"}, "win32")
    assert windows == Path("C:/Local/runcomfy_async/Cache/run_times.json")


def test_run_times_can_be_turned_off_or_pointed_elsewhere(tmp_path: Path) -> None:
    assert run_times_file(False, {}) is None
    assert run_times_file(True, {"RUNCOMFY_RUN_TIMES": "off"}) is None
    named = run_times_file(True, {"RUNCOMFY_RUN_TIMES": str(tmp_path / "x.json")})
    assert named is not None
    assert named.path == tmp_path / "x.json"
    mine = run_times_file(tmp_path / "mine.json", {"RUNCOMFY_RUN_TIMES": "off"})
    assert mine is not None
    assert mine.path == tmp_path / "mine.json"
    default = run_times_file(True, {"HOME": "/home/u"})
    assert default is not None
    assert default.path.name == "run_times.json"
