"""The poller pool: one schedule of due polls per client, and a fixed number of pollers."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import RunComfyError
from ._policy import PollPolicy, RunTimes, RunWindow
from ._retry import Clock, Sleep
from ._telemetry import concerning
from ._track import EXPIRED, Answers, Api, Outcome, Tracker, TrackSettings, poll_once
from ._wire import State

logger = logging.getLogger("runcomfy_async")


class Scheduler:
    """Polls every tracked request when its policy says, with `workers` polls in flight.

    A single dispatcher sleeps until the earliest due poll and hands due trackers to the
    workers; a tracker scheduled earlier than the dispatcher's nap wakes it. No coroutine
    sleeps per request, so ten thousand requests cost a heap entry each.
    """

    def __init__(
        self,
        api: Api,
        *,
        policy: PollPolicy,
        settings: TrackSettings,
        workers: int,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        submitting: Callable[[], bool] | None = None,
    ) -> None:
        self._api = api
        self._submitting = submitting or _always  # whether submits are on the wire
        self._policy = policy
        self._settings = settings
        self._workers = workers
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._answers = Answers()
        self._heap: list[tuple[float, int, int, Tracker]] = []
        self._order = itertools.count()
        self._nap: anyio.CancelScope | None = None
        self._nap_until = math.inf
        self._times: dict[str, RunTimes] = {}
        # Trackers in the order they were tracked (dicts as ordered sets): a set of them
        # iterates in memory-address order, and `_replan` draws jitter from `_rng` per
        # tracker, so which request got which draw (and so the schedule) would hang on
        # where the allocator put each tracker, not on the seed.
        self._by_model: dict[str, dict[Tracker, None]] = {}
        self._live: dict[Tracker, None] = {}
        self._probing: set[Tracker] = set()  # polled cold: they test remembered run times
        self._probes: dict[str, int] = {}  # probes started per model
        self._overruns: dict[str, set[Tracker]] = {}  # runs outlasting remembered windows

    def seed(self, learnt: Mapping[str, Sequence[float]]) -> None:
        """Take run times (model id -> seconds, oldest first) learnt by an earlier process
        (a cache file, a journal); a model this process has timed runs of keeps its own."""
        for model_id, samples in learnt.items():
            self._times.setdefault(model_id, RunTimes()).seed(samples)

    def learnt(self) -> dict[str, list[float]]:
        """Run times held per model this process has timed runs of (seconds, oldest first)."""
        return {model: times.samples() for model, times in self._times.items() if times.count}

    @property
    def timed(self) -> int:
        """How many runs this process has timed."""
        return sum(times.count for times in self._times.values())

    @property
    def tracked(self) -> int:
        """How many requests are being tracked."""
        return len(self._live)

    # ------------------------------------------------------------------ scheduling

    def track(self, tracker: Tracker) -> None:
        """Start tracking: the first poll comes when the policy says."""
        self._live[tracker] = None
        model = tracker.model_id
        if model is not None:
            self._by_model.setdefault(model, {})[tracker] = None
            if self._unconfirmed(model) and self._probes.get(model, 0) < self._policy.probes:
                self._probes[model] = self._probes.get(model, 0) + 1
                self._probing.add(tracker)
        if tracker.submitted_at is None:  # re-attaching to a request: look at it now
            self._push(tracker, self._clock())
            return
        window = self._window(tracker.model_id, tracker)
        self._push(tracker, tracker.submitted_at + self._policy.first_delay(window, self._rng))

    def forget(self, tracker: Tracker) -> None:
        """Stop tracking (its waiter left); its heap entry becomes stale."""
        if not tracker.done:
            self._finish(tracker, EXPIRED, learn=False)

    def _unconfirmed(self, model_id: str) -> bool:
        """Whether the model's run times are remembered, not yet confirmed by own runs."""
        times = self._times.get(model_id)
        return times is not None and times.inherited > 0 and times.count < self._policy.min_samples

    def _push(self, tracker: Tracker, due: float) -> None:
        if tracker.deadline is not None:
            due = min(due, tracker.deadline)
        tracker.version += 1
        heapq.heappush(self._heap, (due, next(self._order), tracker.version, tracker))
        if due < self._nap_until and self._nap is not None:
            self._nap.cancel()  # the dispatcher sleeps past this poll: wake it

    def _reschedule(self, tracker: Tracker) -> None:
        now = self._clock()
        window = self._window(tracker.model_id, tracker)
        if tracker.state in (State.IN_PROGRESS, State.COMPLETED) and tracker.anchor is not None:
            if window is not None and tracker.state is State.IN_PROGRESS:
                self._overran(tracker, now - tracker.anchor)
                window = self._window(tracker.model_id, tracker)
            delay = self._policy.running_delay(
                now - tracker.anchor, tracker.running_polls, window, self._rng
            )
        else:
            delay = self._policy.next_interval(tracker.polls, tracker.queue_position, self._rng)
        self._push(tracker, now + delay)

    def _window(self, model_id: str | None, tracker: Tracker | None = None) -> RunWindow | None:
        if tracker is not None and tracker in self._probing:
            return None
        times = self._times.get(model_id) if model_id is not None else None
        return times.window(self._policy.min_samples) if times is not None else None

    def _finish(self, tracker: Tracker, outcome: Outcome, *, learn: bool = True) -> None:
        window = self._window(tracker.model_id, tracker)  # what it was polled by
        self._live.pop(tracker, None)
        self._probing.discard(tracker)
        tracker.version += 1
        model = tracker.model_id
        if model is not None:
            self._by_model.get(model, {}).pop(tracker, None)
            self._overruns.get(model, set()).discard(tracker)
        span = tracker.run_time_range() if learn and model is not None else None
        if model is not None and span is not None and tracker.state is not State.CANCELLED:
            times = self._times.setdefault(model, RunTimes())
            unconfirmed = self._unconfirmed(model)
            remembered = times.window(self._policy.min_samples) if unconfirmed else None
            seconds = _sample(span, window, self._policy)
            times.add(seconds)
            if remembered is not None and _refutes(span, remembered):
                self._relearn(model, f"a run took {seconds:.1f} s", remembered)
            elif times.count in _REPLAN_AT:
                self._replan(model)
        tracker.resolve(outcome)

    def _overran(self, tracker: Tracker, running_for: float) -> None:
        """Count a run outlasting the remembered window; a few of them refute it."""
        model = tracker.model_id
        if model is None or not self._unconfirmed(model):
            return
        remembered = self._times[model].window(self._policy.min_samples)
        if remembered is None or running_for <= remembered.late + 0.1 * remembered.typical:
            return
        overruns = self._overruns.setdefault(model, set())
        overruns.add(tracker)
        if len(overruns) >= _OVERRUNS:
            self._relearn(model, f"{len(overruns)} runs outlasted {running_for:.1f} s", remembered)

    def _relearn(self, model_id: str, why: str, remembered: RunWindow) -> None:
        """The model no longer runs as remembered: drop what was inherited, poll its
        requests as if nothing were known until this process has timed runs of its own."""
        logger.info(
            "model %s: %s, outside the %.1f-%.1f s remembered: learning its run times anew",
            model_id,
            why,
            remembered.early,
            remembered.late,
        )
        self._times[model_id].forget_inherited()
        self._overruns.pop(model_id, None)
        self._replan(model_id)

    def _replan(self, model_id: str) -> None:
        """Pull the model's scheduled polls earlier where what was learnt says so (with
        nothing learnt any more, to the pace of a model nothing is known about)."""
        now = self._clock()
        due_now = {id(entry[3]): entry[0] for entry in self._heap if entry[2] == entry[3].version}
        for tracker in self._by_model.get(model_id, ()):
            if tracker.done or tracker.state not in (State.IN_PROGRESS, None):
                continue
            anchor = tracker.anchor if tracker.anchor is not None else tracker.submitted_at
            if anchor is None:
                continue
            own = self._window(model_id, tracker)  # a probe is polled cold anyway
            if tracker.state is None:
                planned = anchor + self._policy.first_delay(own, self._rng)
            else:
                planned = now + self._policy.running_delay(
                    now - anchor, tracker.running_polls, own, self._rng
                )
            if planned < due_now.get(id(tracker), math.inf):
                self._push(tracker, max(now, planned))

    # ------------------------------------------------------------------ the pool

    async def run(self) -> None:
        """Dispatch and poll until cancelled (the client's close)."""
        # A buffer as deep as the pool: due polls are handed over without a checkpoint each.
        send, receive = anyio.create_memory_object_stream[Tracker](self._workers)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self._workers):
                    tg.start_soon(self._work, receive.clone())
                receive.close()
                await self._dispatch(send)
        finally:
            for tracker in list(self._live):  # nobody will poll these any more
                self._finish(tracker, RunComfyError("the client was closed"), learn=False)

    async def _dispatch(self, send: MemoryObjectSendStream[Tracker]) -> None:
        async with send:
            while True:
                now = self._clock()
                # Polls due within the next moment go out together: fewer, fuller turns of
                # the event loop for the price of polling a few milliseconds early.
                while self._heap and self._heap[0][0] <= now + _COALESCE:
                    _, _, version, tracker = heapq.heappop(self._heap)
                    if version == tracker.version and not tracker.done and not tracker.polling:
                        # Handed out: an entry pushed for it meanwhile (a re-plan) is dropped
                        # here, and its poll's end schedules it again.
                        tracker.polling = True
                        try:
                            send.send_nowait(tracker)
                        except anyio.WouldBlock:
                            await send.send(tracker)  # every worker is busy: wait for one
                            now = self._clock()
                self._nap_until = self._heap[0][0] if self._heap else math.inf
                with anyio.CancelScope() as self._nap:
                    if self._nap_until == math.inf:
                        await anyio.sleep_forever()
                    else:
                        await self._sleep(self._nap_until - now)
                self._nap, self._nap_until = None, math.inf

    async def _work(self, receive: MemoryObjectReceiveStream[Tracker]) -> None:
        async with receive:
            while True:
                # A tracker handed out is taken at once, unless submits are on the wire:
                # receive() first yields a turn of the loop, which lets them go first (in
                # a batch's submit burst the polls would take the CPU its submits need).
                try:
                    if self._submitting():
                        tracker = await receive.receive()
                    else:
                        try:
                            tracker = receive.receive_nowait()
                        except anyio.WouldBlock:
                            tracker = await receive.receive()
                except anyio.EndOfStream:
                    return
                try:
                    await self._poll(tracker)
                except Exception as exc:  # a bug must not stop every other request's tracking
                    logger.exception(
                        "tracking request %s failed", tracker.request_id, extra=tracker.about()
                    )
                    if not tracker.done:
                        failure = RunComfyError(f"tracking failed: {exc!r}")
                        self._finish(tracker, failure, learn=False)

    async def _poll(self, tracker: Tracker) -> None:
        try:
            if tracker.done:
                return
            if tracker.deadline is not None and self._clock() >= tracker.deadline:
                self._finish(tracker, EXPIRED, learn=False)
                return
            with concerning(tracker.request_id, tracker.model_id):  # its calls' log records
                outcome = await poll_once(
                    self._api, tracker, self._settings, self._clock, self._answers
                )
        finally:
            tracker.polling = False  # what follows may schedule it again
        if tracker.done:
            return  # forgotten while the poll was in flight
        if outcome is None:
            self._reschedule(tracker)
        else:
            self._finish(tracker, outcome)


_COALESCE = 0.02  # seconds


def _always() -> bool:
    return True


_OVERRUNS = 3  # runs outlasting the remembered window that refute it


def _sample(span: tuple[float, float], window: RunWindow | None, policy: PollPolicy) -> float:
    """The run time (seconds) to learn from a run that took between `span` seconds: the
    midpoint; but where a skip to the window found it over, of the part of the span in the
    window. Runs found over by the window's first poll are its shortest, and the midpoint
    of the skip would halve them (and refute the window it was polled by)."""
    low, high = span
    if window is not None and low < window.early and high - low > 2 * policy.dense_interval(window):
        low = min(window.early, high)
    return (low + high) / 2


def _refutes(span: tuple[float, float], remembered: RunWindow) -> bool:
    """Whether a run that took between `span` seconds says the remembered window no longer
    holds: all of the span beyond it by more than a tenth of the typical run."""
    slack = 0.1 * remembered.typical
    return span[1] < remembered.early - slack or span[0] > remembered.late + slack


# Learnt run times re-plan scheduled polls when the sample count reaches one of these.
_REPLAN_AT = frozenset({5, 10, 20, 40, 80, 160})
