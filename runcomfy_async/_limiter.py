"""Client-wide paces: the fixed cap (`max_calls_per_second`) and the one learnt from 429s."""

from __future__ import annotations

import math
from collections import deque

import anyio

from ._retry import Clock, Sleep


class RateLimiter:
    """Token bucket shared by every call of a client (submits, polls, results, cancels).

    Callers are served in arrival order: a lock makes each wait its turn, so one slow
    caller cannot be overtaken indefinitely.
    """

    def __init__(self, rate: float, *, burst: float | None = None, clock: Clock, sleep: Sleep):
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("max_calls_per_second must be a positive number")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        """Wait until one call may be sent, and take its token."""
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate)
                self._refill()
                # We held the lock, so the token is ours; a loop until the float reached
                # 1.0 exactly could spin on waits too small to move the clock.
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1.0


class Ticket:
    """What `AdaptiveRate.acquire` hands a call: its scope, pace epoch and send time."""

    __slots__ = ("epoch", "pulled", "scope", "sent")

    def __init__(self, scope: _Pace, epoch: int, sent: float, pulled: bool) -> None:
        self.scope = scope
        self.epoch = epoch
        self.sent = sent
        self.pulled = pulled  # sent early, at a time a Retry-After gave


class _Pace:
    """One scope's learnt pace (see AdaptiveRate)."""

    __slots__ = (
        "admits",
        "epoch",
        "capped",
        "clean",
        "good",
        "history",
        "last",
        "limited",
        "limited_at",
        "lock",
        "ok",
        "pull",
        "rate",
        "sent",
        "since",
        "wait",
        "window",
    )

    def __init__(self) -> None:
        self.rate: float | None = None  # calls/s let through; None: not throttled
        self.epoch = 0  # bumped by every judgement: a rate is judged by calls sent under it
        self.since = -math.inf  # when the first call of this epoch was let through
        self.sent = self.ok = self.limited = 0  # this epoch's calls and their answers
        self.history: deque[tuple[float, float]] = deque(maxlen=4)  # (sent/s, refused share)
        self.last = -math.inf  # when the last call was let through
        self.capped = False  # a limit was met since throttling began
        self.good: float | None = None  # the highest rate that went with few 429s
        self.wait = 0  # clean epochs to hold before probing past `good` again
        self.clean = 0  # clean epochs held so far
        self.pull: float | None = None  # when a Retry-After says the server takes one again
        self.limited_at = -math.inf  # when the last 429 came
        self.window: deque[float] = deque()  # let-through times of the last WINDOW seconds
        self.admits: deque[float] = deque()  # admitted answers' times, the last ADMITS s
        self.lock = anyio.Lock()


class AdaptiveRate:
    """The client-wide pace learnt from 429s: every call of a scope passes through it.

    Not throttled until a 429 comes; then calls are let through one by one, `1 / rate`
    seconds apart, in arrival order (a waiting call sees a change of pace at once). The
    rate is judged in epochs, each by the calls sent under it (at least `dwell` seconds
    and 4 answers): how many were sent per second (S), admitted (A, answers other than
    429) and refused (share f).

    - No 429: the rate is raised by `probe` while the calls go at it (it binds); once it
      no longer binds and no 429 came for `quiet` seconds, throttling ends.
    - 429s while the rate binds: compared with a recent epoch that sent at a clearly
      different rate, do admissions follow sends (A/S elasticity >= 0.6)? Then the 429s
      are not about the pace (a server refusing each call a few times): the rate doubles.
      Otherwise the server admits about A per second: the rate goes just under it
      (`margin`), unless refusals are rare (f < 10 %: the pace sits at the knee, refused
      only by jitter). With no epoch to compare, a cut by half at most is the experiment.
    - 429s while it does not bind: held; the pace is not what sends the calls.

    A 429's Retry-After is information too: the server takes a call again at answer +
    Retry-After, so the next call may go then instead of a whole gap later; a refusal
    from arriving a little early (jitter against a strict server) costs that much, not a
    slot. Scopes are independent paces: RunComfy may limit submits apart from polls.
    """

    WINDOW = 1.0  # seconds over which the send rate is measured at the first 429
    ADMITS = 2.0  # seconds over which the admitted rate is measured
    F_KNEE = 0.2  # refused share below which a binding rate is held

    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Sleep,
        min_rate: float = 0.5,
        beta: float = 0.85,
        dwell: float = 0.2,
        probe: float = 1.1,
        margin: float = 0.0,
        quiet: float = 2.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._min_rate = min_rate
        self._beta = beta
        self._dwell = dwell
        self._probe = probe
        self._margin = margin
        self._quiet = quiet
        self._paces: dict[str, _Pace] = {}

    def rate(self, scope: str) -> float | None:
        """Calls per second now allowed in `scope`; None when it is not throttled."""
        pace = self._paces.get(scope)
        return None if pace is None else pace.rate

    async def acquire(self, scope: str) -> Ticket:
        """Wait for this call's turn in `scope`'s pace; the ticket goes to `answered`."""
        pace = self._paces.get(scope)
        if pace is None:
            pace = self._paces[scope] = _Pace()
        if pace.rate is not None or pace.lock.locked():
            async with pace.lock:  # in arrival order; the head waits for the pace
                while True:
                    now = self._clock()
                    due = self._due(pace)
                    if due <= now:
                        break
                    # In steps, so a 429 answered meanwhile (a Retry-After) counts at once.
                    step = 0.1 / pace.rate if pace.rate is not None else 0.0
                    await self._sleep(min(due - now, step, 0.05))
        now = self._clock()
        pulled = pace.pull is not None and pace.pull <= now
        pace.pull = None  # a Retry-After tells of the one next call, not of later ones
        if pace.sent == 0:
            pace.since = now
        pace.sent += 1
        pace.last = now
        pace.window.append(now)
        _forget(pace.window, now - self.WINDOW)
        return Ticket(pace, pace.epoch, now, pulled)

    def answered(
        self, ticket: Ticket, *, rate_limited: bool, retry_after: float | None = None
    ) -> None:
        """The call holding `ticket` was answered: with a 429 (`rate_limited`, and the
        server's Retry-After in seconds if it gave one) or otherwise."""
        pace, now = ticket.scope, self._clock()
        if rate_limited:
            pace.limited_at = now
        else:
            pace.admits.append(now)
            _forget(pace.admits, now - self.ADMITS)
        if rate_limited:
            if retry_after is not None and ticket.sent == pace.last and not ticket.pulled:
                # Nothing was sent since: the next call may go when the server said.
                pace.pull = now + retry_after
        if ticket.epoch != pace.epoch:
            return  # sent under an earlier pace: already answered for
        if pace.rate is None:
            if rate_limited:  # the first 429: start just under the rate calls went at
                _forget(pace.window, now - self.WINDOW)
                sent = len(pace.window) / self.WINDOW
                self._next(pace, max(self._min_rate, self._beta * sent))
            return
        if rate_limited:
            pace.limited += 1
        else:
            pace.ok += 1
        answers = pace.ok + pace.limited
        span = now - pace.since
        if span < self._dwell or (answers < 6 and span < 5 * self._dwell):
            return  # too soon to judge this epoch's rate
        self._judge(pace, now, span)

    def _due(self, pace: _Pace) -> float:
        """When the next call may go (-inf: now)."""
        if pace.rate is None:
            return -math.inf
        gap = 1.0 / pace.rate
        due = pace.last + gap
        if pace.pull is not None:  # the server said when it takes one again: go then
            due = min(due, pace.pull)
        return due

    def _judge(self, pace: _Pace, now: float, span: float) -> None:
        rate = pace.rate
        assert rate is not None
        sent = pace.sent / span
        refused = pace.limited / (pace.ok + pace.limited)
        binding = sent >= 0.8 * rate
        new = rate
        if binding and refused < self.F_KNEE:
            if pace.good is None or rate > pace.good:
                pace.good, pace.wait = rate, 0  # a rate that works
        if pace.limited == 0:
            if binding:
                pace.clean += 1
                if pace.clean > pace.wait:  # doubling until a limit was met, then `probe`
                    pace.clean = 0
                    new = rate * (self._probe if pace.capped else 2.0)
            elif now - pace.limited_at >= self._quiet:
                self._next(pace, None)  # well under the pace, no 429 for a while: unpaced
                return
        elif binding and refused >= self.F_KNEE:
            followed = None  # did the refused share move with the send rate?
            for old_sent, old_refused in reversed(pace.history):
                if abs(math.log(sent / old_sent)) >= 0.25:
                    followed = (refused - old_refused) * math.copysign(1.0, sent - old_sent) >= 0.05
                    break
            if followed is False:
                # Slowing down did not help: these 429s are not about the pace. Well past
                # the fastest rate tried: a pace too fast for the server is cut in one step.
                new = 4.0 * max(rate, *(old_sent for old_sent, _ in pace.history))
            else:
                pace.capped, pace.clean = True, 0
                admitted = max(pace.ok / span, self._admitted(pace, now))
                target = (1.0 - self._margin) * admitted
                if pace.good is not None and pace.good < rate:
                    # A probe past a rate that worked failed: back to it, probe later.
                    new = max(pace.good, target)
                    pace.wait = min(2 * pace.wait + 1, 8)
                else:
                    new = target if followed else max(target, 0.5 * rate)
                    pace.good, pace.wait = None, 0
        pace.history.append((sent, refused))
        self._next(pace, max(self._min_rate, new))

    def _admitted(self, pace: _Pace, now: float) -> float:
        """Calls per second the server admitted lately (answers other than 429)."""
        _forget(pace.admits, now - self.ADMITS)
        times = pace.admits
        if len(times) >= 3 and times[-1] > times[0]:
            return (len(times) - 1) / (times[-1] - times[0])
        return len(times) / self.ADMITS

    def _next(self, pace: _Pace, rate: float | None) -> None:
        """Start a new epoch under `rate`."""
        pace.rate = rate
        pace.epoch += 1
        pace.sent = pace.ok = pace.limited = 0
        if rate is None:
            pace.history.clear()
            pace.pull = pace.good = None
            pace.capped, pace.wait, pace.clean = False, 0, 0


def _forget(times: deque[float], before: float) -> None:
    while times and times[0] < before:
        times.popleft()
